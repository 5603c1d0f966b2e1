// Kernels for the embedding store's search: the search matrix is kept as IEEE half floats, which halves
// the memory a brute-force query has to stream (the bound on its speed), and scored against a float32 query.
#pragma once
#include <stddef.h>
#include <stdint.h>

/// Converts `n` floats to IEEE half (round to nearest even).
void us_f32_to_f16(const float *src, uint16_t *dst, size_t n);
/// out[r] = dot(matrix row r, query) for rows [0, rows): matrix is [rows, dim] half, query float32,
/// accumulated in float32.
void us_dot_f16_rows(const uint16_t *matrix, size_t rows, size_t dim, const float *query, float *out);
