// In-memory WebP decoding on libwebp, for UnCLIPImage's ImageFile.
//
// What it reproduces: Pillow's WebP plugin, which decodes every WebP file (still or animated)
// through libwebpdemux's WebPAnimDecoder with default options (non-premultiplied MODE_RGBA,
// fancy upsampling, no dithering) and shows the first frame when opened; Image.convert("RGB")
// then drops alpha. Using the same API gives the same first frame, including the transparent
// black canvas around a first frame smaller than the canvas.
//
// Why C: to read and check the declared size before libwebp allocates its canvas (two
// width*height*4 buffers in WebPAnimDecoderNew), and to keep the status mapping in one place.
#ifndef UNCLIP_WEBP_H
#define UNCLIP_WEBP_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>
#include <webp/demux.h>

enum {
    UNCLIP_WEBP_OK = 0,
    UNCLIP_WEBP_CORRUPT = 1,
    UNCLIP_WEBP_TRUNCATED = 2,
    UNCLIP_WEBP_TOO_LARGE = 3,  // width/height are set; nothing was allocated for pixels
    UNCLIP_WEBP_NO_MEMORY = 5,
};

typedef struct {
    uint32_t width, height;  // the canvas, as declared in the header
    int has_alpha, animated, frame_count;
    unsigned char *rgb;      // width*height*3 bytes (malloc'd) when the status is OK
    int status;
    char message[160];
} unclip_webp_decoded;

static inline uint32_t unclip_webp_le(const unsigned char *p, int n) {
    uint32_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/// The canvas size the first chunk declares (RIFF....WEBP then VP8X / VP8 / VP8L), read the
/// way Pillow's _get_size does. Returns 0 when the header is too short or malformed. libwebp's
/// own parser is not used for this because it rejects sizes over 2^32 pixels as a bitstream
/// error, and a refusal should name the declared size.
static inline int unclip_webp_declared_size(const unsigned char *s, size_t size, uint32_t *w, uint32_t *h) {
    if (size < 30 || memcmp(s, "RIFF", 4) != 0 || memcmp(s + 8, "WEBP", 4) != 0) return 0;
    if (memcmp(s + 12, "VP8 ", 4) == 0) {
        if (s[23] != 0x9d || s[24] != 0x01 || s[25] != 0x2a) return 0;
        *w = unclip_webp_le(s + 26, 2) & 0x3fff;
        *h = unclip_webp_le(s + 28, 2) & 0x3fff;
        return 1;
    }
    if (memcmp(s + 12, "VP8X", 4) == 0) {
        *w = unclip_webp_le(s + 24, 3) + 1;
        *h = unclip_webp_le(s + 27, 3) + 1;
        return 1;
    }
    if (memcmp(s + 12, "VP8L", 4) == 0) {
        if (s[20] != 0x2f) return 0;
        uint32_t bits = unclip_webp_le(s + 21, 4);
        *w = (bits & 0x3fff) + 1;
        *h = ((bits >> 14) & 0x3fff) + 1;
        return 1;
    }
    return 0;
}

/// 1 when the RIFF header promises more bytes than `size` (the file was cut short).
static inline int unclip_webp_is_cut(const unsigned char *s, size_t size) {
    if (size < 12) return 1;
    uint64_t riff = (uint64_t)unclip_webp_le(s + 4, 4) + 8;
    return riff > size;
}

/// Decodes the first frame of a WebP held in memory to 8-bit RGB (alpha dropped). Canvases
/// over the limits are refused with UNCLIP_WEBP_TOO_LARGE before libwebp allocates anything.
/// On any status but OK there is nothing to free; on OK the caller frees d->rgb.
static inline int unclip_webp_decode(const unsigned char *data, size_t size, uint32_t max_width, uint32_t max_height,
                                     uint64_t max_pixels, unclip_webp_decoded *d) {
    memset(d, 0, sizeof *d);
    uint32_t w = 0, h = 0;
    if (!unclip_webp_declared_size(data, size, &w, &h)) {
        d->status = size < 30 ? UNCLIP_WEBP_TRUNCATED : UNCLIP_WEBP_CORRUPT;
        snprintf(d->message, sizeof d->message, "%s", d->status == UNCLIP_WEBP_TRUNCATED
                 ? "the data ends inside the header" : "no valid VP8, VP8L or VP8X header");
        return d->status;
    }
    d->width = w;
    d->height = h;
    if (w == 0 || h == 0) {
        d->status = UNCLIP_WEBP_CORRUPT;
        snprintf(d->message, sizeof d->message, "the header declares a %ux%u image", w, h);
        return d->status;
    }
    if (w > max_width || h > max_height || (uint64_t)w * h > max_pixels) {
        d->status = UNCLIP_WEBP_TOO_LARGE;
        snprintf(d->message, sizeof d->message, "too large");
        return d->status;
    }

    WebPBitstreamFeatures features;
    VP8StatusCode code = WebPGetFeatures(data, size, &features);
    if (code != VP8_STATUS_OK) {
        d->status = code == VP8_STATUS_NOT_ENOUGH_DATA || unclip_webp_is_cut(data, size) ? UNCLIP_WEBP_TRUNCATED
                                                                                       : UNCLIP_WEBP_CORRUPT;
        snprintf(d->message, sizeof d->message, "libwebp could not read the header (VP8 status %d)", (int)code);
        return d->status;
    }
    if ((uint32_t)features.width != w || (uint32_t)features.height != h) {
        d->status = UNCLIP_WEBP_CORRUPT;
        snprintf(d->message, sizeof d->message, "inconsistent sizes in the header (%ux%u and %dx%d)", w, h,
                 features.width, features.height);
        return d->status;
    }
    d->has_alpha = features.has_alpha;
    d->animated = features.has_animation;

    WebPAnimDecoderOptions options;
    if (!WebPAnimDecoderOptionsInit(&options)) {
        d->status = UNCLIP_WEBP_CORRUPT;
        snprintf(d->message, sizeof d->message, "libwebp version mismatch");
        return d->status;
    }
    options.color_mode = MODE_RGBA;  // Pillow's choice: straight (not premultiplied) alpha
    options.use_threads = 0;
    WebPData webp = {data, size};
    WebPAnimDecoder *decoder = WebPAnimDecoderNew(&webp, &options);
    if (!decoder) {
        d->status = unclip_webp_is_cut(data, size) ? UNCLIP_WEBP_TRUNCATED : UNCLIP_WEBP_CORRUPT;
        snprintf(d->message, sizeof d->message, "%s", d->status == UNCLIP_WEBP_TRUNCATED
                 ? "the data ends before the end of the image" : "libwebp could not parse the file");
        return d->status;
    }
    WebPAnimInfo info;
    uint8_t *canvas = NULL;
    int timestamp = 0;
    if (!WebPAnimDecoderGetInfo(decoder, &info) || info.canvas_width != w || info.canvas_height != h) {
        WebPAnimDecoderDelete(decoder);
        d->status = UNCLIP_WEBP_CORRUPT;
        snprintf(d->message, sizeof d->message, "inconsistent canvas size");
        return d->status;
    }
    d->frame_count = (int)info.frame_count;
    if (!WebPAnimDecoderGetNext(decoder, &canvas, &timestamp) || !canvas) {
        WebPAnimDecoderDelete(decoder);
        d->status = UNCLIP_WEBP_CORRUPT;
        snprintf(d->message, sizeof d->message, "libwebp could not decode the first frame");
        return d->status;
    }
    size_t pixels = (size_t)w * h;
    unsigned char *rgb = (unsigned char *)malloc(pixels * 3);
    if (!rgb) {
        WebPAnimDecoderDelete(decoder);
        d->status = UNCLIP_WEBP_NO_MEMORY;
        snprintf(d->message, sizeof d->message, "out of memory for a %ux%u image", w, h);
        return d->status;
    }
    for (size_t p = 0; p < pixels; p++) {
        rgb[3 * p] = canvas[4 * p];
        rgb[3 * p + 1] = canvas[4 * p + 1];
        rgb[3 * p + 2] = canvas[4 * p + 2];
    }
    WebPAnimDecoderDelete(decoder);  // owns `canvas`
    d->rgb = rgb;
    d->status = UNCLIP_WEBP_OK;
    return UNCLIP_WEBP_OK;
}

#endif
