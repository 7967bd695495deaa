/* SQLite loadable extension onnx2sql_sqlite: SQL functions over the kernels, for the sqlite backend.
 *
 *   onnx2sql_vector(list TEXT) -> BLOB
 *       a tensor chunk (the text of a JSON array of numbers) as little-endian float32, the layout
 *       known matrices are stored in, a row per output column.
 *   onnx2sql_dot(a, b) -> REAL
 *       the dot product of two vectors of the same length (o2s_dot): each a float32 BLOB (a stored
 *       weight row, or onnx2sql_vector's result) or a tensor chunk's JSON text, read as float32.
 *   onnx2sql_kernels_isa() -> TEXT     the SIMD implementation in use ("avx2+fma" or "portable")
 *
 * Entry point: onnx2sql_sqlite_init. A NULL argument gives NULL. A JSON null element (NaN) is read
 * as NaN. Anything but numbers in the array, or vectors of different lengths, is an error.
 * Setting ONNX2SQL_KERNELS_PORTABLE=1 before loading keeps the portable code.
 */
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "onnx2sql_kernels.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vectors are little-endian float32 read in place: a big-endian build would need a byte swap"
#endif

static const char *skip_space(const char *p) {
	while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
	return p;
}

/* Parses the JSON array at text into a malloc'd float buffer; *count gets its length. Returns NULL
 * with *error set on text that is not an array of numbers (or on no memory). */
static float *parse_array(const char *text, size_t *count, const char **error) {
	const char *p = skip_space(text);
	if (*p != '[') {
		*error = "the list is not a JSON array";
		return NULL;
	}
	size_t capacity = 64, n = 0;
	float *out = malloc(capacity * sizeof(float));
	if (!out) {
		*error = "out of memory";
		return NULL;
	}
	p = skip_space(p + 1);
	if (*p == ']') {
		*count = 0;
		return out;
	}
	for (;;) {
		if (n == capacity) {
			capacity *= 2;
			float *grown = realloc(out, capacity * sizeof(float));
			if (!grown) {
				free(out);
				*error = "out of memory";
				return NULL;
			}
			out = grown;
		}
		p = skip_space(p);
		if (strncmp(p, "null", 4) == 0) {
			out[n++] = NAN;
			p += 4;
		} else {
			char *end;
			double x = strtod(p, &end); /* 9e999 is infinity, as SQLite writes it */
			if (end == p) {
				free(out);
				*error = "the array holds something other than numbers";
				return NULL;
			}
			out[n++] = (float)x;
			p = end;
		}
		p = skip_space(p);
		if (*p == ',') {
			p++;
		} else if (*p == ']') {
			*count = n;
			return out;
		} else {
			free(out);
			*error = "the array is not well formed";
			return NULL;
		}
	}
}

/* The error `message` of function `name`, as "name: message". */
static void result_error(sqlite3_context *ctx, const char *name, const char *message) {
	char *text = sqlite3_mprintf("%s: %s", name, message);
	if (!text) {
		sqlite3_result_error_nomem(ctx);
		return;
	}
	sqlite3_result_error(ctx, text, -1);
	sqlite3_free(text);
}

static void vector_function(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
	(void)argc;
	if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
	const char *text = (const char *)sqlite3_value_text(argv[0]);
	if (!text) {
		sqlite3_result_error_nomem(ctx);
		return;
	}
	size_t n = 0;
	const char *error = NULL;
	float *values = parse_array(text, &n, &error);
	if (!values) {
		result_error(ctx, "onnx2sql_vector", error);
		return;
	}
	sqlite3_result_blob(ctx, values, (int)(n * sizeof(float)), free);
}

/* A vector argument: a BLOB read in place, or JSON text parsed into *owned (freed by the caller).
 * Returns 0 with an error set on the context otherwise. */
static int vector_arg(sqlite3_context *ctx, sqlite3_value *value, const float **data, size_t *n, float **owned) {
	*owned = NULL;
	if (sqlite3_value_type(value) == SQLITE_BLOB) {
		int bytes = sqlite3_value_bytes(value);
		if (bytes % (int)sizeof(float) != 0) {
			sqlite3_result_error(ctx, "onnx2sql_dot: a BLOB vector is not a whole number of float32", -1);
			return 0;
		}
		*data = sqlite3_value_blob(value);
		*n = (size_t)bytes / sizeof(float);
		return 1;
	}
	if (sqlite3_value_type(value) == SQLITE_TEXT) {
		const char *error = "out of memory";
		const char *text = (const char *)sqlite3_value_text(value);
		*owned = text ? parse_array(text, n, &error) : NULL;
		if (!*owned) {
			result_error(ctx, "onnx2sql_dot", error);
			return 0;
		}
		*data = *owned;
		return 1;
	}
	sqlite3_result_error(ctx, "onnx2sql_dot: a vector must be a float32 BLOB or the text of a JSON array", -1);
	return 0;
}

static void dot_function(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
	(void)argc;
	if (sqlite3_value_type(argv[0]) == SQLITE_NULL || sqlite3_value_type(argv[1]) == SQLITE_NULL) return;
	const float *a, *b;
	size_t a_n, b_n;
	float *a_owned, *b_owned = NULL;
	if (vector_arg(ctx, argv[0], &a, &a_n, &a_owned) && vector_arg(ctx, argv[1], &b, &b_n, &b_owned)) {
		if (a_n != b_n)
			sqlite3_result_error(ctx, "onnx2sql_dot: the vectors differ in length", -1);
		else
			sqlite3_result_double(ctx, (double)o2s_dot(a, b, a_n));
	}
	free(a_owned);
	free(b_owned);
}

static void isa_function(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
	(void)argc;
	(void)argv;
	sqlite3_result_text(ctx, o2s_isa(), -1, SQLITE_STATIC);
}

static int portable_requested(void) {
	const char *v = getenv("ONNX2SQL_KERNELS_PORTABLE");
	return v && *v && strcmp(v, "0") != 0;
}

#ifdef _WIN32
__declspec(dllexport)
#else
__attribute__((visibility("default")))
#endif
int onnx2sql_sqlite_init(sqlite3 *db, char **error, const sqlite3_api_routines *api) {
	(void)error;
	SQLITE_EXTENSION_INIT2(api);
	o2s_init(portable_requested());
	int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
	int rc = sqlite3_create_function(db, "onnx2sql_vector", 1, flags, NULL, vector_function, NULL, NULL);
	if (rc == SQLITE_OK) rc = sqlite3_create_function(db, "onnx2sql_dot", 2, flags, NULL, dot_function, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "onnx2sql_kernels_isa", 0, SQLITE_UTF8, NULL, isa_function, NULL, NULL);
	return rc;
}
