// Small fused element-wise kernels. Matrix products go through BLAS; these cover
// the memory-bound work around them, written so the compiler vectorises them.
#pragma once
#include <stdint.h>
#include <stddef.h>

/// y = layernorm(x) row by row over `cols`, with optional affine weight/bias (NULL = identity).
void uc_layer_norm(const float *x, float *y, long rows, long cols,
                   const float *weight, const float *bias, float eps);
/// Softmax of each row in place.
void uc_softmax_rows(float *x, long rows, long cols);
/// Element-wise activations (x and y may alias).
void uc_gelu_erf(const float *x, float *y, long n);
void uc_gelu_tanh(const float *x, float *y, long n);
void uc_quick_gelu(const float *x, float *y, long n);
void uc_silu(const float *x, float *y, long n);
/// GEGLU: h [rows, 2·inner] → y [rows, inner], y = h[:, :inner] · gelu(h[:, inner:]) (erf GELU).
void uc_geglu(const float *h, float *y, long rows, long inner);
/// GroupNorm over one sample laid out [channels, spatial]; optional fused SiLU.
void uc_group_norm(const float *x, float *y, long channels, long spatial, long groups,
                   const float *weight, const float *bias, float eps, int fuse_silu);
/// im2col for one image [C,H,W] and output rows [oy0, oy1) into [C*kh*kw, (oy1-oy0)*ow].
void uc_im2col(const float *x, float *col, long c, long h, long w, long kh, long kw,
               long sh, long sw, long ph, long pw, long oy0, long oy1, long ow);
/// IEEE half and bfloat16 to float32.
void uc_f16_to_f32(const uint16_t *src, float *dst, long n);
void uc_bf16_to_f32(const uint16_t *src, float *dst, long n);
/// y[i] = a[i] + b[i]; y[i] = a[i] * b[i].
void uc_add(const float *a, const float *b, float *y, long n);
void uc_mul(const float *a, const float *b, float *y, long n);

/// Returns freed heap memory to the system (glibc's malloc_trim); no-op elsewhere.
void uc_trim_heap(void);
/// Keeps freed blocks in the heap for reuse instead of unmapping them (glibc mallopt; tensors ≥ 4 MiB use buffers.h); no-op elsewhere.
void uc_tune_heap(void);

/// CPUs this process may run on (its affinity mask, so `taskset` counts); 0 when unknown.
int uc_affinity_cpus(void);
