/* Float32 dot products and tile matrix-vector products: AVX2+FMA where the CPU has it, portable C else.
 * The choice is made once (o2s_init) and kept in function pointers. */
#include "onnx2sql_kernels.h"

typedef float (*dot_fn)(const float *, const float *, size_t);
typedef void (*matvec_fn)(const float *, size_t, size_t, const float *, float *);
typedef float (*q8_dot_fn)(const unsigned char *, const signed char *, size_t, const float *);

#include <string.h>

size_t o2s_q8_row_bytes(size_t k) { return 4 * ((k + O2S_Q8_GROUP - 1) / O2S_Q8_GROUP) + k; }

/* A group's scale, read from unaligned little-endian bytes. */
static inline float q8_scale(const unsigned char *scales, size_t g) {
	float s;
	memcpy(&s, scales + 4 * g, sizeof s);
	return s;
}

/* ------------------------------------------------------------------ portable */

/* Eight independent partial sums: the compiler turns them into SIMD lanes of the baseline ISA
 * (SSE2 on x86-64, NEON on arm64) without -ffast-math, and they hide the latency of the adds. */
static float dot_portable(const float *a, const float *b, size_t n) {
	float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
	float r = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
	for (; i < n; i++) r += a[i] * b[i];
	return r;
}

static void matvec_portable(const float *tile, size_t rows, size_t k, const float *x, float *out) {
	for (size_t r = 0; r < rows; r++) out[r] = dot_portable(tile + r * k, x, k);
}

/* sum over the groups g of scale[g] * (q . x within group g), for one int8 row of k weights. */
static float q8_dot_portable(const unsigned char *scales, const signed char *q, size_t k, const float *x) {
	float r = 0;
	for (size_t start = 0, g = 0; start < k; start += O2S_Q8_GROUP, g++) {
		size_t end = start + O2S_Q8_GROUP < k ? start + O2S_Q8_GROUP : k;
		float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
		size_t i = start;
		for (; i + 8 <= end; i += 8)
			for (int j = 0; j < 8; j++) s[j] += (float)q[i + j] * x[i + j];
		float group = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
		for (; i < end; i++) group += (float)q[i] * x[i];
		r += q8_scale(scales, g) * group;
	}
	return r;
}

/* ------------------------------------------------------------------ AVX2 + FMA */
#if defined(__x86_64__) || defined(__i386__)
#define O2S_HAVE_X86 1
#include <immintrin.h>

#define O2S_AVX2 __attribute__((target("avx2,fma")))

O2S_AVX2 static inline float hsum256(__m256 v) {
	__m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	h = _mm_add_ps(h, _mm_movehl_ps(h, h));
	h = _mm_add_ss(h, _mm_movehdup_ps(h));
	return _mm_cvtss_f32(h);
}

/* Four accumulators of 8 lanes: enough independent FMAs to keep both FMA ports busy. */
O2S_AVX2 static float dot_avx2(const float *a, const float *b, size_t n) {
	__m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	size_t i = 0;
	for (; i + 32 <= n; i += 32) {
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
		s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
		s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
	}
	for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
	float r = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
	for (; i < n; i++) r += a[i] * b[i];
	return r;
}

/* Four tile rows at a time: each load of x feeds four FMAs, so the loop streams the tile
 * (the memory-bound part) with half the loads of four separate dot products. */
O2S_AVX2 static void matvec4_avx2(const float *w, size_t k, const float *x, float *out) {
	const float *w0 = w, *w1 = w + k, *w2 = w + 2 * k, *w3 = w + 3 * k;
	__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	__m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
	size_t i = 0;
	for (; i + 16 <= k; i += 16) {
		__m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), x0, a0);
		a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i), x0, a1);
		a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i), x0, a2);
		a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i), x0, a3);
		b0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i + 8), x1, b0);
		b1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i + 8), x1, b1);
		b2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i + 8), x1, b2);
		b3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i + 8), x1, b3);
	}
	for (; i + 8 <= k; i += 8) {
		__m256 x0 = _mm256_loadu_ps(x + i);
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), x0, a0);
		a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i), x0, a1);
		a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i), x0, a2);
		a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i), x0, a3);
	}
	float r0 = hsum256(_mm256_add_ps(a0, b0)), r1 = hsum256(_mm256_add_ps(a1, b1));
	float r2 = hsum256(_mm256_add_ps(a2, b2)), r3 = hsum256(_mm256_add_ps(a3, b3));
	for (; i < k; i++) {
		r0 += w0[i] * x[i];
		r1 += w1[i] * x[i];
		r2 += w2[i] * x[i];
		r3 += w3[i] * x[i];
	}
	out[0] = r0;
	out[1] = r1;
	out[2] = r2;
	out[3] = r3;
}

/* One int8 row: each whole group of 32 is widened to floats in registers (4 x 8 lanes), multiplied
 * with x, and added to the row's sum scaled once per group. A last partial group runs scalar. */
O2S_AVX2 static float q8_dot_avx2(const unsigned char *scales, const signed char *q, size_t k, const float *x) {
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
	size_t g = 0, i = 0;
	for (; i + O2S_Q8_GROUP <= k; i += O2S_Q8_GROUP, g++) {
		__m256i bytes = _mm256_loadu_si256((const __m256i *)(q + i));
		__m128i lo = _mm256_castsi256_si128(bytes), hi = _mm256_extracti128_si256(bytes, 1);
		__m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
		__m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
		__m256 w2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
		__m256 w3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
		__m256 s0 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), _mm256_mul_ps(w0, _mm256_loadu_ps(x + i)));
		__m256 s1 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x + i + 24), _mm256_mul_ps(w2, _mm256_loadu_ps(x + i + 16)));
		__m256 scale = _mm256_set1_ps(q8_scale(scales, g));
		/* Alternate accumulators: consecutive groups do not wait on each other's FMA. */
		if (g & 1)
			acc1 = _mm256_fmadd_ps(_mm256_add_ps(s0, s1), scale, acc1);
		else
			acc0 = _mm256_fmadd_ps(_mm256_add_ps(s0, s1), scale, acc0);
	}
	float r = hsum256(_mm256_add_ps(acc0, acc1));
	if (i < k) {
		float group = 0;
		for (size_t j = i; j < k; j++) group += (float)q[j] * x[j];
		r += q8_scale(scales, g) * group;
	}
	return r;
}

O2S_AVX2 static void matvec_avx2(const float *tile, size_t rows, size_t k, const float *x, float *out) {
	size_t r = 0;
	for (; r + 4 <= rows; r += 4) matvec4_avx2(tile + r * k, k, x, out + r);
	for (; r < rows; r++) out[r] = dot_avx2(tile + r * k, x, k);
}
#endif

/* ------------------------------------------------------------------ dispatch */

static dot_fn dot_impl = dot_portable;
static matvec_fn matvec_impl = matvec_portable;
static q8_dot_fn q8_dot_impl = q8_dot_portable;
static const char *isa_name = "portable";

const char *o2s_init(int force_portable) {
	dot_impl = dot_portable;
	matvec_impl = matvec_portable;
	q8_dot_impl = q8_dot_portable;
	isa_name = "portable";
#ifdef O2S_HAVE_X86
	__builtin_cpu_init();
	if (!force_portable && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
		dot_impl = dot_avx2;
		matvec_impl = matvec_avx2;
		q8_dot_impl = q8_dot_avx2;
		isa_name = "avx2+fma";
	}
#else
	(void)force_portable;
#endif
	return isa_name;
}

const char *o2s_isa(void) { return isa_name; }

float o2s_dot(const float *a, const float *b, size_t n) { return dot_impl(a, b, n); }

void o2s_tile_matvec(const float *tile, size_t rows, size_t k, const float *x, float *out) {
	if (rows == 0) return;
	matvec_impl(tile, rows, k, x, out);
}

void o2s_tile_matvec_q8(const unsigned char *tile, size_t rows, size_t k, const float *x, float *out) {
	size_t groups = (k + O2S_Q8_GROUP - 1) / O2S_Q8_GROUP, row_bytes = o2s_q8_row_bytes(k);
	for (size_t r = 0; r < rows; r++) {
		const unsigned char *row = tile + r * row_bytes;
		out[r] = q8_dot_impl(row, (const signed char *)(row + 4 * groups), k, x);
	}
}
