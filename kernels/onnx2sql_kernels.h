/* Vector kernels of onnx2sql: float32 dot products and tile matrix-vector products.
 *
 * Pure C, no DuckDB. Accumulation is in float32 (several SIMD partial sums, like BLAS), so results
 * differ from a float64 reference by a few ulps of the sum of |a[i]*b[i]|.
 * Pointers need no alignment. Nothing allocates.
 */
#ifndef ONNX2SQL_KERNELS_H
#define ONNX2SQL_KERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Picks the fastest implementation this CPU runs (AVX2+FMA on x86-64, portable C otherwise).
 * force_portable != 0 keeps the portable code (used to test it on SIMD machines).
 * Call once before the kernels run concurrently; without a call the portable code is used.
 * Returns the name of the chosen implementation ("avx2+fma" or "portable"). */
const char *o2s_init(int force_portable);

/* Name of the implementation in use. */
const char *o2s_isa(void);

/* sum_i a[i] * b[i] over n floats; 0 when n == 0. */
float o2s_dot(const float *a, const float *b, size_t n);

/* out[r] = dot(tile + r*k, x, k) for r < rows: tile is rows x k floats, row-major. */
void o2s_tile_matvec(const float *tile, size_t rows, size_t k, const float *x, float *out);

/* int8 tiles: each row of k weights is stored as ceil(k / O2S_Q8_GROUP) little-endian float32
 * scales, then k int8 values; weight i of the row is q[i] * scale[i / O2S_Q8_GROUP]. */
#define O2S_Q8_GROUP 32

/* Bytes of one int8 tile row of k weights. */
size_t o2s_q8_row_bytes(size_t k);

/* out[r] = sum_i q_r[i] * scale_r[i / O2S_Q8_GROUP] * x[i] for r < rows, tile holding rows int8
 * rows of k weights (o2s_q8_row_bytes(k) bytes each). The weights are never widened to a float32
 * copy: each group of int8 values is converted in registers and multiplied with x. */
void o2s_tile_matvec_q8(const unsigned char *tile, size_t rows, size_t k, const float *x, float *out);

#ifdef __cplusplus
}
#endif

#endif
