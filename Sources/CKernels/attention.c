#include "attention.h"
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// AVX-512: 6 rows × 4 vectors = 24 of the 32 zmm registers accumulate in both products.
#define AK_VW 16
#define AK_CQ 4
#define AK_CP 4
#define AK_NAME(x) x##_avx512
#define AK_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#include "attention_kernel.h"
#undef AK_VW
#undef AK_CQ
#undef AK_CP
#undef AK_NAME
#undef AK_TARGET

// AVX2 (the target's baseline): 6 rows × 2 vectors = 12 of the 16 ymm registers.
#define AK_VW 8
#define AK_CQ 2
#define AK_CP 2
#define AK_NAME(x) x##_avx2
#define AK_TARGET
#include "attention_kernel.h"

int uc_attention_best_isa(long d) {
    if (d <= 0) return 0;
#ifndef UC_PORTABLE_ONLY  // see conv_f32.c: the AVX2 kernel only
    if (d % 16 == 0 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) return 2;
#endif
    return d % 8 == 0 ? 1 : 0;
}

long uc_attention_packed_keys_count(long tk, long d) {
    return (tk + UC_ATTENTION_KEY_BLOCK - 1) / UC_ATTENTION_KEY_BLOCK * d * UC_ATTENTION_KEY_BLOCK;
}

void uc_attention_pack_keys(const float *k, long ldk, long tk, long d, float scale, float *packed) {
    const long bk = UC_ATTENTION_KEY_BLOCK;
    const float s = scale * 1.44269504088896341f; // log2(e): the kernel uses 2^x
    for (long k0 = 0; k0 < tk; k0 += bk) {
        float *block = packed + k0 * d;
        for (long j = 0; j < bk; j++) {
            if (k0 + j < tk) {
                const float *row = k + (k0 + j) * ldk;
                for (long e = 0; e < d; e++) block[e * bk + j] = row[e] * s;
            } else {
                for (long e = 0; e < d; e++) block[e * bk + j] = 0;
            }
        }
    }
}

void uc_attention_rows(int isa, const float *q, long ldq, const float *packed, const float *v, long ldv,
                       const float *key_bias, long tk, long d, long row0, long rows, int causal,
                       float *o, long ldo) {
    if (isa == 2) rows_avx512(q, ldq, packed, v, ldv, key_bias, tk, d, row0, rows, causal, o, ldo);
    else rows_avx2(q, ldq, packed, v, ldv, key_bias, tk, d, row0, rows, causal, o, ldo);
}
