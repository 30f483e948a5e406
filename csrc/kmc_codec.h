/* The index codec's hot loops: compression methods 4 (context), 5 (strips) and 6 (tables).
 *
 * Plain C99, no Python: the module glue (kmcmodule.c) and the sanitizer fuzz
 * harness both call these. Every function takes the validated header fields
 * (width, height, k) and the untrusted stream; all state lives in buffers
 * sized from those fields, and every read of the stream is bounds-checked.
 * The byte layouts are spec/kmc.md sections 5.5 to 5.7.
 */
#ifndef KMC_CODEC_H
#define KMC_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Results: 0 is success, the rest are reasons a stream is rejected. */
enum {
    KMC_OK = 0,
    KMC_TRUNCATED = -1,   /* the stream ends before the plane is complete */
    KMC_EXTRA = -2,       /* words left over after the plane is complete */
    KMC_LOW_STATE = -3,   /* a rANS state starts below 2**16 */
    KMC_BAD_END = -4,     /* a rANS state does not end at 2**16 */
    KMC_INDEX_K = -5,     /* an index at or above k */
    KMC_NOMEM = -6,       /* out of memory */
    KMC_BAD_STRIPS = -7,  /* method 5: an invalid strip table */
    KMC_BAD_ARGS = -8,    /* a caller error (never from stream data) */
    KMC_BAD_TABLES = -9,  /* method 6: an invalid table description */
    KMC_BAD_SYMBOL = -10  /* method 6: a symbol without a table, or a run that does not fit */
};

/* Method 4. `out` holds width * height bytes. With `partial`, a stream that
 * ends early gives the rows completed before its end and 0 after them. */
int kmc_context_decode(const uint8_t *stream, size_t len, uint32_t width, uint32_t height,
                       int k, int partial, uint8_t *out);

/* Method 4 encoder: a malloc'd stream in *out (free() it), its length in *out_len. */
int kmc_context_encode(const uint8_t *plane, uint32_t width, uint32_t height, int k,
                       uint8_t **out, size_t *out_len);

/* Methods 5 and 6: the strip table at the start of a stream. */
typedef struct {
    uint32_t rows_per_strip;
    uint32_t strips;
    size_t header_bytes;     /* the bytes before strip 0: 4 + 4 * strips (method 5) */
    const uint8_t *lengths;  /* strips big-endian u32 */
    const uint8_t *tables;   /* method 6: the image's tables, tables_bytes long */
    size_t tables_bytes;
} kmc_strip_table;

/* The largest width or height (spec section 3). */
#define KMC_MAX_SIDE 0x7FFFFFFFu

/* Smallest number of pixels in a strip other than the last (spec 5.6). */
#define KMC_MIN_STRIP_PIXELS 65536u

/* Parse and check the strip table: every length, their sum and the strip
 * size rule. With `partial`, a stream cut short is accepted (lengths beyond
 * the data are clipped by the decoder). */
int kmc_strips_table(const uint8_t *stream, size_t len, uint32_t width, uint32_t height,
                     int partial, kmc_strip_table *table);

/* Decode strips [first, last) of a checked table into `out` (the whole
 * width * height plane; each strip writes only its own rows). */
int kmc_strips_decode(const uint8_t *stream, size_t len, const kmc_strip_table *table,
                      uint32_t width, uint32_t height, int k, int partial, uint32_t first,
                      uint32_t last, uint8_t *out);

/* Encode one strip (rows [y0, y0 + rows) of the plane) to a malloc'd buffer. */
int kmc_strips_encode_strip(const uint8_t *plane, uint32_t width, uint32_t y0, uint32_t rows,
                            int k, uint8_t **out, size_t *out_len);

/* Method 6 (spec 5.7): the stream table, with the strip rules of method 5 and the image's
 * tables, which must be whole even with `partial`. */
int kmc_tables_table(const uint8_t *stream, size_t len, uint32_t width, uint32_t height,
                     int partial, kmc_strip_table *table);

/* Decode strips [first, last) of a method-6 stream with a checked table into `out`. */
int kmc_tables_decode(const uint8_t *stream, size_t len, const kmc_strip_table *table,
                      uint32_t width, uint32_t height, int k, int partial, uint32_t first,
                      uint32_t last, uint8_t *out);

/* Method 6 encoder, in three steps so that strips can run in parallel: count the symbols of
 * a run of strips (rows [y0, y0 + rows) in strips of strip_rows; KMC_TABLES_COUNTS uint64
 * entries), make the image's tables from the summed counts,
 * then code each strip with them. Outputs are malloc'd (free() them). */
#define KMC_TABLES_COUNTS (512u * 6u + 256u * 256u)
int kmc_tables_count(const uint8_t *plane, uint32_t width, uint32_t y0, uint32_t rows,
                     uint32_t strip_rows, int k, uint64_t *counts);
int kmc_tables_image(const uint64_t *counts, int k, uint8_t **out, size_t *out_len);
int kmc_tables_strip(const uint8_t *plane, uint32_t width, uint32_t y0, uint32_t rows, int k,
                     const uint8_t *image_tables, size_t image_len, uint8_t **out,
                     size_t *out_len);

/* Packed rows (spec 5.1) of `bit_depth`-bit indices, row_bytes * height bytes,
 * to the width * height plane in `out`; KMC_INDEX_K if an index is at or above k. */
int kmc_unpack_rows(const uint8_t *data, uint32_t width, uint32_t height, int bit_depth, int k,
                    uint8_t *out);

/* Floyd-Steinberg error diffusion of width * height pixels of `channels`
 * bytes onto `palette` (k entries), strength 0 to 256; indices into `out`. */
int kmc_dither(const uint8_t *pixels, uint32_t width, uint32_t height, int channels,
               const uint8_t *palette, int k, int strength, uint8_t *out);

#endif
