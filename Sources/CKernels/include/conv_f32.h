// fp32 convolution as an implicit-im2col GEMM on AVX-512 or AVX2 + FMA: C[o, pixels] = W[o, c·kh·kw] · col,
// where the im2col matrix `col` is never built. Each K×64 panel of it is packed straight from the image, so one pass
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

/// The instruction sets the kernel is written for (callers pick the best one uc_conv_f32_supported accepts;
/// tests run every one the CPU has).
typedef enum { UC_CONV_ISA_AVX512 = 1, UC_CONV_ISA_AVX2 = 2 } uc_conv_isa;

/// 1 when this CPU executes AVX-512 F (the AVX-512 kernel's instruction set) and that kernel is built in, else 0.
int uc_has_avx512f(void);

/// 1 when the kernel for `isa` is built in (not under UC_PORTABLE_ONLY) and this CPU executes its instructions.
int uc_conv_f32_supported(uc_conv_isa isa);

/// uc_conv_f32 in the given instruction set; aborts when uc_conv_f32_supported(isa) is 0. Micro-tiles: AVX-512
/// 6 rows × 64 pixels, AVX2 4 rows × 24 pixels (callers splitting the work keep whole tiles per part).
void uc_conv_f32_isa(uc_conv_isa isa, long m, const float *w, long ldw, const uc_conv_source *src, long n0, long n1,
                     float *c, long ldc, const float *bias);

/// C[i, j] = bias[i] + Σ_k W[i, k] · col[k, j] for rows i < m and pixels n0 ≤ j < n1, with W row-major
/// (row stride ldw, k = c·kh·kw columns) and C row-major with row stride ldc (column j at c + j).
/// Single-threaded: callers split rows or pixel ranges across cores. bias may be NULL. AVX-512 only: call it
/// when uc_has_avx512f() is 1 (uc_conv_f32_isa covers both kernels).
void uc_conv_f32(long m, const float *w, long ldw, const uc_conv_source *src, long n0, long n1,
                 float *c, long ldc, const float *bias);

#ifdef __cplusplus
}
#endif
