#define _GNU_SOURCE
#include "kernels.h"
#include "half_float.h"
#include <math.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>

// exp(x) for 8 floats: range reduction by ln2 and a degree-6 polynomial (Cephes expf), ~1 ulp.
static inline __m256 exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-88.3762626647949f);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
    fx = _mm256_floor_ps(fx);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

// x / (1 + exp(-a·x)) for 8 floats (SiLU with a = 1, quick GELU with a = 1.702).
static inline __m256 sigmoid_mul8(__m256 x, float a) {
    __m256 e = exp8(_mm256_mul_ps(x, _mm256_set1_ps(-a)));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

// erf for 8 floats (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7).
static inline __m256 erf8(__m256 x) {
    const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
    const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(ax, _mm256_set1_ps(0.3275911f), _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    const __m256 e = exp8(_mm256_mul_ps(_mm256_mul_ps(ax, ax), _mm256_set1_ps(-1.0f)));
    const __m256 r = _mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.0f));
    return _mm256_or_ps(r, sign);
}
#endif

void uc_layer_norm(const float *x, float *y, long rows, long cols,
                   const float *weight, const float *bias, float eps) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        // Two passes in double: matches torch's result to ~1e-7 without Welford's cost.
        double sum = 0;
        for (long c = 0; c < cols; c++) sum += xr[c];
        const float mean = (float)(sum / cols);
        double sq = 0;
        for (long c = 0; c < cols; c++) { const double d = xr[c] - mean; sq += d * d; }
        const float rstd = (float)(1.0 / sqrt(sq / cols + eps));
        for (long c = 0; c < cols; c++) {
            float v = (xr[c] - mean) * rstd;
            if (weight) v *= weight[c];
            if (bias) v += bias[c];
            yr[c] = v;
        }
    }
}

void uc_softmax_rows(float *x, long rows, long cols) {
    for (long r = 0; r < rows; r++) {
        float *xr = x + r * cols;
        float m = -INFINITY;
        for (long c = 0; c < cols; c++) m = xr[c] > m ? xr[c] : m;
        if (m == -INFINITY) { // fully masked row: torch gives NaN; we give zeros rather than poison
            memset(xr, 0, sizeof(float) * cols);
            continue;
        }
        double s = 0;
        long c = 0;
#ifdef __AVX2__
        const __m256 vm = _mm256_set1_ps(m);
        __m256 acc = _mm256_setzero_ps();
        for (; c + 8 <= cols; c += 8) {
            const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(xr + c), vm));
            _mm256_storeu_ps(xr + c, e);
            acc = _mm256_add_ps(acc, e);
        }
        float lanes[8];
        _mm256_storeu_ps(lanes, acc);
        for (int i = 0; i < 8; i++) s += lanes[i];
#endif
        for (; c < cols; c++) { const float e = expf(xr[c] - m); xr[c] = e; s += e; }
        const float inv = (float)(1.0 / s);
        for (long k = 0; k < cols; k++) xr[k] *= inv;
    }
}

#ifdef __AVX2__
static inline __m256 gelu8(__m256 v) {
    const __m256 e = erf8(_mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f)));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}
#endif
static inline float gelu1(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }

void uc_gelu_erf(const float *x, float *y, long n) {
    long i = 0;
#ifdef __AVX2__
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(x + i)));
#endif
    for (; i < n; i++) y[i] = gelu1(x[i]);
}

void uc_geglu(const float *h, float *y, long rows, long inner) {
    for (long r = 0; r < rows; r++) {
        const float *value = h + r * 2 * inner, *gate = value + inner;
        float *yr = y + r * inner;
        long i = 0;
#ifdef __AVX2__
        for (; i + 8 <= inner; i += 8)
            _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_loadu_ps(value + i), gelu8(_mm256_loadu_ps(gate + i))));
#endif
        for (; i < inner; i++) yr[i] = value[i] * gelu1(gate[i]);
    }
}

void uc_gelu_tanh(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    }
}

void uc_quick_gelu(const float *x, float *y, long n) {
    long i = 0;
#ifdef __AVX2__
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, sigmoid_mul8(_mm256_loadu_ps(x + i), 1.702f));
#endif
    for (; i < n; i++) { const float v = x[i]; y[i] = v / (1.0f + expf(-1.702f * v)); }
}

void uc_silu(const float *x, float *y, long n) {
    long i = 0;
#ifdef __AVX2__
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, sigmoid_mul8(_mm256_loadu_ps(x + i), 1.0f));
#endif
    for (; i < n; i++) { const float v = x[i]; y[i] = v / (1.0f + expf(-v)); }
}

void uc_group_norm(const float *x, float *y, long channels, long spatial, long groups,
                   const float *weight, const float *bias, float eps, int fuse_silu) {
    const long per = channels / groups;
    for (long g = 0; g < groups; g++) {
        const float *xg = x + g * per * spatial;
        float *yg = y + g * per * spatial;
        const long n = per * spatial;
        // Sums in 16 float lanes per block of 4096, blocks added in double: vectorises and stays accurate.
        double sum = 0, sq = 0;
        for (long b0 = 0; b0 < n; b0 += 4096) {
            const long b1 = b0 + 4096 < n ? b0 + 4096 : n;
            float lanes[16] = {0};
            long i = b0;
            for (; i + 16 <= b1; i += 16) for (int l = 0; l < 16; l++) lanes[l] += xg[i + l];
            for (; i < b1; i++) lanes[0] += xg[i];
            for (int l = 0; l < 16; l++) sum += lanes[l];
        }
        const float mean = (float)(sum / n);
        for (long b0 = 0; b0 < n; b0 += 4096) {
            const long b1 = b0 + 4096 < n ? b0 + 4096 : n;
            float lanes[16] = {0};
            long i = b0;
            for (; i + 16 <= b1; i += 16) for (int l = 0; l < 16; l++) { const float d = xg[i + l] - mean; lanes[l] += d * d; }
            for (; i < b1; i++) { const float d = xg[i] - mean; lanes[0] += d * d; }
            for (int l = 0; l < 16; l++) sq += lanes[l];
        }
        const float rstd = (float)(1.0 / sqrt(sq / n + eps));
        for (long c = 0; c < per; c++) {
            const long ch = g * per + c;
            const float a = rstd * (weight ? weight[ch] : 1.0f);
            const float b = (bias ? bias[ch] : 0.0f) - mean * a;
            const float *xc = xg + c * spatial;
            float *yc = yg + c * spatial;
            for (long i = 0; i < spatial; i++) yc[i] = xc[i] * a + b;
            if (fuse_silu) uc_silu(yc, yc, spatial);
        }
    }
}

void uc_im2col(const float *x, float *col, long c, long h, long w, long kh, long kw,
               long sh, long sw, long ph, long pw, long oy0, long oy1, long ow) {
    const long rows = oy1 - oy0;
    for (long ci = 0; ci < c; ci++)
        for (long ki = 0; ki < kh; ki++)
            for (long kj = 0; kj < kw; kj++) {
                float *dst = col + ((ci * kh + ki) * kw + kj) * rows * ow;
                for (long oy = oy0; oy < oy1; oy++) {
                    const long iy = oy * sh - ph + ki;
                    float *d = dst + (oy - oy0) * ow;
                    if (iy < 0 || iy >= h) { memset(d, 0, sizeof(float) * ow); continue; }
                    const float *src = x + (ci * h + iy) * w;
                    if (sw == 1) {
                        // Contiguous row: copy the valid span, zero the padded edges.
                        const long ix0 = kj - pw;
                        for (long ox = 0; ox < ow; ox++) {
                            const long ix = ix0 + ox;
                            d[ox] = (ix >= 0 && ix < w) ? src[ix] : 0.0f;
                        }
                    } else {
                        for (long ox = 0; ox < ow; ox++) {
                            const long ix = ox * sw - pw + kj;
                            d[ox] = (ix >= 0 && ix < w) ? src[ix] : 0.0f;
                        }
                    }
                }
            }
}

void uc_f16_to_f32(const uint16_t *src, float *dst, long n) {
    long i = 0;
#ifdef __F16C__
    // Hardware conversion (exact, subnormals and infinities included).
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
#endif
    for (; i < n; i++) dst[i] = uc_half_to_float(src[i]);
}

void uc_bf16_to_f32(const uint16_t *src, float *dst, long n) {
    for (long i = 0; i < n; i++) { const uint32_t b = (uint32_t)src[i] << 16; memcpy(dst + i, &b, 4); }
}

void uc_add(const float *a, const float *b, float *y, long n) { for (long i = 0; i < n; i++) y[i] = a[i] + b[i]; }
void uc_mul(const float *a, const float *b, float *y, long n) { for (long i = 0; i < n; i++) y[i] = a[i] * b[i]; }

#if defined(__linux__)
#include <sched.h>
int uc_affinity_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
    return CPU_COUNT(&set);
}
#else
int uc_affinity_cpus(void) { return 0; }
#endif

#if defined(__GLIBC__)
#include <malloc.h>
void uc_trim_heap(void) { malloc_trim(0); }
// glibc's defaults hand every block above its (adaptive) mmap threshold back to the kernel when freed, so the
// next one of that size page-faults and is zeroed again. Tensors of 4 MiB and more bypass malloc (buffers.c);
// below that, freed blocks stay in the heap, which grows in 256 MiB steps and is only shrunk by uc_trim_heap.
void uc_tune_heap(void) {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TOP_PAD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 0x7fffffff);
}
#else
void uc_trim_heap(void) {}
void uc_tune_heap(void) {}
#endif
