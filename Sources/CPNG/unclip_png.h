// Whole-file PNG read/write on libpng's low-level API, for UnCLIPImage.
//
// Why C: libpng reports errors by longjmp, which Swift cannot catch. These helpers
// own the setjmp frame and turn every libpng error into a return code + message.
// Why not libpng's simplified API (png_image_*): it treats 16-bit data as linear
// light and applies gAMA, so 16-bit files and files with gAMA would not decode to
// the bytes PIL gives. Here no gamma transform is ever requested, like PIL.
#ifndef UNCLIP_PNG_H
#define UNCLIP_PNG_H

#include <png.h>
#include <zlib.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

typedef struct {
    char message[512];
    FILE *reading;  // the file being read, to recognise truncation; NULL when writing
    int truncated;  // the error happened at the end of the data
} unclip_png_error;

/// One text chunk. key: Latin-1, NUL-terminated; text: `text_length` bytes,
/// UTF-8 when `is_utf8` (iTXt), else Latin-1 (tEXt/zTXt).
typedef struct {
    char *key;
    char *text;
    size_t text_length;
    int is_utf8;
} unclip_png_text;

enum {
    UNCLIP_PNG_OK = 0,
    UNCLIP_PNG_CORRUPT = 1,
    UNCLIP_PNG_TRUNCATED = 2,
    UNCLIP_PNG_TOO_LARGE = 3,  // width/height are set; nothing was allocated for pixels
    UNCLIP_PNG_NO_MEMORY = 5,
};

/// A decoded file: 8-bit RGBA, row-major, width*height*4 bytes (malloc'd).
typedef struct {
    uint32_t width, height;
    unsigned char *rgba;
    int bit_depth, color_type, interlaced;
    unclip_png_text *texts;
    int text_count;
    int status;  // UNCLIP_PNG_*; set by every reader
    unclip_png_error error;
} unclip_png_decoded;

static void unclip_png_on_error(png_structp png, png_const_charp msg) {
    unclip_png_error *err = (unclip_png_error *)png_get_error_ptr(png);
    if (err && err->reading && feof(err->reading)) {
        snprintf(err->message, sizeof err->message, "file is truncated (libpng: %s)", msg);
        err->truncated = 1;
    } else if (err) {
        snprintf(err->message, sizeof err->message, "%s", msg);
    }
    png_longjmp(png, 1);
}

// Warnings (e.g. "iCCP: known incorrect sRGB profile") do not affect the pixels; stay quiet.
static void unclip_png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static inline void unclip_png_free_texts(unclip_png_text *texts, int count) {
    if (!texts) return;
    for (int i = 0; i < count; i++) {
        free(texts[i].key);
        free(texts[i].text);
    }
    free(texts);
}

/// Frees what unclip_png_read_file allocated (safe on a failed/zeroed result).
static inline void unclip_png_decoded_free(unclip_png_decoded *d) {
    free(d->rgba);
    d->rgba = NULL;
    unclip_png_free_texts(d->texts, d->text_count);
    d->texts = NULL;
    d->text_count = 0;
}

// Appends the text chunks stored in `info` to d->texts. Returns 0 on allocation failure.
static int unclip_png_collect_texts(png_structp png, png_infop info, unclip_png_decoded *d) {
    png_textp text = NULL;
    int count = 0;
    png_get_text(png, info, &text, &count);
    if (count <= 0) return 1;
    unclip_png_text *grown = (unclip_png_text *)realloc(d->texts, sizeof(unclip_png_text) * (size_t)(d->text_count + count));
    if (!grown) return 0;
    d->texts = grown;
    for (int i = 0; i < count; i++) {
        int utf8 = text[i].compression == PNG_ITXT_COMPRESSION_NONE || text[i].compression == PNG_ITXT_COMPRESSION_zTXt;
        size_t len = utf8 ? text[i].itxt_length : text[i].text_length;
        unclip_png_text *t = &d->texts[d->text_count];
        t->key = strdup(text[i].key ? text[i].key : "");
        t->text = (char *)malloc(len + 1);
        if (!t->key || !t->text) {
            free(t->key);
            free(t->text);
            return 0;
        }
        if (len) memcpy(t->text, text[i].text, len);
        t->text[len] = 0;
        t->text_length = len;
        t->is_utf8 = utf8;
        d->text_count++;
    }
    return 1;
}

/// Decodes the PNG stream `fp` (positioned at the start) to 8-bit RGBA the way PIL unpacks PNG
/// samples: palette -> RGB, 1/2/4-bit gray scaled to 8 bits, 16-bit samples keep their high byte,
/// tRNS -> alpha (keys compared at the file's bit depth), opaque alpha added when absent, no gamma.
/// With collect_text == 0, text and eXIf chunks are skipped unread by libpng (no memory is spent
/// on them). Images over max_width x max_height are refused by libpng's user limits while it reads
/// IHDR. Returns 1 on success; on failure 0 with d->status and d->error.message set and nothing
/// to free. Does not close fp.
static inline int unclip_png_read_stream(FILE *fp, int collect_text, uint32_t max_width, uint32_t max_height,
                                         unclip_png_decoded *d) {
    d->status = UNCLIP_PNG_CORRUPT;
    unsigned char sig[8];
    if (fread(sig, 1, 8, fp) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
        snprintf(d->error.message, sizeof d->error.message, "not a PNG file (no PNG signature)");
        return 0;
    }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &d->error, unclip_png_on_error, unclip_png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_infop end_info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || !end_info) {
        snprintf(d->error.message, sizeof d->error.message, "out of memory creating the libpng reader");
        png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, end_info ? &end_info : NULL);
        d->status = UNCLIP_PNG_NO_MEMORY;
        return 0;
    }
    // Written after setjmp and read after a longjmp: must be volatile.
    unsigned char *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        unclip_png_free_texts(d->texts, d->text_count);
        d->texts = NULL;
        d->text_count = 0;
        png_destroy_read_struct(&png, &info, &end_info);
        d->error.reading = NULL;
        if (d->error.truncated) d->status = UNCLIP_PNG_TRUNCATED;
        return 0;
    }
    d->error.reading = fp;
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    png_set_user_limits(png, max_width, max_height);
    if (!collect_text) {
        static const png_byte skipped[] = {'t', 'E', 'X', 't', 0, 'z', 'T', 'X', 't', 0, 'i', 'T', 'X', 't', 0,
                                           'e', 'X', 'I', 'f', 0};
        png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, skipped, 4);
    }
    png_read_info(png, info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    d->bit_depth = bit_depth;
    d->color_type = color_type;
    d->interlaced = interlace != PNG_INTERLACE_NONE;

    png_set_expand(png);      // palette -> RGB, gray 1/2/4 -> 8 bits, tRNS -> alpha
    png_set_strip_16(png);    // high byte, as PIL's "RGB;16B"-style unpackers
    png_set_gray_to_rgb(png);
    png_set_filler(png, 0xff, PNG_FILLER_AFTER);  // only affects images without alpha
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    size_t rowbytes = png_get_rowbytes(png, info);
    if (rowbytes != (size_t)width * 4) png_error(png, "unexpected row size after transforms");
    if (height != 0 && (size_t)width * 4 > SIZE_MAX / height) png_error(png, "image too large");
    pixels = (unsigned char *)malloc(rowbytes * height);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * height);
    if (!pixels || !rows) {
        d->status = UNCLIP_PNG_NO_MEMORY;
        png_error(png, "out of memory for the decoded image");
    }
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, end_info);  // checks the trailing chunks (truncation, CRCs) and reads late text

    if (collect_text && (!unclip_png_collect_texts(png, info, d) || !unclip_png_collect_texts(png, end_info, d))) {
        d->status = UNCLIP_PNG_NO_MEMORY;
        png_error(png, "out of memory for text chunks");
    }

    free(rows);
    d->rgba = pixels;
    d->width = width;
    d->height = height;
    png_destroy_read_struct(&png, &info, &end_info);
    d->error.reading = NULL;
    d->status = UNCLIP_PNG_OK;
    return 1;
}

/// Decodes `path` (see unclip_png_read_stream), with its text chunks and no size limit beyond
/// libpng's. Returns 1 on success; on failure 0 with d->error.message set and nothing to free.
static inline int unclip_png_read_file(const char *path, unclip_png_decoded *d) {
    memset(d, 0, sizeof *d);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(d->error.message, sizeof d->error.message, "cannot open file (%s)", strerror(errno));
        d->status = UNCLIP_PNG_CORRUPT;
        return 0;
    }
    int ok = unclip_png_read_stream(fp, 1, PNG_USER_WIDTH_MAX, PNG_USER_HEIGHT_MAX, d);
    fclose(fp);
    return ok;
}

static inline uint32_t unclip_png_be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/// Decodes a whole PNG held in memory, without its text chunks. The size in IHDR (which the
/// format requires to be the first chunk) is checked against the limits before libpng is even
/// created: on UNCLIP_PNG_TOO_LARGE, d->width/height hold the declared size and nothing was
/// allocated. Returns 1 on success; on failure 0 with d->status/d->error.message set.
static inline int unclip_png_read_memory(const unsigned char *data, size_t size, uint32_t max_width,
                                         uint32_t max_height, uint64_t max_pixels, unclip_png_decoded *d) {
    memset(d, 0, sizeof *d);
    d->status = UNCLIP_PNG_CORRUPT;
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        snprintf(d->error.message, sizeof d->error.message, "not a PNG file (no PNG signature)");
        return 0;
    }
    if (size < 8 + 8 + 13 + 4) {
        d->status = UNCLIP_PNG_TRUNCATED;
        snprintf(d->error.message, sizeof d->error.message, "file is truncated (it ends inside the IHDR chunk)");
        return 0;
    }
    if (memcmp(data + 12, "IHDR", 4) != 0) {
        snprintf(d->error.message, sizeof d->error.message, "the first chunk is not IHDR");
        return 0;
    }
    uint32_t width = unclip_png_be32(data + 16), height = unclip_png_be32(data + 20);
    if (width > max_width || height > max_height || (uint64_t)width * height > max_pixels) {
        d->width = width;
        d->height = height;
        d->status = UNCLIP_PNG_TOO_LARGE;
        snprintf(d->error.message, sizeof d->error.message, "too large");
        return 0;
    }
    // fmemopen gives libpng's stdio reader a stream over the bytes, so file and memory input share
    // one decoder (and its end-of-data detection for truncated files).
    FILE *fp = fmemopen((void *)data, size, "rb");
    if (!fp) {
        snprintf(d->error.message, sizeof d->error.message, "cannot open a memory stream (%s)", strerror(errno));
        d->status = UNCLIP_PNG_NO_MEMORY;
        return 0;
    }
    int ok = unclip_png_read_stream(fp, 0, width > 0 ? width : 1, height > 0 ? height : 1, d);
    fclose(fp);
    return ok;
}

/// Inflates zlib data `src` into a new buffer of at most `cap` bytes (PNG zTXt / iTXt text).
/// Returns 1 with *out (malloc'd, caller frees) and *out_length set; 0 when the data is not
/// valid zlib or inflates to more than `cap` bytes (nothing to free).
static inline int unclip_png_inflate(const unsigned char *src, size_t length, size_t cap, unsigned char **out,
                                     size_t *out_length) {
    *out = NULL;
    *out_length = 0;
    unsigned char *buffer = (unsigned char *)malloc(cap ? cap : 1);
    if (!buffer) return 0;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK) {
        free(buffer);
        return 0;
    }
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)(length > UINT32_MAX ? UINT32_MAX : length);
    z.next_out = buffer;
    z.avail_out = (uInt)cap;
    int result = inflate(&z, Z_FINISH);
    size_t produced = cap - z.avail_out;
    inflateEnd(&z);
    if (result != Z_STREAM_END) {
        free(buffer);
        return 0;
    }
    *out = buffer;
    *out_length = produced;
    return 1;
}

/// Writes 8-bit RGB `rgb` (width*height*3 bytes) to `path` with the given text chunks
/// (tEXt, or uncompressed iTXt when is_utf8), before the image data. Returns 1 on success;
/// on failure 0 with err->message set (the file may be left partially written).
static inline int unclip_png_write_file(const char *path, const unsigned char *rgb, uint32_t width, uint32_t height,
                                        const unclip_png_text *texts, int text_count, unclip_png_error *err) {
    memset(err, 0, sizeof *err);
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        snprintf(err->message, sizeof err->message, "cannot create file (%s)", strerror(errno));
        return 0;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, err, unclip_png_on_error, unclip_png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        snprintf(err->message, sizeof err->message, "out of memory creating the libpng writer");
        png_destroy_write_struct(png ? &png : NULL, NULL);
        fclose(fp);
        return 0;
    }
    png_textp volatile chunks = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(chunks);
        png_destroy_write_struct(&png, &info);
        fclose(fp);
        return 0;
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (text_count > 0) {
        chunks = (png_textp)calloc((size_t)text_count, sizeof(png_text));
        if (!chunks) png_error(png, "out of memory for text chunks");
        for (int i = 0; i < text_count; i++) {
            chunks[i].key = texts[i].key;
            chunks[i].text = texts[i].text;
            if (texts[i].is_utf8) {
                chunks[i].compression = PNG_ITXT_COMPRESSION_NONE;
                chunks[i].itxt_length = texts[i].text_length;
            } else {
                chunks[i].compression = PNG_TEXT_COMPRESSION_NONE;
                chunks[i].text_length = texts[i].text_length;
            }
        }
        png_set_text(png, info, chunks, text_count);
    }
    png_write_info(png, info);
    for (uint32_t y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * width * 3));
    png_write_end(png, info);
    free(chunks);
    png_destroy_write_struct(&png, &info);
    // Flush to disk before the caller renames the file into place.
    if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
        snprintf(err->message, sizeof err->message, "cannot write file (%s)", strerror(errno));
        fclose(fp);
        return 0;
    }
    if (fclose(fp) != 0) {
        snprintf(err->message, sizeof err->message, "cannot close file (%s)", strerror(errno));
        return 0;
    }
    return 1;
}

#endif
