// The fused attention kernel body. Private to attention.c (which includes it once per vector width) and
// attention_bf16.c (its softmax). AK_VW floats per vector (16: AVX-512, 8: AVX2), AK_NAME(x) for unique names, AK_TARGET for the
// function attribute, AK_CQ / AK_CP vectors per micro-tile row in the score / value products.
// Written with clang vector extensions so one body serves both widths.

#ifndef UC_ATTENTION_ALLOC
#define UC_ATTENTION_ALLOC
// 64-byte aligned scratch, rounded up as aligned_alloc requires.
static float *uc_attention_alloc(long count) {
    size_t bytes = ((size_t)(count > 0 ? count : 1) * sizeof(float) + 63) & ~(size_t)63;
    return (float *)aligned_alloc(64, bytes);
}
#endif

#define AK_FN static inline __attribute__((always_inline)) AK_TARGET
#define VF AK_NAME(vf)
#define VI AK_NAME(vi)
#define BK UC_ATTENTION_KEY_BLOCK
#define NVB (BK / AK_VW)
#define LOAD(p) (*(const VF *)(p))
#define STORE(p, x) (*(VF *)(p) = (x))

// aligned(4): loads and stores through these types may be unaligned.
typedef float VF __attribute__((vector_size(AK_VW * 4), aligned(4)));
typedef int VI __attribute__((vector_size(AK_VW * 4), aligned(4)));

// (Not `(VF){0} + x`: 0 + x is not an identity for x = -0, so that costs a scalar add per broadcast.)
AK_FN VF AK_NAME(splat)(float x) {
    VF r;
    for (int j = 0; j < AK_VW; j++) r[j] = x;
    return r;
}

// 2^x for x <= 0 (Cephes exp2f polynomial on [-0.5, 0.5], ~1 ulp); exactly 0 below -127, so -inf gives 0.
AK_FN VF AK_NAME(exp2v)(VF x) {
#if AK_VW == 16
    // AVX-512: vreduceps gives f = x - round(x) and vscalefps multiplies by 2^n (0 for -inf) directly.
    const VF f = (VF)_mm512_reduce_ps((__m512)x, 0);
    const VF n = x - f;
#else
    x = __builtin_elementwise_max(x, AK_NAME(splat)(-127.0f));
    const VF n = __builtin_elementwise_roundeven(x);
    const VF f = x - n;
#endif
    VF p = AK_NAME(splat)(1.535336188319500e-4f);
    p = __builtin_elementwise_fma(p, f, AK_NAME(splat)(1.339887440266574e-3f));
    p = __builtin_elementwise_fma(p, f, AK_NAME(splat)(9.618437357674640e-3f));
    p = __builtin_elementwise_fma(p, f, AK_NAME(splat)(5.550332471162809e-2f));
    p = __builtin_elementwise_fma(p, f, AK_NAME(splat)(2.402264791363012e-1f));
    p = __builtin_elementwise_fma(p, f, AK_NAME(splat)(6.931472028550421e-1f));
    p = __builtin_elementwise_fma(p, f, AK_NAME(splat)(1.0f));
#if AK_VW == 16
    return (VF)_mm512_scalef_ps((__m512)p, (__m512)n);
#else
    const VI e = (__builtin_convertvector(n, VI) + 127) << 23;
    return p * (VF)e;
#endif
}

// s[r][0 ..< C·VW] = q[r] · kt for R query rows; kt: d rows of the packed key block (stride BK).
// R and C are literals at every call, so acc lives in registers.
AK_FN void AK_NAME(qk_tile)(const int R, const int C, const float *q, long ldq, const float *kt, long d, float *s) {
    VF acc[6][AK_CQ];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = AK_NAME(splat)(0);
    for (long e = 0; e < d; e++) {
        VF b[AK_CQ];
        for (int c = 0; c < C; c++) b[c] = LOAD(kt + e * BK + c * AK_VW);
        for (int r = 0; r < R; r++) {
            const VF a = AK_NAME(splat)(q[r * ldq + e]);
            for (int c = 0; c < C; c++) acc[r][c] = __builtin_elementwise_fma(a, b[c], acc[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) STORE(s + r * BK + c * AK_VW, acc[r][c]);
}

// acc[r][0 ..< C·VW] = acc[r]·corr[r] + Σ_k p[r][k]·v[k] over n keys (p has stride BK, acc stride d).
AK_FN void AK_NAME(pv_tile)(const int R, const int C, const float *p, long n, const float *v, long ldv,
                            const float *corr, float *acc, long d) {
    VF o[6][AK_CP];
    for (int r = 0; r < R; r++) {
        const VF cr = AK_NAME(splat)(corr[r]);
        for (int c = 0; c < C; c++) o[r][c] = LOAD(acc + r * d + c * AK_VW) * cr;
    }
    for (long k = 0; k < n; k++) {
        VF b[AK_CP];
        for (int c = 0; c < C; c++) b[c] = LOAD(v + k * ldv + c * AK_VW);
        for (int r = 0; r < R; r++) {
            const VF a = AK_NAME(splat)(p[r * BK + k]);
            for (int c = 0; c < C; c++) o[r][c] = __builtin_elementwise_fma(a, b[c], o[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) STORE(acc + r * d + c * AK_VW, o[r][c]);
}

// Scores of rr (<= 6) rows against the first nv vectors of one key block.
AK_FN void AK_NAME(scores)(long rr, long nv, const float *q, long ldq, const float *kt, long d, float *s) {
    if (nv == NVB) {
        for (long c0 = 0; c0 < NVB; c0 += AK_CQ) {
            if (rr == 6) AK_NAME(qk_tile)(6, AK_CQ, q, ldq, kt + c0 * AK_VW, d, s + c0 * AK_VW);
            else for (long r = 0; r < rr; r++) AK_NAME(qk_tile)(1, AK_CQ, q + r * ldq, ldq, kt + c0 * AK_VW, d, s + r * BK + c0 * AK_VW);
        }
    } else { // last, partial key block: only the vectors that hold keys
        for (long c = 0; c < nv; c++) {
            if (rr == 6) AK_NAME(qk_tile)(6, 1, q, ldq, kt + c * AK_VW, d, s + c * AK_VW);
            else for (long r = 0; r < rr; r++) AK_NAME(qk_tile)(1, 1, q + r * ldq, ldq, kt + c * AK_VW, d, s + r * BK + c * AK_VW);
        }
    }
}

// Online softmax step for rr rows: masks, updates the running reference m (within 8 of the max seen)
// and vector sums l, turns s into weights 2^(s - m) and leaves in corr the factor that rescales
// earlier output.
AK_FN void AK_NAME(softmax_n)(long rr, const long nv, float *s, const float *bias, int causal, long k0, long i0,
                              float *m, float *l, float *corr) {
    VF iota;
    for (int j = 0; j < AK_VW; j++) iota[j] = (float)j;
    const VF neg_inf = AK_NAME(splat)(-INFINITY);
    for (long r = 0; r < rr; r++) {
        const long i = i0 + r;
        float *sr = s + r * BK;
        VF x[NVB];
        VF vmax = neg_inf;
        for (long c = 0; c < nv; c++) {
            VF xv = LOAD(sr + c * AK_VW);
            if (bias) xv += LOAD(bias + c * AK_VW);
            if (causal && k0 + (c + 1) * AK_VW - 1 > i) {
                const VI hide = (iota + (float)(k0 + c * AK_VW)) > AK_NAME(splat)((float)i);
                xv = (VF)(((VI)xv & ~hide) | ((VI)neg_inf & hide));
            }
            x[c] = xv;
            vmax = __builtin_elementwise_max(vmax, xv);
        }
        // The reference max only moves when a score passes it by more than 8 (base 2): probabilities stay
        // <= 2^8, harmless in float, and most blocks skip the horizontal max and the rescaling.
        const float mold = m[r];
        const VI above = vmax > AK_NAME(splat)(mold + 8);
        const float mnew = __builtin_reduce_or(above) ? __builtin_reduce_max(vmax) : mold;
        if (mnew == -INFINITY) { // no visible key yet: nothing to add
            corr[r] = 1;
            for (long c = 0; c < nv; c++) STORE(sr + c * AK_VW, AK_NAME(splat)(0));
            continue;
        }
        // 0 on the first visible block (mold = -inf); usually 1 (the reference did not move).
        const float cr = mnew == mold ? 1.0f : exp2f(mold - mnew);
        const VF vm = AK_NAME(splat)(mnew);
        VF sum = AK_NAME(splat)(0);
        for (long c = 0; c < nv; c++) {
            const VF p = AK_NAME(exp2v)(x[c] - vm);
            STORE(sr + c * AK_VW, p);
            sum += p;
        }
        STORE(l + r * AK_VW, LOAD(l + r * AK_VW) * cr + sum);
        m[r] = mnew;
        corr[r] = cr;
    }
}

// Full blocks get a constant vector count, so the row lives in registers.
AK_FN void AK_NAME(softmax)(long rr, long nv, float *s, const float *bias, int causal, long k0, long i0,
                            float *m, float *l, float *corr) {
    if (nv == NVB) AK_NAME(softmax_n)(rr, NVB, s, bias, causal, k0, i0, m, l, corr);
    else AK_NAME(softmax_n)(rr, nv, s, bias, causal, k0, i0, m, l, corr);
}

// acc rows += P · V for rr rows over n keys, all of the head's d columns.
AK_FN void AK_NAME(values)(long rr, long n, const float *p, const float *v, long ldv, const float *corr,
                           float *acc, long d) {
    long c0 = 0;
    if (rr == 6) {
        for (; c0 + AK_CP * AK_VW <= d; c0 += AK_CP * AK_VW) AK_NAME(pv_tile)(6, AK_CP, p, n, v + c0, ldv, corr, acc + c0, d);
        for (; c0 < d; c0 += AK_VW) AK_NAME(pv_tile)(6, 1, p, n, v + c0, ldv, corr, acc + c0, d);
    } else {
        for (long r = 0; r < rr; r++) {
            for (c0 = 0; c0 + AK_CP * AK_VW <= d; c0 += AK_CP * AK_VW)
                AK_NAME(pv_tile)(1, AK_CP, p + r * BK, n, v + c0, ldv, corr + r, acc + r * d + c0, d);
            for (; c0 < d; c0 += AK_VW) AK_NAME(pv_tile)(1, 1, p + r * BK, n, v + c0, ldv, corr + r, acc + r * d + c0, d);
        }
    }
}

AK_TARGET static void AK_NAME(rows)(const float *q, long ldq, const float *packed, const float *v, long ldv,
                                    const float *key_bias, long tk, long d, long row0, long rows, int causal,
                                    float *o, long ldo) {
    // Per call scratch: output accumulators, running max and per-lane running sums of each row.
    float *acc = uc_attention_alloc(rows * d), *l = uc_attention_alloc(rows * AK_VW), *m = uc_attention_alloc(rows);
    memset(acc, 0, sizeof(float) * rows * d);
    memset(l, 0, sizeof(float) * rows * AK_VW);
    for (long r = 0; r < rows; r++) m[r] = -INFINITY;
    float s[6 * BK] __attribute__((aligned(64)));
    float bias[BK] __attribute__((aligned(64)));
    float corr[6];

    const long last_row = row0 + rows - 1;
    for (long k0 = 0, kb = 0; k0 < tk; k0 += BK, kb++) {
        if (causal && k0 > last_row) break; // this and later blocks are hidden from every row
        const long n = tk - k0 < BK ? tk - k0 : BK;
        const long nv = (n + AK_VW - 1) / AK_VW;
        const float *kt = packed + kb * d * BK;
        const float *block_bias = NULL;
        if (key_bias || n < BK) { // padding keys past tk are hidden too
            for (long c = 0; c < BK; c++) bias[c] = c < n ? (key_bias ? key_bias[k0 + c] : 0.0f) : -INFINITY;
            block_bias = bias;
        }
        for (long r0 = 0; r0 < rows; r0 += 6) {
            const long rr = rows - r0 < 6 ? rows - r0 : 6;
            const long i0 = row0 + r0;
            if (causal && k0 > i0 + rr - 1) continue;
            AK_NAME(scores)(rr, nv, q + i0 * ldq, ldq, kt, d, s);
            AK_NAME(softmax)(rr, nv, s, block_bias, causal, k0, i0, m + r0, l + r0 * AK_VW, corr);
            AK_NAME(values)(rr, n, s, v + k0 * ldv, ldv, corr, acc + r0 * d, d);
        }
    }
    for (long r = 0; r < rows; r++) {
        float total = 0;
        for (int j = 0; j < AK_VW; j++) total += l[r * AK_VW + j];
        const VF inv = AK_NAME(splat)(total > 0 ? 1 / total : 0);
        float *orow = o + (row0 + r) * ldo;
        for (long c = 0; c < d; c += AK_VW) STORE(orow + c, LOAD(acc + r * d + c) * inv);
    }
    free(acc); free(l); free(m);
}

#undef AK_FN
#undef VF
#undef VI
#undef BK
#undef NVB
#undef LOAD
#undef STORE
