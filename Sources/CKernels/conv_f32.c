// Implicit-im2col fp32 GEMM (see conv_f32.h).
//
// The micro-kernel is the fp32 twin of gemm_bf16.c's: a 6×64 tile of C in 24 ZMM accumulators; per k it
// loads 4 vectors of the packed image panel, broadcasts 6 weights (read in place, row stride ldw) and issues
// 24 FMAs, so it is compute bound. K is cut into blocks of KC so a 64-column panel (KC·64 floats = 32 KB)
// stays in L1/L2 while the 6-row strips of W walk it; NC columns are packed per block (KC·NC floats in L2).
#include "conv_f32.h"
#include "im2col_row.h"
#include <stdlib.h>
#include <string.h>

// UC_PORTABLE_ONLY (a compile-time define, used by fuzz/sanitize-kernels.sh --portable) leaves the AVX-512
// kernels out, so the portable paths can be tested on a CPU that would always dispatch to AVX-512.
#if defined(__x86_64__) && defined(__clang__) && !defined(UC_PORTABLE_ONLY)
#include <immintrin.h>
#define UC_TARGET __attribute__((target("avx512f")))
#define UC_HAVE_KERNEL 1
#endif

#define MR 6      // rows of W per micro-tile
#define NV 4      // ZMM vectors (16 columns) per micro-tile
#define NR 64     // columns per panel
#define KC 128    // k per block
#define NC 512    // columns packed per block (a multiple of NR)

// Packs col[k0 .. k0+kc, j0 .. j0+nc] as [panel][kc][64], zero-padded to whole panels.
static void pack_block(const uc_conv_source *s, long k0, long kc, long j0, long nc, float *dst) {
    const long panels = (nc + NR - 1) / NR;
    if (s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && s->ph == 0 && s->pw == 0) {
        // 1×1: the image itself is the matrix.
        const long n = s->oh * s->ow;
        for (long p = 0; p < panels; p++) {
            const long cols = nc - p * NR < NR ? nc - p * NR : NR;
            for (long kk = 0; kk < kc; kk++) {
                float *d = dst + (p * kc + kk) * NR;
                memcpy(d, s->x + (k0 + kk) * n + j0 + p * NR, sizeof(float) * cols);
                if (cols < NR) memset(d + cols, 0, sizeof(float) * (NR - cols));
            }
        }
        return;
    }
    for (long p = 0; p < panels; p++) {
        const long cols = nc - p * NR < NR ? nc - p * NR : NR;
        for (long kk = 0; kk < kc; kk++) {
            float *d = dst + (p * kc + kk) * NR;
            uc_im2col_row(s, k0 + kk, j0 + p * NR, cols, d);
            if (cols < NR) memset(d + cols, 0, sizeof(float) * (NR - cols));
        }
    }
}

#ifdef UC_HAVE_KERNEL

int uc_has_avx512f(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

// C[0:mr, 0:nr] (+)= W[0:mr, 0:kc] · B[0:kc, 0:64]. Rows ≥ mr read row 0 (their results are dropped).
// first: the first K block (C is written, plus the bias) rather than accumulated.
UC_TARGET static inline void micro_kernel(long kc, const float *w, long ldw, int mr, const float *b,
                                          float *c, long ldc, int nr, int first, const float *bias) {
    const float *wr[MR];
    for (int r = 0; r < MR; r++) wr[r] = w + (r < mr ? r : 0) * ldw;
    __m512 acc[MR][NV];
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++)
#pragma clang loop unroll(full)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();

    for (long p = 0; p < kc; p++) {
        __m512 bv[NV];
#pragma clang loop unroll(full)
        for (int v = 0; v < NV; v++) bv[v] = _mm512_load_ps(b + p * NR + 16 * v);
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            const __m512 a = _mm512_set1_ps(wr[r][p]);
#pragma clang loop unroll(full)
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(a, bv[v], acc[r][v]);
        }
    }

    __mmask16 mask[NV];
    for (int v = 0; v < NV; v++) {
        const int left = nr - 16 * v;
        mask[v] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
        if (r >= mr) continue;
        float *cr = c + r * ldc;
        const __m512 rb = first && bias ? _mm512_set1_ps(bias[r]) : _mm512_setzero_ps();
#pragma clang loop unroll(full)
        for (int v = 0; v < NV; v++) {
            const __mmask16 m = mask[v];
            if (!m) continue;
            __m512 x = _mm512_add_ps(acc[r][v], rb);
            if (!first) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, cr + 16 * v));
            _mm512_mask_storeu_ps(cr + 16 * v, m, x);
        }
    }
}

UC_TARGET void uc_conv_f32(long m, const float *w, long ldw, const uc_conv_source *src, long n0, long n1,
                           float *c, long ldc, const float *bias) {
    if (m <= 0 || n1 <= n0) return;
    const long k = src->c * src->kh * src->kw;
    float *buf = aligned_alloc(64, sizeof(float) * (size_t)KC * NC);
    for (long jc = n0; jc < n1; jc += NC) {
        const long nc = n1 - jc < NC ? n1 - jc : NC;
        for (long pc = 0; pc < k; pc += KC) {
            const long kc = k - pc < KC ? k - pc : KC;
            pack_block(src, pc, kc, jc, nc, buf);
            for (long ir = 0; ir < m; ir += MR)
                for (long jr = 0; jr * NR < nc; jr++) {
                    const long cols = nc - jr * NR < NR ? nc - jr * NR : NR;
                    micro_kernel(kc, w + ir * ldw + pc, ldw, (int)(m - ir < MR ? m - ir : MR), buf + jr * kc * NR,
                                 c + ir * ldc + jc + jr * NR, ldc, (int)cols, pc == 0, bias ? bias + ir : NULL);
                }
        }
    }
    free(buf);
}

#else   // no AVX-512 compiler support: report unsupported; callers then use im2col + sgemm.

int uc_has_avx512f(void) { return 0; }
void uc_conv_f32(long m, const float *w, long ldw, const uc_conv_source *src, long n0, long n1,
                 float *c, long ldc, const float *bias) { abort(); }

#endif
