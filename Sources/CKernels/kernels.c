#include "kernels.h"
#include <math.h>
#include <string.h>

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
        float s = 0;
        for (long c = 0; c < cols; c++) { const float e = expf(xr[c] - m); xr[c] = e; s += e; }
        const float inv = 1.0f / s;
        for (long c = 0; c < cols; c++) xr[c] *= inv;
    }
}

void uc_gelu_erf(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) { const float v = x[i]; y[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }
}

void uc_gelu_tanh(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    }
}

void uc_quick_gelu(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) { const float v = x[i]; y[i] = v / (1.0f + expf(-1.702f * v)); }
}

void uc_silu(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) { const float v = x[i]; y[i] = v / (1.0f + expf(-v)); }
}

void uc_group_norm(const float *x, float *y, long channels, long spatial, long groups,
                   const float *weight, const float *bias, float eps, int fuse_silu) {
    const long per = channels / groups;
    for (long g = 0; g < groups; g++) {
        const float *xg = x + g * per * spatial;
        float *yg = y + g * per * spatial;
        const long n = per * spatial;
        double sum = 0;
        for (long i = 0; i < n; i++) sum += xg[i];
        const float mean = (float)(sum / n);
        double sq = 0;
        for (long i = 0; i < n; i++) { const double d = xg[i] - mean; sq += d * d; }
        const float rstd = (float)(1.0 / sqrt(sq / n + eps));
        for (long c = 0; c < per; c++) {
            const long ch = g * per + c;
            const float a = rstd * (weight ? weight[ch] : 1.0f);
            const float b = (bias ? bias[ch] : 0.0f) - mean * a;
            const float *xc = xg + c * spatial;
            float *yc = yg + c * spatial;
            if (fuse_silu) {
                for (long i = 0; i < spatial; i++) { const float v = xc[i] * a + b; yc[i] = v / (1.0f + expf(-v)); }
            } else {
                for (long i = 0; i < spatial; i++) yc[i] = xc[i] * a + b;
            }
        }
    }
}

void uc_im2col(const float *x, float *col, long c, long h, long w, long kh, long kw,
               long sh, long sw, long ph, long pw, long oh, long ow) {
    for (long ci = 0; ci < c; ci++)
        for (long ki = 0; ki < kh; ki++)
            for (long kj = 0; kj < kw; kj++) {
                float *dst = col + ((ci * kh + ki) * kw + kj) * oh * ow;
                for (long oy = 0; oy < oh; oy++) {
                    const long iy = oy * sh - ph + ki;
                    float *d = dst + oy * ow;
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

static inline float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) bits = sign;
        else { // subnormal: value = mant * 2^-24, exact in float32
            float f = (float)mant * 5.9604644775390625e-8f;
            memcpy(&bits, &f, 4);
            bits |= sign;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

void uc_f16_to_f32(const uint16_t *src, float *dst, long n) {
    for (long i = 0; i < n; i++) dst[i] = half_to_float(src[i]);
}

void uc_bf16_to_f32(const uint16_t *src, float *dst, long n) {
    for (long i = 0; i < n; i++) { const uint32_t b = (uint32_t)src[i] << 16; memcpy(dst + i, &b, 4); }
}

void uc_add(const float *a, const float *b, float *y, long n) { for (long i = 0; i < n; i++) y[i] = a[i] + b[i]; }
void uc_mul(const float *a, const float *b, float *y, long n) { for (long i = 0; i < n; i++) y[i] = a[i] * b[i]; }
void uc_add_row_bias(float *y, const float *bias, long rows, long cols) {
    for (long r = 0; r < rows; r++) { float *yr = y + r * cols; for (long c = 0; c < cols; c++) yr[c] += bias[c]; }
}
