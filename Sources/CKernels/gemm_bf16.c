// bf16 GEMM with fp32 accumulation on AVX512_BF16 (see gemm_bf16.h for the two weight layouts).
//
// Design: one register-blocked micro-kernel computes a 6×64 tile of C: 6 rows of the "broadcast"
// operand (row-major bf16 pairs, one 32-bit pair broadcast per row and k-pair) times a 64-column
// panel of the "lanes" operand (per k-pair, 64 columns × 2 bf16 = 4 ZMM loads), into 24 ZMM fp32
// accumulators via `vdpbf16ps` (each lane adds a[2p]·b[2p] + a[2p+1]·b[2p+1]). 24 independent
// accumulators cover the instruction's latency; per k-pair the kernel issues 4 loads, 6 broadcasts and
// 24 dot products, so it is compute bound. K is cut into blocks of KC_PAIRS pairs so the packed
// runtime operand stays in L2 while the micro-kernel walks it; the C tile is loaded/stored once per block.
#include "gemm_bf16.h"
#include "im2col_row.h"
#include <stdlib.h>
#include <string.h>

// UC_PORTABLE_ONLY (a compile-time define, used by fuzz/sanitize-kernels.sh --portable) leaves the AVX-512
// kernels out, so the portable paths can be tested on a CPU that would always dispatch to AVX-512.
#if defined(__x86_64__) && defined(__clang__) && !defined(UC_PORTABLE_ONLY)
#include <immintrin.h>
#define UC_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define UC_HAVE_KERNEL 1
#endif

#define MR 6                 // rows of the broadcast operand per micro-tile
#define NV 4                 // ZMM vectors (16 columns each) per micro-tile
#define NR (16 * NV)         // columns per micro-tile (= UC_BF16_PANEL)
#define KC_PAIRS 128         // k-pairs per K block (256 k)
#define MC 96                // rows of A packed at once (lanes driver), a multiple of MR
#define NC 256               // columns of B packed at once (rows driver), a multiple of NR

_Static_assert(NR == UC_BF16_PANEL, "panel width");

uint16_t uc_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);   // quiet NaN
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline uint32_t pair(const float *row, long k, long kk) {
    uint32_t lo = kk < k ? uc_f32_to_bf16(row[kk]) : 0, hi = kk + 1 < k ? uc_f32_to_bf16(row[kk + 1]) : 0;
    return lo | (hi << 16);
}

long uc_bf16_lanes_size(long n, long k) { return ((n + NR - 1) / NR) * ((k + 1) / 2) * NR * 2; }
long uc_bf16_rows_size(long m, long k) { return m * ((k + 1) / 2) * 2; }

// "lanes": panel j (columns 64j..64j+63) is [kp][64] pairs; pair p of column c is (W[c, 2p], W[c, 2p+1]).
void uc_bf16_pack_lanes(const float *w, long n, long k, uint16_t *dst) {
    long kp = (k + 1) / 2, panels = (n + NR - 1) / NR;
    uint32_t *d = (uint32_t *)dst;
    for (long j = 0; j < panels; j++)
        for (long p = 0; p < kp; p++)
            for (long c = 0; c < NR; c++) {
                long col = j * NR + c;
                *d++ = col < n ? pair(w + col * k, k, 2 * p) : 0;
            }
}

// "rows": row i is kp pairs (W[i, 2p], W[i, 2p+1]), zero-padded when k is odd.
void uc_bf16_pack_rows(const float *w, long m, long k, uint16_t *dst) {
    long kp = (k + 1) / 2;
    uint32_t *d = (uint32_t *)dst;
    for (long i = 0; i < m; i++)
        for (long p = 0; p < kp; p++) *d++ = pair(w + i * k, k, 2 * p);
}

#ifdef UC_HAVE_KERNEL

int uc_has_bf16(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bf16");
}

// The micro-kernel: C[0:mr, 0:nr] (+)= A[0:mr, pairs 0:kp] · B[pairs 0:kp, 0:64].
// a: row-major pairs with row stride lda (rows ≥ mr alias row 0, their results are dropped);
// b: [kp][64] pairs. first: this is the first K block (then C is overwritten unless accumulate, and
// the bias is added). bias_col: per column (index 0 = this tile's first column); bias_row: per row.
UC_TARGET static inline void micro_kernel(long kp, const uint32_t *a, long lda, int mr, const uint32_t *b,
                                          float *c, long ldc, int nr, int first, int accumulate,
                                          const float *bias_col, const float *bias_row) {
    const uint32_t *ar[MR];
    for (int r = 0; r < MR; r++) ar[r] = a + (r < mr ? r : 0) * lda;
    __m512 acc[MR][NV];
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++)
#pragma clang loop unroll(full)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();

    for (long p = 0; p < kp; p++) {
        __m512bh bv[NV];
#pragma clang loop unroll(full)
        for (int v = 0; v < NV; v++) bv[v] = (__m512bh)_mm512_loadu_si512((const void *)(b + p * NR + 16 * v));
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)ar[r][p]);
#pragma clang loop unroll(full)
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
        }
    }

    __mmask16 mask[NV];
    for (int v = 0; v < NV; v++) {
        int left = nr - 16 * v;
        mask[v] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
        if (r >= mr) continue;
        float *cr = c + r * ldc;
        __m512 rb = bias_row && first ? _mm512_set1_ps(bias_row[r]) : _mm512_setzero_ps();
#pragma clang loop unroll(full)
        for (int v = 0; v < NV; v++) {
            __mmask16 m = mask[v];
            if (!m) continue;
            __m512 x = _mm512_add_ps(acc[r][v], rb);
            if (first && bias_col) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, bias_col + 16 * v));
            if (!first || accumulate) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, cr + 16 * v));
            _mm512_mask_storeu_ps(cr + 16 * v, m, x);
        }
    }
}

// Converts `count` floats to bf16 (RNE) at dst, then zero-fills up to `padded` elements.
UC_TARGET static void convert_row(const float *src, long count, uint16_t *dst, long padded) {
    long i = 0;
    for (; i + 32 <= count; i += 32) {
        __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)h);
    }
    for (; i < padded; i += 32) {
        long left = count - i;
        __mmask16 m0 = left >= 16 ? 0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
        __mmask16 m1 = left >= 32 ? 0xffff : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
        __m512bh h = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, src + i + 16), _mm512_maskz_loadu_ps(m0, src + i));
        long room = padded - i;
        __mmask32 ms = room >= 32 ? 0xffffffffu : (__mmask32)((1u << room) - 1);
        _mm512_mask_storeu_epi16(dst + i, ms, (__m512i)h);
    }
}

UC_TARGET void uc_bf16_gemm_lanes(long m, long n, long k, const float *a, long lda, const uint16_t *w,
                        long n0, long n1, float *c, long ldc, const float *bias, int accumulate) {
    (void)n;
    if (m <= 0 || n1 <= n0) return;
    long kp = (k + 1) / 2;
    const uint32_t *w32 = (const uint32_t *)w;
    uint32_t *abuf = aligned_alloc(64, (size_t)MC * KC_PAIRS * 4);
    for (long ic = 0; ic < m; ic += MC) {
        long mc = m - ic < MC ? m - ic : MC;
        for (long pc = 0; pc < kp; pc += KC_PAIRS) {
            long kcp = kp - pc < KC_PAIRS ? kp - pc : KC_PAIRS;
            long kvals = k - 2 * pc < 2 * kcp ? k - 2 * pc : 2 * kcp;
            for (long i = 0; i < mc; i++)
                convert_row(a + (ic + i) * lda + 2 * pc, kvals, (uint16_t *)(abuf + i * kcp), 2 * kcp);
            for (long j = n0 / NR; j * NR < n1; j++) {
                const uint32_t *panel = w32 + (j * kp + pc) * NR;
                long cols = n1 - j * NR < NR ? n1 - j * NR : NR;
                for (long ir = 0; ir < mc; ir += MR)
                    micro_kernel(kcp, abuf + ir * kcp, kcp, (int)(mc - ir < MR ? mc - ir : MR), panel,
                                 c + (ic + ir) * ldc + j * NR, ldc, (int)cols, pc == 0, accumulate,
                                 bias ? bias + j * NR : NULL, NULL);
            }
        }
    }
    free(abuf);
}

// Packs k-pair p of a column block: rows r0 and r1 (nc values each; r1 NULL past the end of k) into
// [panel][kcp][64] pairs at dst, zero-padded.
UC_TARGET static inline void pack_pair(const float *r0, const float *r1, long nc, long kcp, long p, uint32_t *dst) {
    // Interleaves two rows' 16 bf16 values each: [r0_0, r1_0, r0_1, r1_1, ...].
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                         23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    long panels = (nc + NR - 1) / NR;
    for (long j = 0; j < panels; j++) {
        uint32_t *d = dst + (j * kcp + p) * NR;
        for (int v = 0; v < NV; v++) {
            long col = j * NR + 16 * v, left = nc - col;
            __mmask16 m = left >= 16 ? 0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
            __m512 x0 = _mm512_maskz_loadu_ps(m, r0 + col);
            __m512 x1 = r1 ? _mm512_maskz_loadu_ps(m, r1 + col) : _mm512_setzero_ps();
            __m512i h = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
            _mm512_storeu_si512((void *)(d + 16 * v), _mm512_permutexvar_epi16(idx, h));
        }
    }
}

// Packs B[2·pc .., jc .. jc+nc] (kcp pairs of rows) into [panel][kcp][64] pairs, zero-padded.
UC_TARGET static void pack_b(const float *b, long ldb, long k, long pc, long kcp, long nc, uint32_t *dst) {
    for (long p = 0; p < kcp; p++) {
        long k0 = 2 * (pc + p);
        const float *r0 = b + k0 * ldb;
        pack_pair(r0, k0 + 1 < k ? r0 + ldb : NULL, nc, kcp, p, dst);
    }
}

// pack_b for an implicit im2col matrix: each pair of rows is gathered from the image first (tmp: 2·nc floats).
UC_TARGET static void pack_b_conv(const uc_conv_source *s, long jc, long k, long pc, long kcp, long nc, float *tmp,
                                  uint32_t *dst) {
    for (long p = 0; p < kcp; p++) {
        long k0 = 2 * (pc + p);
        uc_im2col_row(s, k0, jc, nc, tmp);
        if (k0 + 1 < k) uc_im2col_row(s, k0 + 1, jc, nc, tmp + nc);
        pack_pair(tmp, k0 + 1 < k ? tmp + nc : NULL, nc, kcp, p, dst);
    }
}

// The "rows" driver: B is either a plain matrix (b, ldb) or an implicit im2col matrix (src, columns jc0 ..).
UC_TARGET static void gemm_rows(long m, long n, long k, const uint16_t *w, const float *b, long ldb,
                                const uc_conv_source *src, long jc0, float *c, long ldc, const float *bias, int accumulate) {
    if (m <= 0 || n <= 0) return;
    long kp = (k + 1) / 2;
    const uint32_t *w32 = (const uint32_t *)w;
    uint32_t *bbuf = aligned_alloc(64, (size_t)NC * KC_PAIRS * 4);
    float *tmp = src ? aligned_alloc(64, sizeof(float) * 2 * NC) : NULL;
    for (long jc = 0; jc < n; jc += NC) {
        long nc = n - jc < NC ? n - jc : NC;
        for (long pc = 0; pc < kp; pc += KC_PAIRS) {
            long kcp = kp - pc < KC_PAIRS ? kp - pc : KC_PAIRS;
            if (src) pack_b_conv(src, jc0 + jc, k, pc, kcp, nc, tmp, bbuf);
            else pack_b(b + jc, ldb, k, pc, kcp, nc, bbuf);
            for (long ir = 0; ir < m; ir += MR)
                for (long jr = 0; jr * NR < nc; jr++) {
                    long cols = nc - jr * NR < NR ? nc - jr * NR : NR;
                    micro_kernel(kcp, w32 + ir * kp + pc, kp, (int)(m - ir < MR ? m - ir : MR), bbuf + jr * kcp * NR,
                                 c + ir * ldc + jc + jr * NR, ldc, (int)cols, pc == 0, accumulate,
                                 NULL, bias ? bias + ir : NULL);
                }
        }
    }
    free(tmp);
    free(bbuf);
}

UC_TARGET void uc_bf16_gemm_rows(long m, long n, long k, const uint16_t *w, const float *b, long ldb,
                       float *c, long ldc, const float *bias, int accumulate) {
    gemm_rows(m, n, k, w, b, ldb, NULL, 0, c, ldc, bias, accumulate);
}

UC_TARGET void uc_bf16_conv_rows(long m, const uint16_t *w, const uc_conv_source *src, long n0, long n1,
                                 float *c, long ldc, const float *bias) {
    gemm_rows(m, n1 - n0, src->c * src->kh * src->kw, w, NULL, 0, src, n0, c + n0, ldc, bias, 0);
}

// ---- Winograd F(2×2, 3×3) for 3×3 convolutions with stride 1 and padding 1 ----
//
// Each 2×2 block of outputs ("tile") is Aᵀ [Σ_c U_c ⊙ V_c] A, with U = G g Gᵀ the 4×4 transformed filter and
// V = Bᵀ d B the transformed 4×4 input patch: 16 multiplies per tile and channel instead of 36. For each of
// the 16 positions ξ that is one product M_ξ[K, tiles] = U_ξ[K, C] · V_ξ[C, tiles], run by the micro-kernel
// with U_ξ packed "rows" and V_ξ packed as its 64-tile panel. The input transform writes those panels
// directly (it replaces im2col), and the output transform reads M from a per-panel buffer.

#define WKC 160   // most channel pairs per block of the input transform (16 panels of it: 640 KiB, in L2)

long uc_bf16_winograd_size(long k, long c) { return 16 * uc_bf16_rows_size(k, c); }

void uc_bf16_pack_winograd(const float *w, long k, long c, uint16_t *dst) {
    // The "rows" layout is row-major bf16 with rows of 2·⌈c/2⌉ values (a zero pads an odd c), so U_ξ is written
    // straight into it: element (ξ, o, i) at ξ·k·row + o·row + i.
    const long row = 2 * ((c + 1) / 2);
    for (long o = 0; o < k; o++) {
        for (long i = 0; i < c; i++) {
            const float *g = w + (o * c + i) * 9;
            double t[4][3], r[4][4];
            for (int j = 0; j < 3; j++) {   // G g
                t[0][j] = g[j];
                t[1][j] = 0.5 * ((double)g[j] + g[3 + j] + g[6 + j]);
                t[2][j] = 0.5 * ((double)g[j] - g[3 + j] + g[6 + j]);
                t[3][j] = g[6 + j];
            }
            for (int a = 0; a < 4; a++) {   // (G g) Gᵀ
                r[a][0] = t[a][0];
                r[a][1] = 0.5 * (t[a][0] + t[a][1] + t[a][2]);
                r[a][2] = 0.5 * (t[a][0] - t[a][1] + t[a][2]);
                r[a][3] = t[a][2];
            }
            for (int x = 0; x < 16; x++) dst[(x * k + o) * row + i] = uc_f32_to_bf16((float)r[x / 4][x % 4]);
        }
        if (row > c)
            for (int x = 0; x < 16; x++) dst[(x * k + o) * row + c] = 0;
    }
}

// Gather offsets and masks of one group of 16 tiles (lanes): the 4×4 input patch of each tile, and its 2×2 outputs.
typedef struct {
    __m512i in[16];
    __mmask16 in_mask[16];
    __m512i out[4];
    __mmask16 out_mask[4];
} wino_group;

UC_TARGET static void wino_setup(wino_group *g, long t_first, long t_end, long C, long K, long H, long W) {
    const long tw = (W + 1) / 2, per_image = ((H + 1) / 2) * tw;
    int32_t in[16][16], out[4][16];
    uint32_t in_m[16] = {0}, out_m[4] = {0};
    for (int lane = 0; lane < 16; lane++) {
        const long t = t_first + lane;
        const int valid = t < t_end;
        const long bi = valid ? t / per_image : 0, rem = valid ? t % per_image : 0;
        const long ty = rem / tw, tx = rem % tw;
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 4; j++) {
                const long iy = 2 * ty - 1 + r, ix = 2 * tx - 1 + j;
                const int ok = valid && iy >= 0 && iy < H && ix >= 0 && ix < W;
                in[r * 4 + j][lane] = ok ? (int32_t)(bi * C * H * W + iy * W + ix) : 0;
                if (ok) in_m[r * 4 + j] |= 1u << lane;
            }
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) {
                const long oy = 2 * ty + a, ox = 2 * tx + b;
                const int ok = valid && oy < H && ox < W;
                out[a * 2 + b][lane] = ok ? (int32_t)(bi * K * H * W + oy * W + ox) : 0;
                if (ok) out_m[a * 2 + b] |= 1u << lane;
            }
    }
    for (int x = 0; x < 16; x++) { g->in[x] = _mm512_loadu_si512(in[x]); g->in_mask[x] = (__mmask16)in_m[x]; }
    for (int x = 0; x < 4; x++) { g->out[x] = _mm512_loadu_si512(out[x]); g->out_mask[x] = (__mmask16)out_m[x]; }
}

// V = Bᵀ d B for one channel plane and 16 tiles.
UC_TARGET static inline void wino_input(const wino_group *g, const float *plane, __m512 v[16]) {
    __m512 d[16], t[16];
    for (int x = 0; x < 16; x++)
        d[x] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), g->in_mask[x], g->in[x], plane, 4);
    for (int j = 0; j < 4; j++) {
        t[0 + j] = _mm512_sub_ps(d[0 + j], d[8 + j]);
        t[4 + j] = _mm512_add_ps(d[4 + j], d[8 + j]);
        t[8 + j] = _mm512_sub_ps(d[8 + j], d[4 + j]);
        t[12 + j] = _mm512_sub_ps(d[4 + j], d[12 + j]);
    }
    for (int i = 0; i < 4; i++) {
        v[4 * i + 0] = _mm512_sub_ps(t[4 * i + 0], t[4 * i + 2]);
        v[4 * i + 1] = _mm512_add_ps(t[4 * i + 1], t[4 * i + 2]);
        v[4 * i + 2] = _mm512_sub_ps(t[4 * i + 2], t[4 * i + 1]);
        v[4 * i + 3] = _mm512_sub_ps(t[4 * i + 1], t[4 * i + 3]);
    }
}

UC_TARGET void uc_bf16_winograd_conv(long K, long C, const uint16_t *u, const float *x, long B, long H, long W,
                                     long k0, long k1, long t0, long t1, float *y, const float *bias) {
    if (k1 <= k0 || t1 <= t0) return;
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                         23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const long kp = (C + 1) / 2, kc = k1 - k0, plane = H * W;
    const uint32_t *u32 = (const uint32_t *)u;
    // Channel blocks of equal size (no short tail block); 320 channels (a UNet's first level) take one block,
    // so M is written once instead of accumulated.
    const long nblocks = (kp + WKC - 1) / WKC, block = (kp + nblocks - 1) / nblocks;
    uint32_t *V = aligned_alloc(64, (size_t)16 * block * NR * 4);
    float *M = aligned_alloc(64, (size_t)16 * kc * NR * 4);
    wino_group *groups = aligned_alloc(64, sizeof(wino_group) * NV);
    for (long tp = t0; tp < t1; tp += NR) {
        const long nt = t1 - tp < NR ? t1 - tp : NR, ng = (nt + 15) / 16;
        for (long gi = 0; gi < ng; gi++) wino_setup(&groups[gi], tp + 16 * gi, t1, C, K, H, W);
        for (long pc = 0; pc < kp; pc += block) {
            const long kcp = kp - pc < block ? kp - pc : block;
            // Input transform of channel pairs (c, c + 1) into the 16 panels V_ξ[pair][tile], bf16 pairs.
            for (long p = 0; p < kcp; p++) {
                const long c0 = 2 * (pc + p);
                for (long gi = 0; gi < NV; gi++) {
                    __m512 v0[16], v1[16];
                    if (gi < ng) {
                        wino_input(&groups[gi], x + c0 * plane, v0);
                        if (c0 + 1 < C) wino_input(&groups[gi], x + (c0 + 1) * plane, v1);
                        else for (int q = 0; q < 16; q++) v1[q] = _mm512_setzero_ps();
                    } else {
                        for (int q = 0; q < 16; q++) v0[q] = v1[q] = _mm512_setzero_ps();
                    }
                    for (int q = 0; q < 16; q++) {
                        const __m512i h = (__m512i)_mm512_cvtne2ps_pbh(v1[q], v0[q]);
                        _mm512_store_si512((void *)(V + ((long)q * kcp + p) * NR + 16 * gi), _mm512_permutexvar_epi16(idx, h));
                    }
                }
            }
            for (long ir = k0; ir < k1; ir += MR) {
                const int mr = (int)(k1 - ir < MR ? k1 - ir : MR);
                for (int q = 0; q < 16; q++)
                    micro_kernel(kcp, u32 + ((long)q * K + ir) * kp + pc, kp, mr, V + (long)q * kcp * NR,
                                 M + ((long)q * kc + (ir - k0)) * NR, NR, (int)nt, pc == 0, 0, NULL, NULL);
            }
        }
        // Output transform: Y = Aᵀ M A (+ bias), scattered to the tiles' 2×2 pixels.
        for (long o = 0; o < kc; o++) {
            const __m512 b = _mm512_set1_ps(bias ? bias[k0 + o] : 0.0f);
            float *yo = y + (k0 + o) * plane;
            for (long gi = 0; gi < ng; gi++) {
                __m512 m[16], s[8];
                for (int q = 0; q < 16; q++) m[q] = _mm512_load_ps(M + ((long)q * kc + o) * NR + 16 * gi);
                for (int j = 0; j < 4; j++) {
                    s[j] = _mm512_add_ps(_mm512_add_ps(m[j], m[4 + j]), m[8 + j]);
                    s[4 + j] = _mm512_sub_ps(_mm512_sub_ps(m[4 + j], m[8 + j]), m[12 + j]);
                }
                const wino_group *g = &groups[gi];
                for (int a = 0; a < 2; a++) {
                    const __m512 y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[4 * a], s[4 * a + 1]), s[4 * a + 2]), b);
                    const __m512 y1 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[4 * a + 1], s[4 * a + 2]), s[4 * a + 3]), b);
                    _mm512_mask_i32scatter_ps(yo, g->out_mask[2 * a], g->out[2 * a], y0, 4);
                    _mm512_mask_i32scatter_ps(yo, g->out_mask[2 * a + 1], g->out[2 * a + 1], y1, 4);
                }
            }
        }
    }
    free(groups);
    free(M);
    free(V);
}

#else   // no AVX-512 compiler support: report unsupported; callers then stay on fp32.

int uc_has_bf16(void) { return 0; }
void uc_bf16_gemm_lanes(long m, long n, long k, const float *a, long lda, const uint16_t *w,
                        long n0, long n1, float *c, long ldc, const float *bias, int accumulate) { abort(); }
void uc_bf16_gemm_rows(long m, long n, long k, const uint16_t *w, const float *b, long ldb,
                       float *c, long ldc, const float *bias, int accumulate) { abort(); }
void uc_bf16_conv_rows(long m, const uint16_t *w, const uc_conv_source *src, long n0, long n1,
                       float *c, long ldc, const float *bias) { abort(); }
long uc_bf16_winograd_size(long k, long c) { return 16 * uc_bf16_rows_size(k, c); }
void uc_bf16_pack_winograd(const float *w, long k, long c, uint16_t *dst) { abort(); }
void uc_bf16_winograd_conv(long K, long C, const uint16_t *u, const float *x, long B, long H, long W,
                           long k0, long k1, long t0, long t1, float *y, const float *bias) { abort(); }

#endif
