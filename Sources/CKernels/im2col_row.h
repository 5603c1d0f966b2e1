// Shared by conv_f32.c and gemm_bf16.c: one row of an implicit im2col matrix (private to CKernels).
#pragma once
#include <string.h>
#include "conv_f32.h"

// Writes row k of the im2col matrix for columns [j0, j0 + count) to dst (zeros where the kernel overhangs the image).
static inline void uc_im2col_row(const uc_conv_source *s, long k, long j0, long count, float *dst) {
    const long kx = k % s->kw, ky = (k / s->kw) % s->kh, ci = k / (s->kw * s->kh);
    const float *plane = s->x + ci * s->h * s->w;
    long j = j0, end = j0 + count;
    while (j < end) {
        const long oy = j / s->ow, ox0 = j % s->ow;
        const long seg = (s->ow - ox0) < (end - j) ? (s->ow - ox0) : (end - j);
        const long iy = oy * s->sh - s->ph + ky;
        if (iy < 0 || iy >= s->h) {
            memset(dst, 0, sizeof(float) * seg);
        } else {
            const float *row = plane + iy * s->w;
            if (s->sw == 1) {
                // Contiguous: zeros left of the image, a copy, zeros right of it.
                long ix = ox0 - s->pw + kx, o = 0;
                for (; o < seg && ix < 0; o++, ix++) dst[o] = 0;
                long valid = s->w - ix < seg - o ? s->w - ix : seg - o;
                if (valid > 0) { memcpy(dst + o, row + ix, sizeof(float) * valid); o += valid; }
                for (; o < seg; o++) dst[o] = 0;
            } else {
                for (long o = 0; o < seg; o++) {
                    const long ix = (ox0 + o) * s->sw - s->pw + kx;
                    dst[o] = (ix >= 0 && ix < s->w) ? row[ix] : 0.0f;
                }
            }
        }
        dst += seg;
        j += seg;
    }
}

