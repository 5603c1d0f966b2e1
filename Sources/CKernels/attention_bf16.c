// The fused attention kernel with bf16 products (AVX512_BF16 `vdpbf16ps`, fp32 accumulation), for
// `--precision bf16`: the same blocks, online softmax and masks as attention.c, but Q·Kᵀ and P·V take
// bf16 operands, two products per fp32 lane per instruction. Keys are packed per block as
// [d/2 pairs][64 keys][2], values as [key pairs][d][2]; queries are rounded once per call and each
// block's probabilities when they are used. The softmax itself stays fp32.
#include "attention.h"
#include "gemm_bf16.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>

// The fp32 kernel's helpers (softmax, exp2) at AVX-512 width, compiled for this file's target.
#define AK_VW 16
#define AK_CQ 4
#define AK_CP 4
#define AK_NAME(x) x##_b16
#define AK_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
#include "attention_kernel.h"

#define BT AK_TARGET
#define BK UC_ATTENTION_KEY_BLOCK
#define NVB (BK / 16)

long uc_attention_bf16_keys_count(long tk, long d) { return (tk + BK - 1) / BK * BK * d; }
long uc_attention_bf16_values_count(long tk, long d) { return (tk + BK - 1) / BK * BK * d; }

void uc_attention_bf16_pack_keys(const float *k, long ldk, long tk, long d, float scale, uint16_t *packed) {
    const float s = scale * 1.44269504088896341f; // log2(e): the kernel uses 2^x
    for (long k0 = 0; k0 < tk; k0 += BK) {
        uint16_t *block = packed + k0 * d;
        for (long p = 0; p < d / 2; p++)
            for (long j = 0; j < BK; j++) {
                const long key = k0 + j;
                uint16_t *dst = block + (p * BK + j) * 2;
                dst[0] = key < tk ? uc_f32_to_bf16(k[key * ldk + 2 * p] * s) : 0;
                dst[1] = key < tk ? uc_f32_to_bf16(k[key * ldk + 2 * p + 1] * s) : 0;
            }
    }
}

void uc_attention_bf16_pack_values(const float *v, long ldv, long tk, long d, uint16_t *packed) {
    const long pairs = (tk + BK - 1) / BK * BK / 2;
    for (long kp = 0; kp < pairs; kp++)
        for (long c = 0; c < d; c++) {
            const long k0 = 2 * kp;
            uint16_t *dst = packed + (kp * d + c) * 2;
            dst[0] = k0 < tk ? uc_f32_to_bf16(v[k0 * ldv + c]) : 0;
            dst[1] = k0 + 1 < tk ? uc_f32_to_bf16(v[(k0 + 1) * ldv + c]) : 0;
        }
}

// s[r][0..64) = q[r] · keys of the block, for R rows; qp: R rows of dp query pairs; kt: [dp][64][2].
BT static inline __attribute__((always_inline)) void qk_bf16(const int R, const uint32_t *qp, long dp,
                                                             const uint16_t *kt, float *s) {
    __m512 acc[6][NVB];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < NVB; c++) acc[r][c] = _mm512_setzero_ps();
    for (long p = 0; p < dp; p++) {
        __m512bh b[NVB];
        for (int c = 0; c < NVB; c++) b[c] = (__m512bh)_mm512_loadu_si512((const void *)(kt + (p * BK + c * 16) * 2));
        for (int r = 0; r < R; r++) {
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)qp[r * dp + p]);
            for (int c = 0; c < NVB; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], a, b[c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < NVB; c++) _mm512_store_ps(s + r * BK + c * 16, acc[r][c]);
}

// acc[r][0..C·16) = acc[r]·corr[r] + Σ pairs pp[r][kp] · v[kp]; pp: R rows of 32 probability pairs;
// vb: [pairs][d][2] starting at this block and column.
BT static inline __attribute__((always_inline)) void pv_bf16(const int R, const int C, const uint32_t *pp, long pairs,
                                                             const uint16_t *vb, long d, const float *corr, float *acc) {
    __m512 o[6][4];
    for (int r = 0; r < R; r++) {
        const __m512 cr = _mm512_set1_ps(corr[r]);
        for (int c = 0; c < C; c++) o[r][c] = _mm512_mul_ps(_mm512_loadu_ps(acc + r * d + c * 16), cr);
    }
    for (long kp = 0; kp < pairs; kp++) {
        __m512bh b[4];
        for (int c = 0; c < C; c++) b[c] = (__m512bh)_mm512_loadu_si512((const void *)(vb + (kp * d + c * 16) * 2));
        for (int r = 0; r < R; r++) {
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)pp[r * (BK / 2) + kp]);
            for (int c = 0; c < C; c++) o[r][c] = _mm512_dpbf16_ps(o[r][c], a, b[c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) _mm512_storeu_ps(acc + r * d + c * 16, o[r][c]);
}

BT static void rows_bf16(const float *q, long ldq, const uint16_t *pk, const uint16_t *pv, const float *key_bias,
                         long tk, long d, long row0, long rows, int causal, float *o, long ldo) {
    const long dp = d / 2;
    float *acc = uc_attention_alloc(rows * d), *l = uc_attention_alloc(rows * 16), *m = uc_attention_alloc(rows);
    uint32_t *qp = (uint32_t *)uc_attention_alloc(rows * dp);
    memset(acc, 0, sizeof(float) * rows * d);
    memset(l, 0, sizeof(float) * rows * 16);
    for (long r = 0; r < rows; r++) {
        m[r] = -INFINITY;
        const float *qr = q + (row0 + r) * ldq;
        for (long p = 0; p < dp; p++)
            qp[r * dp + p] = (uint32_t)uc_f32_to_bf16(qr[2 * p]) | (uint32_t)uc_f32_to_bf16(qr[2 * p + 1]) << 16;
    }
    float s[6 * BK] __attribute__((aligned(64)));
    float bias[BK] __attribute__((aligned(64)));
    uint32_t pp[6 * BK / 2] __attribute__((aligned(64)));
    float corr[6];

    const long last_row = row0 + rows - 1;
    for (long k0 = 0, kb = 0; k0 < tk; k0 += BK, kb++) {
        if (causal && k0 > last_row) break;
        const long n = tk - k0 < BK ? tk - k0 : BK;
        const uint16_t *kt = pk + kb * BK * d;
        const uint16_t *vb = pv + k0 * d; // k0 is even: pair k0/2 starts at (k0/2)·d·2
        const float *block_bias = NULL;
        if (key_bias || n < BK) { // padding keys past tk are hidden too
            for (long c = 0; c < BK; c++) bias[c] = c < n ? (key_bias ? key_bias[k0 + c] : 0.0f) : -INFINITY;
            block_bias = bias;
        }
        const long pairs = (n + 1) / 2;
        for (long r0 = 0; r0 < rows; r0 += 6) {
            const long rr = rows - r0 < 6 ? rows - r0 : 6;
            const long i0 = row0 + r0;
            if (causal && k0 > i0 + rr - 1) continue;
            if (rr == 6) qk_bf16(6, qp + r0 * dp, dp, kt, s);
            else for (long r = 0; r < rr; r++) qk_bf16(1, qp + (r0 + r) * dp, dp, kt, s + r * BK);
            softmax_n_b16(rr, NVB, s, block_bias, causal, k0, i0, m + r0, l + r0 * 16, corr);
            // Probabilities to bf16 pairs: consecutive keys (2kp, 2kp+1) share one 32-bit lane.
            for (long r = 0; r < rr; r++)
                for (int h = 0; h < BK / 32; h++) {
                    const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_load_ps(s + r * BK + h * 32 + 16), _mm512_load_ps(s + r * BK + h * 32));
                    _mm512_store_si512((void *)(pp + r * (BK / 2) + h * 16), (__m512i)b);
                }
            long c0 = 0;
            if (rr == 6) {
                for (; c0 + 64 <= d; c0 += 64) pv_bf16(6, 4, pp, pairs, vb + c0 * 2, d, corr, acc + r0 * d + c0);
                for (; c0 < d; c0 += 16) pv_bf16(6, 1, pp, pairs, vb + c0 * 2, d, corr, acc + r0 * d + c0);
            } else {
                for (long r = 0; r < rr; r++) {
                    for (c0 = 0; c0 + 64 <= d; c0 += 64)
                        pv_bf16(1, 4, pp + r * (BK / 2), pairs, vb + c0 * 2, d, corr + r, acc + (r0 + r) * d + c0);
                    for (; c0 < d; c0 += 16)
                        pv_bf16(1, 1, pp + r * (BK / 2), pairs, vb + c0 * 2, d, corr + r, acc + (r0 + r) * d + c0);
                }
            }
        }
    }
    for (long r = 0; r < rows; r++) {
        float total = 0;
        for (int j = 0; j < 16; j++) total += l[r * 16 + j];
        const __m512 inv = _mm512_set1_ps(total > 0 ? 1 / total : 0);
        float *orow = o + (row0 + r) * ldo;
        for (long c = 0; c < d; c += 16) _mm512_storeu_ps(orow + c, _mm512_mul_ps(_mm512_loadu_ps(acc + r * d + c), inv));
    }
    free(acc); free(l); free(m); free(qp);
}

int uc_attention_bf16_supported(long d) { return d > 0 && d % 16 == 0 && uc_has_bf16(); }

void uc_attention_bf16_rows(const float *q, long ldq, const uint16_t *packed_keys, const uint16_t *packed_values,
                            const float *key_bias, long tk, long d, long row0, long rows, int causal, float *o, long ldo) {
    rows_bf16(q, ldq, packed_keys, packed_values, key_bias, tk, d, row0, rows, causal, o, ldo);
}

#else

long uc_attention_bf16_keys_count(long tk, long d) { return 0; }
long uc_attention_bf16_values_count(long tk, long d) { return 0; }
void uc_attention_bf16_pack_keys(const float *k, long ldk, long tk, long d, float scale, uint16_t *packed) {}
void uc_attention_bf16_pack_values(const float *v, long ldv, long tk, long d, uint16_t *packed) {}
int uc_attention_bf16_supported(long d) { return 0; }
void uc_attention_bf16_rows(const float *q, long ldq, const uint16_t *packed_keys, const uint16_t *packed_values,
                            const float *key_bias, long tk, long d, long row0, long rows, int causal, float *o, long ldo) {}

#endif
