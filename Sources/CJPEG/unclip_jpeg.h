// In-memory JPEG decoding on libjpeg(-turbo), for UnCLIPImage's ImageFile.
//
// Why C: libjpeg's default error handler prints and calls exit(), and the only way to
// regain control is a longjmp out of the library, which Swift cannot catch. These helpers
// own the setjmp frame and turn every libjpeg error into a status + message.
//
// What it reproduces: Pillow's JPEG decoder (libjpeg-turbo, default JDCT_ISLOW IDCT, fancy
// upsampling on, no scaling), then Image.convert("RGB"):
//   1 component  -> "L", repeated into R, G, B
//   3 components -> libjpeg's YCbCr (or RGB) -> RGB conversion
//   4 components -> libjpeg's CMYK output (YCCK converted by libjpeg), read as Pillow's
//                   "CMYK;I" (Adobe-inverted, which Pillow always assumes), then Pillow's
//                   cmyk2rgb: r = nk - MULDIV255(c, nk), nk = 255 - k (checked exhaustively
//                   against Pillow 13 for all (c, k)).
#ifndef UNCLIP_JPEG_H
#define UNCLIP_JPEG_H

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

enum {
    UNCLIP_JPEG_OK = 0,
    UNCLIP_JPEG_CORRUPT = 1,      // message says what libjpeg objected to
    UNCLIP_JPEG_TRUNCATED = 2,    // the data ends before the image does
    UNCLIP_JPEG_TOO_LARGE = 3,    // width/height are set; nothing was allocated for pixels
    UNCLIP_JPEG_UNSUPPORTED = 4,  // valid JPEG that Pillow refuses too (12-bit, 2 components, ...)
    UNCLIP_JPEG_NO_MEMORY = 5,
};

// A progressive file may have any number of scans, each a full pass over the coefficients;
// libjpeg-turbo's own advice for untrusted input is to cap them (djpeg -maxscan).
#define UNCLIP_JPEG_MAX_SCANS 1000

typedef struct {
    struct jpeg_error_mgr pub;  // first: libjpeg hands back a pointer to it
    jmp_buf jump;
    int hit_eof;                // libjpeg warned that the data ended (it then pads with an EOI)
    char message[JMSG_LENGTH_MAX];
} unclip_jpeg_error_mgr;

typedef struct {
    uint32_t width, height;  // from the header; set even when the status is TOO_LARGE
    int components;          // in the file: 1, 3 or 4
    int progressive;
    unsigned char *rgb;      // width*height*3 bytes (malloc'd) when the status is OK
    int status;
    char message[JMSG_LENGTH_MAX + 64];
} unclip_jpeg_decoded;

static void unclip_jpeg_error_exit(j_common_ptr cinfo) {
    unclip_jpeg_error_mgr *err = (unclip_jpeg_error_mgr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

// Warnings (msg_level -1) do not stop libjpeg; Pillow ignores them too, except running out of
// data, which Pillow reports as "image file is truncated". Trace messages are dropped.
static void unclip_jpeg_emit_message(j_common_ptr cinfo, int msg_level) {
    unclip_jpeg_error_mgr *err = (unclip_jpeg_error_mgr *)cinfo->err;
    if (msg_level < 0) {
        cinfo->err->num_warnings++;
        if (cinfo->err->msg_code == JWRN_JPEG_EOF) err->hit_eof = 1;
    }
}

static void unclip_jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; }  // never print

static void unclip_jpeg_progress(j_common_ptr cinfo) {
    if (cinfo->is_decompressor && ((j_decompress_ptr)cinfo)->input_scan_number > UNCLIP_JPEG_MAX_SCANS) {
        unclip_jpeg_error_mgr *err = (unclip_jpeg_error_mgr *)cinfo->err;
        snprintf(err->message, sizeof err->message, "more than %d progressive scans", UNCLIP_JPEG_MAX_SCANS);
        longjmp(err->jump, 1);
    }
}

/// The size the first frame header (SOFn) declares, found by walking the marker segments that
/// precede it. Returns 0 when no complete SOF comes before the first scan or the end of the data.
/// Why not just libjpeg: jpeg_read_header only returns once it reaches the first scan, and a
/// hostile file can stop right after a SOF declaring 65000x65000; libjpeg then pads the missing
/// data with fake end markers, so its view of a cut-off SOF is not the file's either.
static inline int unclip_jpeg_declared_size(const unsigned char *b, size_t size, uint32_t *w, uint32_t *h) {
    size_t i = 2;  // after SOI
    while (i + 1 < size) {
        if (b[i] != 0xFF) { i++; continue; }  // libjpeg skips stray bytes before a marker too
        unsigned char m = b[i + 1];
        if (m == 0xFF) { i++; continue; }     // fill byte
        if (m == 0xDA || m == 0xD9) return 0; // SOS / EOI before any SOF
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) { i += 2; continue; }  // no length field
        if (i + 4 > size) return 0;
        size_t length = ((size_t)b[i + 2] << 8) | b[i + 3];
        if (length < 2 || i + 2 + length > size) return 0;
        int is_sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;  // not DHT, JPG, DAC
        if (is_sof) {
            if (length < 2 + 6) return 0;
            *h = ((uint32_t)b[i + 5] << 8) | b[i + 6];
            *w = ((uint32_t)b[i + 7] << 8) | b[i + 8];
            return 1;
        }
        i += 2 + length;
    }
    return 0;
}

/// Decodes a whole JPEG held in memory to 8-bit RGB. The declared size is read first (pre-scan,
/// then again from libjpeg's parsed header) and images wider than max_width, taller than
/// max_height or with more than max_pixels pixels are refused with UNCLIP_JPEG_TOO_LARGE before
/// any pixel memory is allocated. On any status but OK there is
/// nothing to free; on OK the caller frees d->rgb.
static inline int unclip_jpeg_decode(const unsigned char *data, size_t size, uint32_t max_width, uint32_t max_height,
                                     uint64_t max_pixels, unclip_jpeg_decoded *d) {
    memset(d, 0, sizeof *d);
    uint32_t declared_w = 0, declared_h = 0;
    if (unclip_jpeg_declared_size(data, size, &declared_w, &declared_h) &&
        (declared_w > max_width || declared_h > max_height || (uint64_t)declared_w * declared_h > max_pixels)) {
        d->width = declared_w;
        d->height = declared_h;
        d->status = UNCLIP_JPEG_TOO_LARGE;
        snprintf(d->message, sizeof d->message, "too large");
        return d->status;
    }
    struct jpeg_decompress_struct cinfo;
    unclip_jpeg_error_mgr jerr;
    struct jpeg_progress_mgr progress;
    memset(&cinfo, 0, sizeof cinfo);
    memset(&jerr, 0, sizeof jerr);
    memset(&progress, 0, sizeof progress);
    // Written after setjmp and read after a longjmp: must be volatile.
    unsigned char *volatile rgb = NULL;
    unsigned char *volatile row = NULL;
    volatile int status = UNCLIP_JPEG_CORRUPT;

    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = unclip_jpeg_error_exit;
    jerr.pub.emit_message = unclip_jpeg_emit_message;
    jerr.pub.output_message = unclip_jpeg_output_message;
    if (setjmp(jerr.jump)) {
        free(rgb);
        free(row);
        d->rgb = NULL;
        d->status = status;
        if (d->status == UNCLIP_JPEG_CORRUPT && jerr.hit_eof) d->status = UNCLIP_JPEG_TRUNCATED;
        // libjpeg's own ceiling (65500 a side) is checked while it parses the frame header; the
        // pre-scan below normally refuses such sizes first, this covers limits set above 65500.
        if (jerr.pub.msg_code == JERR_IMAGE_TOO_BIG && !jerr.hit_eof) {
            d->status = UNCLIP_JPEG_TOO_LARGE;
            d->width = cinfo.image_width;
            d->height = cinfo.image_height;
        }
        if (d->status == UNCLIP_JPEG_CORRUPT && (jerr.pub.msg_code == JERR_BAD_PRECISION ||
                                                 jerr.pub.msg_code == JERR_SOF_UNSUPPORTED ||
                                                 jerr.pub.msg_code == JERR_NOT_COMPILED))
            d->status = UNCLIP_JPEG_UNSUPPORTED;
        if (d->message[0] == 0) snprintf(d->message, sizeof d->message, "%s", jerr.message);
        jpeg_destroy_decompress(&cinfo);
        return d->status;
    }
    jpeg_create_decompress(&cinfo);
    progress.progress_monitor = unclip_jpeg_progress;
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (jerr.hit_eof) {
        status = UNCLIP_JPEG_TRUNCATED;
        snprintf(d->message, sizeof d->message, "the data ends inside the header");
        longjmp(jerr.jump, 1);
    }

    d->width = cinfo.image_width;
    d->height = cinfo.image_height;
    d->components = cinfo.num_components;
    d->progressive = cinfo.progressive_mode ? 1 : 0;
    if (cinfo.image_width > max_width || cinfo.image_height > max_height ||
        (uint64_t)cinfo.image_width * cinfo.image_height > max_pixels) {
        status = UNCLIP_JPEG_TOO_LARGE;
        snprintf(d->message, sizeof d->message, "too large");
        longjmp(jerr.jump, 1);
    }
    switch (cinfo.num_components) {
    case 1: cinfo.out_color_space = JCS_GRAYSCALE; break;
    case 3: cinfo.out_color_space = JCS_RGB; break;
    case 4: cinfo.out_color_space = JCS_CMYK; break;
    default:
        status = UNCLIP_JPEG_UNSUPPORTED;
        snprintf(d->message, sizeof d->message, "%d-component JPEG", cinfo.num_components);
        longjmp(jerr.jump, 1);
    }
    // Pillow's settings (draft mode off): accurate integer IDCT and fancy (triangle) upsampling.
    // Both are libjpeg's defaults; set explicitly because the output depends on them.
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    cinfo.scale_num = 1;
    cinfo.scale_denom = 1;
    jpeg_start_decompress(&cinfo);

    const size_t width = cinfo.output_width, height = cinfo.output_height;
    const int comps = cinfo.output_components;
    if (width != d->width || height != d->height || comps != cinfo.num_components) {
        snprintf(d->message, sizeof d->message, "unexpected output layout");
        longjmp(jerr.jump, 1);
    }
    status = UNCLIP_JPEG_NO_MEMORY;
    rgb = (unsigned char *)malloc(width * height * 3);
    row = (unsigned char *)malloc(width * (size_t)comps);
    if (!rgb || !row) {
        snprintf(d->message, sizeof d->message, "out of memory for a %zux%zu image", width, height);
        longjmp(jerr.jump, 1);
    }
    status = UNCLIP_JPEG_CORRUPT;
    while (cinfo.output_scanline < cinfo.output_height) {
        size_t y = cinfo.output_scanline;
        JSAMPROW rows[1] = {row};
        if (jpeg_read_scanlines(&cinfo, rows, 1) != 1) {
            snprintf(d->message, sizeof d->message, "decoder stopped at row %zu", y);
            longjmp(jerr.jump, 1);
        }
        unsigned char *out = rgb + y * width * 3;
        if (comps == 3) {
            memcpy(out, row, width * 3);
        } else if (comps == 1) {
            for (size_t x = 0; x < width; x++) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = row[x];
        } else {
            for (size_t x = 0; x < width; x++) {
                // "CMYK;I": the file holds 255 - ink.
                int k = 255 - row[4 * x + 3], nk = 255 - k;
                for (int ch = 0; ch < 3; ch++) {
                    int c = 255 - row[4 * x + ch];
                    int t = c * nk + 128;
                    out[3 * x + ch] = (unsigned char)(nk - (((t >> 8) + t) >> 8));
                }
            }
        }
    }
    // Reads through to EOI, so a file cut after the last scanline is still reported as truncated.
    jpeg_finish_decompress(&cinfo);
    if (jerr.hit_eof) {
        status = UNCLIP_JPEG_TRUNCATED;
        snprintf(d->message, sizeof d->message, "the data ends before the end of the image");
        longjmp(jerr.jump, 1);
    }
    jpeg_destroy_decompress(&cinfo);
    free(row);
    d->rgb = rgb;
    d->status = UNCLIP_JPEG_OK;
    return UNCLIP_JPEG_OK;
}

#endif
