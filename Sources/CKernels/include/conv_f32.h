// fp32 convolution as an implicit-im2col GEMM on AVX-512: C[o, pixels] = W[o, c·kh·kw] · col, where the
// im2col matrix `col` is never built. Each K×64 panel of it is packed straight from the image, so one pass
// replaces im2col plus BLAS's own copy of it, and the weight is read in place (row-major [o, c·kh·kw]).
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// One image [c, h, w] seen as its im2col matrix [c·kh·kw, oh·ow] (row k = (channel, ky, kx), column = output pixel).
typedef struct {
    const float *x;
    long c, h, w, kh, kw, sh, sw, ph, pw, oh, ow;
} uc_conv_source;

/// 1 when this CPU executes AVX-512 F (the kernel's instruction set), else 0.
int uc_has_avx512f(void);

/// C[i, j] = bias[i] + Σ_k W[i, k] · col[k, j] for rows i < m and pixels n0 ≤ j < n1, with W row-major
/// (row stride ldw, k = c·kh·kw columns) and C row-major with row stride ldc (column j at c + j).
/// Single-threaded: callers split rows or pixel ranges across cores. bias may be NULL.
void uc_conv_f32(long m, const float *w, long ldw, const uc_conv_source *src, long n0, long n1,
                 float *c, long ldc, const float *bias);

#ifdef __cplusplus
}
#endif
