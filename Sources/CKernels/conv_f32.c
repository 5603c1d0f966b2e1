// Implicit-im2col fp32 GEMM (see conv_f32.h), in two instruction sets chosen by CPUID at run time.
//
// AVX-512: the fp32 twin of gemm_bf16.c's micro-kernel: a 6×64 tile of C in 24 ZMM accumulators; per k it
// loads 4 vectors of the packed image panel, broadcasts 6 weights (read in place, row stride ldw) and issues
// 24 FMAs, so it is compute bound. K is cut into blocks of KC so a 64-column panel (KC·64 floats = 32 KB)
// stays in L1/L2 while the 6-row strips of W walk it; NC columns are packed per block (KC·NC floats in L2).
//
// AVX2 + FMA: the same scheme at 256 bits. 16 YMM registers allow a 4×24 tile: 12 accumulators, 3 vectors of
// the panel and 1 broadcast weight (16 registers), so per k 3 loads + 4 broadcasts feed 12 FMAs. (A 6×16 tile
// needs 2 + 6 loads per 12 FMAs and measured 0-10% slower; 4 rows also divide the UNet's 320/640/1280 channels,
// where 6 leaves a partial strip.) Panels are 24 columns wide; KC2 = 256 keeps the 4-row weight strip (4 KB) in
// L1 while the packed block (KC2·NC2 floats = 240 KB) streams from L2 (512 KB or more on every AVX2 EPYC).
//
// Each kernel is compiled with its own target attribute, so the file builds for any x86-64 and a kernel only
// runs after CPUID said the CPU has its instructions (uc_conv_f32_supported).
#include "conv_f32.h"
#include "im2col_row.h"
#include <stdlib.h>
#include <string.h>

// UC_PORTABLE_ONLY (a compile-time define, used by fuzz/sanitize-kernels.sh --portable) leaves both kernels
// out, so the portable route (im2col + sgemm) can be tested on a CPU that would always dispatch to a kernel.
#if defined(__x86_64__) && defined(__clang__) && !defined(UC_PORTABLE_ONLY)
#include <immintrin.h>
#define UC_TARGET __attribute__((target("avx512f")))
#define UC_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define UC_HAVE_KERNEL 1
#endif

#define MR 6      // rows of W per micro-tile
#define NV 4      // ZMM vectors (16 columns) per micro-tile
#define NR 64     // columns per panel
#define KC 128    // k per block
#define NC 512    // columns packed per block (a multiple of NR)

#define MR2 4     // AVX2: rows of W per micro-tile
#define NV2 3     // AVX2: YMM vectors (8 columns) per micro-tile
#define NR2 24    // AVX2: columns per panel
#define KC2 256   // AVX2: k per block
#define NC2 240   // AVX2: columns packed per block (a multiple of NR2)

#ifdef UC_HAVE_KERNEL

// Packs col[k0 .. k0+kc, j0 .. j0+nc] as [panel][kc][nr], panels nr columns wide, zero-padded to whole panels.
static void pack_block(const uc_conv_source *s, long k0, long kc, long j0, long nc, float *dst, const long nr) {
    const long panels = (nc + nr - 1) / nr;
    if (s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && s->ph == 0 && s->pw == 0) {
        // 1×1: the image itself is the matrix.
        const long n = s->oh * s->ow;
        for (long p = 0; p < panels; p++) {
            const long cols = nc - p * nr < nr ? nc - p * nr : nr;
            for (long kk = 0; kk < kc; kk++) {
                float *d = dst + (p * kc + kk) * nr;
                memcpy(d, s->x + (k0 + kk) * n + j0 + p * nr, sizeof(float) * cols);
                if (cols < nr) memset(d + cols, 0, sizeof(float) * (nr - cols));
            }
        }
        return;
    }
    for (long p = 0; p < panels; p++) {
        const long cols = nc - p * nr < nr ? nc - p * nr : nr;
        for (long kk = 0; kk < kc; kk++) {
            float *d = dst + (p * kc + kk) * nr;
            uc_im2col_row(s, k0 + kk, j0 + p * nr, cols, d);
            if (cols < nr) memset(d + cols, 0, sizeof(float) * (nr - cols));
        }
    }
}


int uc_has_avx512f(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

int uc_conv_f32_supported(uc_conv_isa isa) {
    __builtin_cpu_init();
    switch (isa) {
    case UC_CONV_ISA_AVX512: return __builtin_cpu_supports("avx512f");
    case UC_CONV_ISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return 0;
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
            pack_block(src, pc, kc, jc, nc, buf, NR);
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

// AVX2: C[0:mr, 0:nr] (+)= W[0:mr, 0:kc] · B[0:kc, 0:24]. Rows ≥ mr read row 0 (their results are dropped).
// first: the first K block (C is written, plus the bias) rather than accumulated.
UC_TARGET_AVX2 static inline void micro_kernel_avx2(long kc, const float *w, long ldw, int mr, const float *b,
                                                    float *c, long ldc, int nr, int first, const float *bias) {
    const float *wr[MR2];
    for (int r = 0; r < MR2; r++) wr[r] = w + (r < mr ? r : 0) * ldw;
    __m256 acc[MR2][NV2];
#pragma clang loop unroll(full)
    for (int r = 0; r < MR2; r++)
#pragma clang loop unroll(full)
        for (int v = 0; v < NV2; v++) acc[r][v] = _mm256_setzero_ps();

    for (long p = 0; p < kc; p++) {
        __m256 bv[NV2];
#pragma clang loop unroll(full)
        for (int v = 0; v < NV2; v++) bv[v] = _mm256_load_ps(b + p * NR2 + 8 * v);
#pragma clang loop unroll(full)
        for (int r = 0; r < MR2; r++) {
            const __m256 a = _mm256_broadcast_ss(wr[r] + p);
#pragma clang loop unroll(full)
            for (int v = 0; v < NV2; v++) acc[r][v] = _mm256_fmadd_ps(a, bv[v], acc[r][v]);
        }
    }

    // Lane mask for a partial vector: lanes [0, left). AVX2 has no mask registers; maskload and maskstore take the
    // sign bits of an integer vector, read here from a sliding window over -1s then 0s.
    static const int32_t ones_then_zeros[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
#pragma clang loop unroll(full)
    for (int r = 0; r < MR2; r++) {
        if (r >= mr) continue;
        float *cr = c + r * ldc;
        const __m256 rb = first && bias ? _mm256_set1_ps(bias[r]) : _mm256_setzero_ps();
#pragma clang loop unroll(full)
        for (int v = 0; v < NV2; v++) {
            const int left = nr - 8 * v;
            if (left <= 0) continue;
            __m256 x = _mm256_add_ps(acc[r][v], rb);
            if (left >= 8) {
                if (!first) x = _mm256_add_ps(x, _mm256_loadu_ps(cr + 8 * v));
                _mm256_storeu_ps(cr + 8 * v, x);
            } else {
                const __m256i m = _mm256_loadu_si256((const __m256i *)(ones_then_zeros + 8 - left));
                if (!first) x = _mm256_add_ps(x, _mm256_maskload_ps(cr + 8 * v, m));
                _mm256_maskstore_ps(cr + 8 * v, m, x);
            }
        }
    }
}

// AVX2: packs col[k0 .. k0+kc, j0 .. j0+nc] as [panel][kc][24] like pack_block, but gathers each im2col row once for
// the whole block (into `row`, nc floats) and then cuts it into panels: with 24-column panels, one uc_im2col_row
// call per panel row cost a quarter of the 128-channel VAE convolution's time.
UC_TARGET_AVX2 static void pack_block_avx2(const uc_conv_source *s, long k0, long kc, long j0, long nc, float *dst,
                                           float *row) {
    const long panels = (nc + NR2 - 1) / NR2;
    const int direct = s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && s->ph == 0 && s->pw == 0;
    for (long kk = 0; kk < kc; kk++) {
        const float *r = row;
        if (direct) r = s->x + (k0 + kk) * s->oh * s->ow + j0;   // 1×1: the image row is the matrix row
        else uc_im2col_row(s, k0 + kk, j0, nc, row);
        for (long p = 0; p < panels; p++) {
            float *d = dst + (p * kc + kk) * NR2;
            const float *from = r + p * NR2;
            const long cols = nc - p * NR2 < NR2 ? nc - p * NR2 : NR2;
            if (cols == NR2) {
                for (int v = 0; v < NV2; v++) _mm256_store_ps(d + 8 * v, _mm256_loadu_ps(from + 8 * v));
            } else {
                memcpy(d, from, sizeof(float) * cols);
                memset(d + cols, 0, sizeof(float) * (NR2 - cols));
            }
        }
    }
}

UC_TARGET_AVX2 static void conv_f32_avx2(long m, const float *w, long ldw, const uc_conv_source *src, long n0, long n1,
                                         float *c, long ldc, const float *bias) {
    if (m <= 0 || n1 <= n0) return;
    const long k = src->c * src->kh * src->kw;
    float *buf = aligned_alloc(64, sizeof(float) * (size_t)(KC2 + 1) * NC2), *row = buf + (size_t)KC2 * NC2;
    for (long jc = n0; jc < n1; jc += NC2) {
        const long nc = n1 - jc < NC2 ? n1 - jc : NC2;
        for (long pc = 0; pc < k; pc += KC2) {
            const long kc = k - pc < KC2 ? k - pc : KC2;
            pack_block_avx2(src, pc, kc, jc, nc, buf, row);
            for (long ir = 0; ir < m; ir += MR2)
                for (long jr = 0; jr * NR2 < nc; jr++) {
                    const long cols = nc - jr * NR2 < NR2 ? nc - jr * NR2 : NR2;
                    micro_kernel_avx2(kc, w + ir * ldw + pc, ldw, (int)(m - ir < MR2 ? m - ir : MR2), buf + jr * kc * NR2,
                                      c + ir * ldc + jc + jr * NR2, ldc, (int)cols, pc == 0, bias ? bias + ir : NULL);
                }
        }
    }
    free(buf);
}

void uc_conv_f32_isa(uc_conv_isa isa, long m, const float *w, long ldw, const uc_conv_source *src, long n0, long n1,
                     float *c, long ldc, const float *bias) {
    if (!uc_conv_f32_supported(isa)) abort();   // never run an instruction set the CPU lacks
    switch (isa) {
    case UC_CONV_ISA_AVX512: uc_conv_f32(m, w, ldw, src, n0, n1, c, ldc, bias); return;
    case UC_CONV_ISA_AVX2: conv_f32_avx2(m, w, ldw, src, n0, n1, c, ldc, bias); return;
    }
    abort();
}

#else   // no kernel compiled in: report unsupported; callers then use im2col + sgemm.

int uc_has_avx512f(void) { return 0; }
int uc_conv_f32_supported(uc_conv_isa isa) { (void)isa; return 0; }
void uc_conv_f32(long m, const float *w, long ldw, const uc_conv_source *src, long n0, long n1,
                 float *c, long ldc, const float *bias) { abort(); }
void uc_conv_f32_isa(uc_conv_isa isa, long m, const float *w, long ldw, const uc_conv_source *src, long n0, long n1,
                     float *c, long ldc, const float *bias) { abort(); }

#endif
