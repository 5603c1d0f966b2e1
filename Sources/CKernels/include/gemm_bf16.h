// bf16 matrix products with fp32 accumulation (AVX512_BF16 `vdpbf16ps`), for weights packed once.
//
// A weight is packed in one of two layouts, depending on which side of the product it sits:
//  - "lanes": W[n, k] (torch Linear layout) as the right operand of C[m, n] = A[m, k] · Wᵀ;
//  - "rows":  W[m, k] (a flattened conv weight) as the left operand of C[m, n] = W · B[k, n].
// The other operand is fp32 and is rounded to bf16 (round-to-nearest-even) while it is packed.
// Functions are single-threaded; callers split M or N across cores.
#pragma once
#include <stdint.h>
#include "conv_f32.h"

#ifdef __cplusplus
extern "C" {
#endif

/// Columns per packed panel of the "lanes" layout (a column range must start at a multiple).
#define UC_BF16_PANEL 64

/// 1 when this CPU executes AVX512_BF16 (and AVX-512 F/BW/VL), else 0; the gemm functions need it.
int uc_has_bf16(void);

/// fp32 → bf16 bits with round-to-nearest-even (torch's rule; NaN stays a quiet NaN).
uint16_t uc_f32_to_bf16(float x);

/// uint16 elements needed to pack W[n, k] in the "lanes" layout.
long uc_bf16_lanes_size(long n, long k);
/// Packs row-major W[n, k] (row stride k) in the "lanes" layout.
void uc_bf16_pack_lanes(const float *w, long n, long k, uint16_t *dst);

/// uint16 elements needed to pack W[m, k] in the "rows" layout.
long uc_bf16_rows_size(long m, long k);
/// Packs row-major W[m, k] (row stride k) in the "rows" layout.
void uc_bf16_pack_rows(const float *w, long m, long k, uint16_t *dst);

/// C[i, j] (+)= Σ_k A[i, k] · W[j, k] (+ bias[j]) for rows i < m and columns n0 ≤ j < n1 of W
/// (packed "lanes", n rows, k columns). n0 must be a multiple of UC_BF16_PANEL. accumulate: add to C.
void uc_bf16_gemm_lanes(long m, long n, long k, const float *a, long lda, const uint16_t *w,
                        long n0, long n1, float *c, long ldc, const float *bias, int accumulate);

/// C[i, j] (+)= Σ_k W[i, k] · B[k, j] (+ bias[i]) for i < m, j < n, W packed "rows" (m rows, k columns).
void uc_bf16_gemm_rows(long m, long n, long k, const uint16_t *w, const float *b, long ldb,
                       float *c, long ldc, const float *bias, int accumulate);

/// uc_bf16_gemm_rows with B the implicit im2col matrix of `src` (see conv_f32.h), for pixels n0 ≤ j < n1:
/// C[i, j] = bias[i] + Σ_k W[i, k] · col[k, j], C row-major with row stride ldc (column j at c + j).
void uc_bf16_conv_rows(long m, const uint16_t *w, const uc_conv_source *src, long n0, long n1,
                       float *c, long ldc, const float *bias);

/// uint16 elements of a 3×3 convolution weight [k, c, 3, 3] packed for uc_bf16_winograd_conv.
long uc_bf16_winograd_size(long k, long c);
/// Packs W[k, c, 3, 3] as its 16 Winograd F(2×2, 3×3) transforms U_ξ = (G g Gᵀ)_ξ, each [k, c] in the "rows" layout.
void uc_bf16_pack_winograd(const float *w, long k, long c, uint16_t *dst);
/// 3×3 convolution, stride 1, padding 1, of x [b, c, h, w] into y [b, k, h, w] (+ bias) by Winograd F(2×2, 3×3)
/// with bf16 products: output channels [k0, k1) and 2×2 output tiles [t0, t1) of the b·⌈h/2⌉·⌈w/2⌉ tiles
/// (numbered image by image, row-major). b·c·h·w and b·k·h·w must stay below 2³¹ (32-bit gather offsets).
void uc_bf16_winograd_conv(long k, long c, const uint16_t *u, const float *x, long b, long h, long w,
                           long k0, long k1, long t0, long t1, float *y, const float *bias);

#ifdef __cplusplus
}
#endif
