/* DuckDB extension onnx2sql_kernels (C extension API v1): SQL scalar functions over the kernels.
 *
 *   onnx2sql_tile_matvec(tile BLOB, x FLOAT[]) -> FLOAT[]
 *       tile: rows x len(x) little-endian float32, row-major; returns the rows dot products with x.
 *   onnx2sql_tile_matvec_q8(tile BLOB, x FLOAT[]) -> FLOAT[]
 *       the same for an int8 tile: each row is its group scales then len(x) int8 weights (see
 *       o2s_tile_matvec_q8 in onnx2sql_kernels.h).
 *   onnx2sql_dot(a FLOAT[], b FLOAT[]) -> FLOAT
 *   onnx2sql_kernels_isa() -> VARCHAR     the SIMD implementation in use ("avx2+fma" or "portable")
 *
 * A NULL argument gives a NULL result. A NULL element inside a list is an error: the kernels read
 * raw floats, and a silently used placeholder value would give wrong numbers.
 * Setting the environment variable ONNX2SQL_KERNELS_PORTABLE=1 before loading keeps the portable code.
 */
#define DUCKDB_EXTENSION_NAME onnx2sql_kernels
#include "duckdb_extension.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx2sql_kernels.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tiles are little-endian float32 read in place: a big-endian build would need a byte swap"
#endif

DUCKDB_EXTENSION_EXTERN

/* ------------------------------------------------------------------ input access */

/* A flat FLOAT[] input vector: row r is child[entries[r].offset .. + entries[r].length). */
typedef struct {
	const duckdb_list_entry *entries;
	const float *child;
	uint64_t *validity;       /* rows; NULL means all valid */
	uint64_t *child_validity; /* elements; NULL means no NULL element */
} float_lists;

static float_lists float_lists_of(duckdb_vector v) {
	duckdb_vector child = duckdb_list_vector_get_child(v);
	float_lists f;
	f.entries = (const duckdb_list_entry *)duckdb_vector_get_data(v);
	f.child = (const float *)duckdb_vector_get_data(child);
	f.validity = duckdb_vector_get_validity(v);
	f.child_validity = duckdb_vector_get_validity(child);
	return f;
}

static int bit_is_set(const uint64_t *mask, idx_t i) { return (int)((mask[i >> 6] >> (i & 63)) & 1); }

/* 1 if an element in [start, start + len) is NULL; whole 64-bit words are checked at once. */
static int range_has_null(const uint64_t *mask, idx_t start, idx_t len) {
	if (!mask) return 0;
	idx_t end = start + len;
	for (; start < end && (start & 63); start++)
		if (!bit_is_set(mask, start)) return 1;
	for (; start + 64 <= end; start += 64)
		if (mask[start >> 6] != ~(uint64_t)0) return 1;
	for (; start < end; start++)
		if (!bit_is_set(mask, start)) return 1;
	return 0;
}

static int list_has_null(const float_lists *f, idx_t row) {
	return range_has_null(f->child_validity, f->entries[row].offset, f->entries[row].length);
}

static const float *list_data(const float_lists *f, idx_t row) { return f->child + f->entries[row].offset; }

static idx_t list_length(const float_lists *f, idx_t row) { return f->entries[row].length; }

/* The output validity mask, made writable only when some input row may be NULL. */
static uint64_t *output_validity(duckdb_vector output, int inputs_may_be_null) {
	if (!inputs_may_be_null) return NULL;
	duckdb_vector_ensure_validity_writable(output);
	return duckdb_vector_get_validity(output);
}

__attribute__((format(printf, 2, 3))) static void set_errorf(duckdb_function_info info, const char *fmt, ...) {
	char msg[256];
	va_list args;
	va_start(args, fmt);
	vsnprintf(msg, sizeof msg, fmt, args);
	va_end(args);
	duckdb_scalar_function_set_error(info, msg);
}

/* ------------------------------------------------------------------ onnx2sql_dot */

static void dot_function(duckdb_function_info info, duckdb_data_chunk input, duckdb_vector output) {
	idx_t n = duckdb_data_chunk_get_size(input);
	float_lists a = float_lists_of(duckdb_data_chunk_get_vector(input, 0));
	float_lists b = float_lists_of(duckdb_data_chunk_get_vector(input, 1));
	float *out = (float *)duckdb_vector_get_data(output);
	uint64_t *out_validity = output_validity(output, a.validity || b.validity);
	for (idx_t r = 0; r < n; r++) {
		if (!duckdb_validity_row_is_valid(a.validity, r) || !duckdb_validity_row_is_valid(b.validity, r)) {
			duckdb_validity_set_row_invalid(out_validity, r);
			continue;
		}
		idx_t len_a = list_length(&a, r), len_b = list_length(&b, r);
		if (len_a != len_b) {
			set_errorf(info, "onnx2sql_dot: list lengths differ: len(a) = %llu, len(b) = %llu",
			           (unsigned long long)len_a, (unsigned long long)len_b);
			return;
		}
		if (list_has_null(&a, r) || list_has_null(&b, r)) {
			duckdb_scalar_function_set_error(info, "onnx2sql_dot: a list holds a NULL element");
			return;
		}
		out[r] = o2s_dot(list_data(&a, r), list_data(&b, r), len_a);
	}
}

/* ------------------------------------------------------------------ onnx2sql_tile_matvec(_q8) */

/* How a tile stores its rows: the bytes of a row of k weights, and the product of rows with x. */
typedef struct {
	const char *function;
	const char *element; /* what a row holds, for error messages */
	size_t (*row_bytes)(size_t k);
	void (*multiply)(const unsigned char *tile, size_t rows, size_t k, const float *x, float *out);
} tile_format;

static size_t f32_row_bytes(size_t k) { return 4 * k; }

/* Blob bytes are not 4-byte aligned in general; the kernels use unaligned loads. */
static void f32_multiply(const unsigned char *tile, size_t rows, size_t k, const float *x, float *out) {
	o2s_tile_matvec((const float *)tile, rows, k, x, out);
}

static const tile_format F32_TILES = {"onnx2sql_tile_matvec", "float32 values", f32_row_bytes, f32_multiply};
static const tile_format Q8_TILES = {"onnx2sql_tile_matvec_q8", "int8 rows (group scales and int8 values)",
                                     o2s_q8_row_bytes, o2s_tile_matvec_q8};

typedef struct {
	duckdb_string_t *tiles;
	uint64_t *tile_validity;
	float_lists x;
	const tile_format *format;
} matvec_inputs;

static int matvec_row_is_null(const matvec_inputs *in, idx_t r) {
	return !duckdb_validity_row_is_valid(in->tile_validity, r) || !duckdb_validity_row_is_valid(in->x.validity, r);
}

/* Number of tile rows of input row r, or -1 after setting an error. */
static long long matvec_rows(duckdb_function_info info, const matvec_inputs *in, idx_t r) {
	idx_t k = list_length(&in->x, r);
	unsigned long long bytes = duckdb_string_t_length(in->tiles[r]);
	const char *name = in->format->function;
	if (k == 0) {
		if (bytes == 0) return 0;
		set_errorf(info, "%s: x is empty but the tile has %llu bytes", name, bytes);
		return -1;
	}
	size_t row_bytes = in->format->row_bytes(k);
	if (bytes % row_bytes != 0) {
		set_errorf(info, "%s: tile of %llu bytes is not a whole number of rows of len(x) = %llu %s", name, bytes,
		           (unsigned long long)k, in->format->element);
		return -1;
	}
	if (list_has_null(&in->x, r)) {
		set_errorf(info, "%s: x holds a NULL element", name);
		return -1;
	}
	return (long long)(bytes / row_bytes);
}

/* Checks every row and returns the total number of output floats, or -1 after setting an error. */
static long long matvec_total_rows(duckdb_function_info info, const matvec_inputs *in, idx_t n) {
	long long total = 0;
	for (idx_t r = 0; r < n; r++) {
		if (matvec_row_is_null(in, r)) continue;
		long long rows = matvec_rows(info, in, r);
		if (rows < 0) return -1;
		total += rows;
	}
	return total;
}

static void tile_product(duckdb_function_info info, duckdb_data_chunk input, duckdb_vector output,
                         const tile_format *format) {
	idx_t n = duckdb_data_chunk_get_size(input);
	duckdb_vector tile_vector = duckdb_data_chunk_get_vector(input, 0);
	matvec_inputs in;
	in.tiles = (duckdb_string_t *)duckdb_vector_get_data(tile_vector);
	in.tile_validity = duckdb_vector_get_validity(tile_vector);
	in.x = float_lists_of(duckdb_data_chunk_get_vector(input, 1));
	in.format = format;

	long long total = matvec_total_rows(info, &in, n);
	if (total < 0) return;
	/* One reservation for the whole chunk: the results go straight into DuckDB's child vector. */
	idx_t base = duckdb_list_vector_get_size(output);
	if (duckdb_list_vector_reserve(output, base + (idx_t)total) != DuckDBSuccess) {
		set_errorf(info, "%s: could not reserve the result list", format->function);
		return;
	}
	duckdb_list_entry *entries = (duckdb_list_entry *)duckdb_vector_get_data(output);
	float *out = (float *)duckdb_vector_get_data(duckdb_list_vector_get_child(output));
	uint64_t *out_validity = output_validity(output, in.tile_validity || in.x.validity);
	idx_t pos = base;
	for (idx_t r = 0; r < n; r++) {
		entries[r].offset = pos;
		entries[r].length = 0;
		if (matvec_row_is_null(&in, r)) {
			duckdb_validity_set_row_invalid(out_validity, r);
			continue;
		}
		idx_t k = list_length(&in.x, r);
		idx_t rows = k ? duckdb_string_t_length(in.tiles[r]) / format->row_bytes(k) : 0;
		if (rows) format->multiply((const unsigned char *)duckdb_string_t_data(&in.tiles[r]), rows, k,
		                           list_data(&in.x, r), out + pos);
		entries[r].length = rows;
		pos += rows;
	}
	duckdb_list_vector_set_size(output, pos);
}

static void tile_matvec_function(duckdb_function_info info, duckdb_data_chunk input, duckdb_vector output) {
	tile_product(info, input, output, &F32_TILES);
}

static void tile_matvec_q8_function(duckdb_function_info info, duckdb_data_chunk input, duckdb_vector output) {
	tile_product(info, input, output, &Q8_TILES);
}

/* ------------------------------------------------------------------ onnx2sql_kernels_isa */

static void isa_function(duckdb_function_info info, duckdb_data_chunk input, duckdb_vector output) {
	(void)info;
	idx_t n = duckdb_data_chunk_get_size(input);
	for (idx_t r = 0; r < n; r++) duckdb_vector_assign_string_element(output, r, o2s_isa());
}

/* ------------------------------------------------------------------ registration */

/* Registers name(params...) -> ret; returns 0 when DuckDB refuses it. */
static int register_function(duckdb_connection con, const char *name, duckdb_scalar_function_t fn,
                             duckdb_logical_type *params, idx_t n_params, duckdb_logical_type ret) {
	duckdb_scalar_function f = duckdb_create_scalar_function();
	duckdb_scalar_function_set_name(f, name);
	for (idx_t i = 0; i < n_params; i++) duckdb_scalar_function_add_parameter(f, params[i]);
	duckdb_scalar_function_set_return_type(f, ret);
	duckdb_scalar_function_set_function(f, fn);
	duckdb_state state = duckdb_register_scalar_function(con, f);
	duckdb_destroy_scalar_function(&f);
	return state == DuckDBSuccess;
}

static int register_all(duckdb_connection con) {
	duckdb_logical_type f32 = duckdb_create_logical_type(DUCKDB_TYPE_FLOAT);
	duckdb_logical_type f32_list = duckdb_create_list_type(f32);
	duckdb_logical_type blob = duckdb_create_logical_type(DUCKDB_TYPE_BLOB);
	duckdb_logical_type varchar = duckdb_create_logical_type(DUCKDB_TYPE_VARCHAR);
	duckdb_logical_type matvec_params[2] = {blob, f32_list};
	duckdb_logical_type dot_params[2] = {f32_list, f32_list};
	int ok = register_function(con, "onnx2sql_tile_matvec", tile_matvec_function, matvec_params, 2, f32_list) &&
	         register_function(con, "onnx2sql_tile_matvec_q8", tile_matvec_q8_function, matvec_params, 2, f32_list) &&
	         register_function(con, "onnx2sql_dot", dot_function, dot_params, 2, f32) &&
	         register_function(con, "onnx2sql_kernels_isa", isa_function, NULL, 0, varchar);
	duckdb_destroy_logical_type(&f32);
	duckdb_destroy_logical_type(&f32_list);
	duckdb_destroy_logical_type(&blob);
	duckdb_destroy_logical_type(&varchar);
	return ok;
}

static int portable_requested(void) {
	const char *v = getenv("ONNX2SQL_KERNELS_PORTABLE");
	return v && *v && strcmp(v, "0") != 0;
}

DUCKDB_EXTENSION_ENTRYPOINT(duckdb_connection connection, duckdb_extension_info info,
                            struct duckdb_extension_access *access) {
	o2s_init(portable_requested());
	if (!register_all(connection)) {
		access->set_error(info, "onnx2sql_kernels: DuckDB refused to register a function");
		return false;
	}
	return true;
}
