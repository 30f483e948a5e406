/* Compression method 6, `tables` (spec/kmc.md section 5.7).
 *
 * Method 5's strips and neighbours, but one symbol per pixel (is it L, U,
 * UR, UL, a literal, or a run of 8) coded by rANS with static frequency
 * tables that the writer counted beforehand: the image's tables come first,
 * a strip may replace some of them, and literals have tables by groups of L.
 * Decoding a pixel is then one look-up in a slot table, one multiply and one
 * add, where method 5 asks up to four adaptive questions.
 *
 * Decoder: every length and table is validated before use; the slot tables
 * have a fixed size and unused contexts hold an entry that rejects the
 * stream, so the pixel loop needs no check besides the words' end.
 * Encoder: counts (per run of strips, summed by the caller), the image's tables from
 * the counts, then each strip on its own, so the caller can run strips in
 * parallel threads. The encoder's estimates are integer fixed point, so the
 * same plane gives the same bytes on every machine.
 */
#include <stdlib.h>
#include <string.h>

#include "kmc_codec.h"

static inline uint32_t be32(const uint8_t *s) {
    return (uint32_t)s[0] << 24 | (uint32_t)s[1] << 16 | (uint32_t)s[2] << 8 | s[3];
}

#if !defined(KMC_NO_SIMD) && (defined(__SSE2__) || defined(_M_X64) || defined(_M_AMD64))
#include <emmintrin.h>
#define KMC_SSE2 1
#endif

#define CONTEXTS 512u
#define SYMBOLS 6u
#define SYM_LITERAL 4u
#define SYM_RUN 5u
#define PIX_BITS 7u
#define PIX_ONE (1u << PIX_BITS)
#define LIT_MIN 5u
#define LIT_MAX 10u
#define RUN 8u
#define X_LOW (1ull << 31)
#define X_HIGH (1ull << 63)
#define GAMMA_MAX_ZEROS 10
/* Rows above are kept padded: column -1 at [0], the row at [1..width], zeros after,
 * enough for the flat test's 10 columns and a 16-byte vector past the last column. */
#define PAD 32u

/* ------------------------------------------------------------------ bit strings */

typedef struct {
    const uint8_t *p;
    size_t n;      /* bytes */
    uint64_t pos;  /* bits read; may pass 8 * n, which the end check rejects */
} bits_in;

static inline uint32_t get_bit(bits_in *r) {
    uint32_t b = r->pos < 8 * (uint64_t)r->n ? r->p[r->pos >> 3] >> (7 - (r->pos & 7)) & 1 : 0;
    r->pos++;
    return b;
}

/* A gamma code; 0 (never a valid value) if it has too many leading zeros. */
static uint32_t get_gamma(bits_in *r) {
    int zeros = 0;
    while (!get_bit(r))
        if (++zeros > GAMMA_MAX_ZEROS) return 0;
    uint32_t v = 1;
    for (int i = 0; i < zeros; i++) v = v << 1 | get_bit(r);
    return v;
}

/* The bit string ends in its last byte, padded with zero bits. */
static int bits_end_ok(const bits_in *r) {
    if (r->pos > 8 * (uint64_t)r->n || (r->pos + 7) / 8 != r->n) return 0;
    return r->pos % 8 == 0 || (r->p[r->n - 1] & (0xFFu >> (r->pos % 8))) == 0;
}

typedef struct {
    uint8_t *buf;
    size_t n, cap;
    uint32_t acc;
    int nb;
    int failed;
} bits_out;

static void put_bits(bits_out *w, uint32_t v, int n) {
    for (int i = n - 1; i >= 0; i--) {
        w->acc = w->acc << 1 | ((v >> i) & 1);
        if (++w->nb == 8) {
            if (w->n == w->cap) {
                size_t cap = w->cap * 2 + 64;
                uint8_t *b = realloc(w->buf, cap);
                if (!b) {
                    w->failed = 1;
                    w->n = 0;
                } else {
                    w->buf = b;
                    w->cap = cap;
                }
            }
            if (!w->failed) w->buf[w->n++] = (uint8_t)w->acc;
            w->acc = 0;
            w->nb = 0;
        }
    }
}

static int bit_length(uint32_t v) {
    int n = 0;
    while (v) {
        n++;
        v >>= 1;
    }
    return n;
}

static void put_gamma(bits_out *w, uint32_t v) {
    int n = bit_length(v) - 1;
    put_bits(w, 0, n);
    put_bits(w, v, n + 1);
}

static uint32_t gamma_bits(uint32_t v) { return 2 * (uint32_t)bit_length(v) - 1; }

static void flush_bits(bits_out *w) {
    if (w->nb) put_bits(w, 0, 8 - w->nb);
}

/* ------------------------------------------------------------------ the model */

/* The order of a literal's d in a table description: 1, k-1, 2, k-2, ... */
static uint32_t literal_order(uint32_t k, uint32_t *order) {
    uint32_t n = 0;
    for (uint32_t m = 1; n + 1 < k; m++) {
        order[n++] = m;
        if (k - m != m && n + 1 < k) order[n++] = k - m;
    }
    return n;
}

static int read_pixel_table(bits_in *r, uint32_t *f) {
    uint32_t sum = 0;
    for (uint32_t s = 0; s + 1 < SYMBOLS; s++) {
        uint32_t v = get_gamma(r);
        if (!v || v - 1 > PIX_ONE - sum) return 0;
        f[s] = v - 1;
        sum += f[s];
    }
    f[SYMBOLS - 1] = PIX_ONE - sum;
    return 1;
}

static int read_literal_table(bits_in *r, const uint32_t *order, uint32_t n, uint32_t p,
                              uint32_t *f, uint32_t k) {
    uint32_t one = 1u << p, sum = 0, i = 0;
    memset(f, 0, k * sizeof *f);
    while (sum < one) {
        uint32_t z = get_gamma(r);
        if (!z || z - 1 >= n - i || i >= n) return 0;
        i += z - 1;
        uint32_t v = get_gamma(r);
        if (!v || v > one - sum) return 0;
        f[order[i++]] = v;
        sum += v;
    }
    return 1;
}

/* The row-above bits of the context at every column: U==UL (4), U==UR (8), U==UU (64)
 * and F (128), from padded rows `up` and `up2`. */
static void above_bits(const uint8_t *up, const uint8_t *up2, uint32_t width, uint8_t *A) {
#ifdef KMC_SSE2
    const __m128i b2 = _mm_set1_epi8(4), b3 = _mm_set1_epi8(8), b6 = _mm_set1_epi8(64),
                  b7 = _mm_set1_epi8((char)128);
    for (size_t c = 0; c < width; c += 16) {
        __m128i U = _mm_loadu_si128((const __m128i *)(up + c + 1));
        __m128i eUL = _mm_cmpeq_epi8(U, _mm_loadu_si128((const __m128i *)(up + c)));
        __m128i eUR = _mm_cmpeq_epi8(U, _mm_loadu_si128((const __m128i *)(up + c + 2)));
        __m128i flat = _mm_and_si128(eUL, eUR);
        for (int j = 3; j <= (int)RUN + 1; j++)
            flat = _mm_and_si128(flat, _mm_cmpeq_epi8(U, _mm_loadu_si128((const __m128i *)(up + c + j))));
        __m128i eUU = _mm_cmpeq_epi8(U, _mm_loadu_si128((const __m128i *)(up2 + c + 1)));
        __m128i a = _mm_or_si128(_mm_or_si128(_mm_and_si128(eUL, b2), _mm_and_si128(eUR, b3)),
                                 _mm_or_si128(_mm_and_si128(eUU, b6), _mm_and_si128(flat, b7)));
        _mm_storeu_si128((__m128i *)(A + c), a);
    }
#else
    /* `same`: how many equal values end at up[c + 9]; F needs all 10 of up[c .. c + 9]. */
    uint32_t same = 1;
    for (uint32_t q = 1; q < RUN + 1; q++) same = up[q] == up[q - 1] ? same + 1 : 1;
    for (uint32_t c = 0; c < width; c++) {
        same = up[c + RUN + 1] == up[c + RUN] ? same + 1 : 1;
        uint32_t U = up[c + 1];
        A[c] = (uint8_t)((U == up[c]) << 2 | (U == up[c + 2]) << 3 | (U == up2[c + 1]) << 6 |
                         (same >= RUN + 2) << 7);
    }
#endif
}

/* The left-hand bits of the context: L==U (1), L==UL (2), L==UR (16), L==LL (32). */
static inline uint32_t left_bits(uint32_t L, uint32_t LL, uint32_t U, uint32_t UL, uint32_t UR) {
    return (L == U) | (L == UL) << 1 | (L == UR) << 4 | (L == LL) << 5;
}

/* ------------------------------------------------------------------ stream table */

int kmc_tables_table(const uint8_t *stream, size_t len, uint32_t width, uint32_t height,
                     int partial, kmc_strip_table *table) {
    if (width == 0 || height == 0 || width > KMC_MAX_SIDE || height > KMC_MAX_SIDE)
        return KMC_BAD_ARGS;
    if (len < 8) return KMC_TRUNCATED;
    uint32_t rows = be32(stream), tables = be32(stream + 4);
    if (rows == 0 || rows > height || tables == 0) return KMC_BAD_STRIPS;
    uint32_t strips = (uint32_t)(((uint64_t)height + rows - 1) / rows);
    if (strips > 1 && (uint64_t)rows * width < KMC_MIN_STRIP_PIXELS) return KMC_BAD_STRIPS;
    if ((uint64_t)strips > (SIZE_MAX - 8) / 4) return KMC_TRUNCATED; /* past any buffer */
    size_t header = 8 + 4 * (size_t)strips;
    /* The image's tables must be whole, even in a truncated file. */
    if (len < header || len - header < tables) return KMC_TRUNCATED;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < strips; i++) {
        uint32_t n = be32(stream + 8 + 4 * (size_t)i);
        if (n < 12) return KMC_BAD_STRIPS;
        sum += n;
    }
    size_t rest = len - header - tables;
    if (sum > rest && !partial) return KMC_TRUNCATED;
    if (sum < rest) return KMC_EXTRA;
    table->rows_per_strip = rows;
    table->strips = strips;
    table->lengths = stream + 8;
    table->tables = stream + header;
    table->tables_bytes = tables;
    table->header_bytes = header + tables;
    return KMC_OK;
}

/* ------------------------------------------------------------------ decoder */

/* A slot entry: the symbol's byte offset in the neighbour word (0 L, 8 UL, 16 U, 24 UR; 32 a
 * literal, 40 a run, 48 invalid) | (slot - start) << 6 | frequency << 13. */
static const uint32_t SHIFT[SYMBOLS] = {0, 16, 24, 8, 32, 40};
#define SHIFT_INVALID 48u
#define INVALID_ENTRY SHIFT_INVALID

typedef struct {
    uint32_t slots[CONTEXTS * PIX_ONE];
    uint8_t used[CONTEXTS];
    uint16_t image_f[CONTEXTS][SYMBOLS];
    uint16_t own[CONTEXTS];
    uint32_t n_own;
    uint8_t group_of[256];
    uint8_t group_used[256], group_bits[256];
    uint32_t group_at[256];
    uint16_t lit_f[256][256], lit_start[256][256];
    uint8_t lit_sym[256u << LIT_MAX];
} decoder;

static void fill_slots(uint32_t *slots, const uint32_t *f) {
    uint32_t pos = 0;
    for (uint32_t s = 0; s < SYMBOLS; s++)
        for (uint32_t j = 0; j < f[s]; j++) slots[pos++] = SHIFT[s] | j << 6 | f[s] << 13;
}

static int read_image_tables(decoder *d, const uint8_t *data, size_t len, uint32_t k) {
    bits_in r = {data, len, 0};
    uint32_t f[256], order[256], n = literal_order(k, order);
    for (uint32_t t = 0; t < CONTEXTS; t++) {
        uint32_t *slots = d->slots + t * PIX_ONE;
        d->used[t] = (uint8_t)get_bit(&r);
        if (!d->used[t]) {
            for (uint32_t i = 0; i < PIX_ONE; i++) slots[i] = INVALID_ENTRY;
            continue;
        }
        if (!read_pixel_table(&r, f)) return KMC_BAD_TABLES;
        for (uint32_t s = 0; s < SYMBOLS; s++) d->image_f[t][s] = (uint16_t)f[s];
        fill_slots(slots, f);
    }
    uint32_t L = 0, g = 0, at = 0;
    while (L < k) {
        uint32_t count = get_gamma(&r);
        if (!count || count > k - L) return KMC_BAD_TABLES;
        memset(d->group_of + L, (int)g, count);
        L += count;
        d->group_used[g] = (uint8_t)get_bit(&r);
        if (d->group_used[g]) {
            uint32_t v = get_gamma(&r), p = v + 4;
            if (p < LIT_MIN || p > LIT_MAX) return KMC_BAD_TABLES;
            if (!read_literal_table(&r, order, n, p, f, k)) return KMC_BAD_TABLES;
            d->group_bits[g] = (uint8_t)p;
            d->group_at[g] = at;
            for (uint32_t s = 0, pos = 0; s < k; s++) {
                d->lit_f[g][s] = (uint16_t)f[s];
                d->lit_start[g][s] = (uint16_t)pos;
                memset(d->lit_sym + at + pos, (int)s, f[s]);
                pos += f[s];
            }
            at += 1u << p;
        }
        g++;
    }
    d->n_own = 0;
    return bits_end_ok(&r) ? KMC_OK : KMC_BAD_TABLES;
}

/* A strip's own tables replace the image's for that strip; the previous strip's go back.
 * None (len 0): the image's tables throughout. */
static int read_strip_tables(decoder *d, const uint8_t *data, size_t len) {
    uint32_t f[SYMBOLS];
    for (uint32_t i = 0; i < d->n_own; i++) {
        uint32_t t = d->own[i];
        for (uint32_t s = 0; s < SYMBOLS; s++) f[s] = d->image_f[t][s];
        fill_slots(d->slots + t * PIX_ONE, f);
    }
    d->n_own = 0;
    if (!len) return KMC_OK;
    bits_in r = {data, len, 0};
    for (uint32_t t = 0; t < CONTEXTS; t++) {
        if (!d->used[t] || !get_bit(&r)) continue;
        if (!read_pixel_table(&r, f)) return KMC_BAD_TABLES;
        d->own[d->n_own++] = (uint16_t)t;
        fill_slots(d->slots + t * PIX_ONE, f);
    }
    return bits_end_ok(&r) ? KMC_OK : KMC_BAD_TABLES;
}

static inline uint64_t be64(const uint8_t *s) {
    return (uint64_t)be32(s) << 32 | be32(s + 4);
}

/* Decode one strip's rows [y0, y0 + rows) from `data` (len bytes available; `cut` if the
 * file's end cut it). `up`, `up2`: padded rows; `A`: width + 16 bytes. */
static int decode_strip(decoder *d, const uint8_t *data, size_t len, size_t declared, int cut,
                        uint32_t width, uint32_t rows, uint32_t k, int partial, uint8_t *up,
                        uint8_t *up2, uint8_t *A, uint8_t *strip) {
    size_t head = len < 4 ? 0 : be32(data);
    /* The declared length breaks these rules however much of it the file holds. */
    if (len >= 4 && (declared - 12 < head || (declared - 12 - head) % 4)) return KMC_BAD_STRIPS;
    if (len < 12 || len - 12 < head) {
        if (!cut) return KMC_BAD_STRIPS;
        if (!partial) return KMC_TRUNCATED;
        memset(strip, 0, (size_t)rows * width);
        return KMC_OK;
    }
    size_t words = len - 12 - head;
    if (words % 4) {
        if (!cut) return KMC_BAD_STRIPS;
        words -= words % 4; /* the rest of a word the end cut */
    }
    int code = read_strip_tables(d, data + 4, head);
    if (code != KMC_OK) return code;
    uint64_t x = be64(data + 4 + head);
    if (x < X_LOW || x >= X_HIGH) return KMC_LOW_STATE;
    const uint8_t *wp = data + 12 + head, *wend = wp + words;
    memset(up, 0, width + PAD);
    memset(up2, 0, width + PAD);
    const uint32_t *slots = d->slots;
    uint32_t y = 0, e_last = 0, c_last = 0, L_last = 0;
    for (; y < rows; y++) {
        uint8_t *row = strip + (size_t)y * width;
        above_bits(up, up2, width, A);
        uint32_t L = 0, LL = 0, after_run = 0;
        for (uint32_t c = 0; c < width; c++) {
            uint32_t UL = up[c], U = up[c + 1], UR = up[c + 2];
            uint32_t ctx = A[c] | left_bits(L, LL, U, UL, UR) | after_run << 8;
            uint32_t e = slots[ctx * PIX_ONE + (uint32_t)(x & (PIX_ONE - 1))];
            x = (uint64_t)(e >> 13) * (x >> PIX_BITS) + (e >> 6 & (PIX_ONE - 1));
            if (x < X_LOW) {
                if (wp == wend) {
                    e_last = e, c_last = c, L_last = L;
                    goto out_of_pixel_words;
                }
                x = x << 32 | be32(wp);
                wp += 4;
            }
            uint32_t shift = e & 63, v;
            after_run = 0;
            if (shift < 32) {
                uint32_t near = L | UL << 8 | U << 16 | UR << 24;
                v = near >> shift & 255;
            } else if (shift == 32) {
                uint32_t g = d->group_of[L];
                if (!d->group_used[g]) return KMC_BAD_SYMBOL;
                uint32_t p = d->group_bits[g], slot = (uint32_t)x & ((1u << p) - 1);
                uint32_t s = d->lit_sym[d->group_at[g] + slot];
                x = (uint64_t)d->lit_f[g][s] * (x >> p) + slot - d->lit_start[g][s];
                if (x < X_LOW) {
                    if (wp == wend) goto out_of_words;
                    x = x << 32 | be32(wp);
                    wp += 4;
                }
                v = L + s;
                v = v >= k ? v - k : v;
            } else if (shift == 40) {
                if (width - c < RUN) return KMC_BAD_SYMBOL;
                memset(row + c, (int)L, RUN);
                c += RUN - 1;
                LL = L;
                after_run = 1;
                continue;
            } else {
                return KMC_BAD_SYMBOL;
            }
            row[c] = (uint8_t)v;
            LL = L;
            L = v;
        }
        memcpy(up2 + 1, up + 1, width);
        memcpy(up + 1, row, width);
    }
    if (wp != wend) return KMC_EXTRA;
    if (x != X_LOW) return cut && partial ? KMC_OK : KMC_BAD_END;
    return KMC_OK;
out_of_pixel_words:
    /* The symbol read just before the words ran out may itself be invalid. */
    if ((e_last & 63) == SHIFT_INVALID || ((e_last & 63) == 40 && width - c_last < RUN) ||
        ((e_last & 63) == 32 && !d->group_used[d->group_of[L_last]]))
        return KMC_BAD_SYMBOL;
out_of_words:
    if (!partial || !cut) return KMC_TRUNCATED;
    memset(strip + (size_t)y * width, 0, (size_t)(rows - y) * width);
    return KMC_OK;
}

int kmc_tables_decode(const uint8_t *stream, size_t len, const kmc_strip_table *table,
                      uint32_t width, uint32_t height, int k, int partial, uint32_t first,
                      uint32_t last, uint8_t *out) {
    if (k < 1 || k > 256 || last > table->strips || first > last || width > KMC_MAX_SIDE)
        return KMC_BAD_ARGS;
    decoder *d = malloc(sizeof *d);
    uint8_t *up = malloc(width + PAD), *up2 = malloc(width + PAD), *A = malloc((size_t)width + 16);
    int result = d && up && up2 && A ? KMC_OK : KMC_NOMEM;
    if (result == KMC_OK)
        result = read_image_tables(d, table->tables, table->tables_bytes, (uint32_t)k);
    /* 64 bits: with `partial` the lengths may add up to more than any buffer. */
    uint64_t offset = table->header_bytes;
    for (uint32_t i = 0; i < first; i++) offset += be32(table->lengths + 4 * (size_t)i);
    for (uint32_t i = first; i < last && result == KMC_OK; i++) {
        size_t n = be32(table->lengths + 4 * (size_t)i);
        size_t at = offset < len ? (size_t)offset : len, have = len - at;
        int cut = have < n;
        uint32_t y0 = i * table->rows_per_strip;
        uint32_t rows = height - y0 < table->rows_per_strip ? height - y0 : table->rows_per_strip;
        result = decode_strip(d, stream + at, cut ? have : n, n, cut, width, rows, (uint32_t)k,
                              partial, up, up2, A, out + (size_t)y0 * width);
        offset += n;
    }
    free(d);
    free(up);
    free(up2);
    free(A);
    return result;
}

/* ------------------------------------------------------------------ encoder */

/* log2 in 16-bit fixed point, computed with integers (the same on every machine). */
#define LOG_N ((2u << LIT_MAX) + 512u)
static uint32_t log2_fixed(uint32_t v) {
    int n = bit_length(v) - 1;
    uint64_t m = (uint64_t)v << (31 - n); /* v / 2^n in [1, 2), 31 fraction bits */
    uint32_t r = (uint32_t)n << 16;
    for (int i = 15; i >= 0; i--) {
        m = (m * m) >> 31;
        if (m >= (1ull << 32)) {
            m >>= 1;
            r |= 1u << i;
        }
    }
    return r;
}

typedef struct {
    uint32_t log2[LOG_N];
} log_table;

static void make_log_table(log_table *lg) {
    lg->log2[0] = 0;
    for (uint32_t i = 1; i < LOG_N; i++) lg->log2[i] = log2_fixed(i);
}

/* Frequencies of `n` counts summing to 2^bits, each seen symbol at least 1, moved one unit
 * at a time where the estimated cost changes least. */
static void normalise(const uint64_t *count, uint32_t n, uint32_t bits, uint32_t *f,
                      const log_table *lg) {
    uint64_t total = 0;
    uint32_t one = 1u << bits, sum = 0;
    for (uint32_t i = 0; i < n; i++) total += count[i];
    for (uint32_t i = 0; i < n; i++) {
        if (!count[i]) {
            f[i] = 0;
            continue;
        }
        uint64_t v = (count[i] * (uint64_t)one + total / 2) / total;
        f[i] = v ? (uint32_t)v : 1;
        sum += f[i];
    }
    while (sum > one) {
        uint32_t best = n;
        uint64_t cost = UINT64_MAX;
        for (uint32_t i = 0; i < n; i++)
            if (f[i] > 1) {
                uint64_t c = count[i] * (lg->log2[f[i]] - lg->log2[f[i] - 1]);
                if (c < cost) cost = c, best = i;
            }
        f[best]--;
        sum--;
    }
    while (sum < one) {
        uint32_t best = n;
        uint64_t gain = 0;
        for (uint32_t i = 0; i < n; i++)
            if (f[i]) {
                uint64_t g = count[i] * (lg->log2[f[i] + 1] - lg->log2[f[i]]);
                if (best == n || g > gain) gain = g, best = i;
            }
        f[best]++;
        sum++;
    }
}

static void write_pixel_table(bits_out *w, const uint32_t *f) {
    for (uint32_t s = 0; s + 1 < SYMBOLS; s++) put_gamma(w, f[s] + 1);
}

static void write_literal_table(bits_out *w, const uint32_t *f, const uint32_t *order,
                                uint32_t n) {
    uint32_t zeros = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t v = f[order[i]];
        if (!v) {
            zeros++;
            continue;
        }
        put_gamma(w, zeros + 1);
        put_gamma(w, v);
        zeros = 0;
    }
}

/* One strip's symbols, in decoding order, with their contexts. */
typedef struct {
    uint16_t *sym;      /* context | symbol << 9 */
    uint8_t *lit_d, *lit_L;
    size_t n_sym, n_lit;
} symbols;

/* Counts: pixel symbols by context, literal d by L (KMC_TABLES_COUNTS uint64 in all). */
#define LIT_COUNTS(counts) ((counts) + CONTEXTS * SYMBOLS)

/* Walk a strip's pixels as the decoder will; count them and, if `out`, record them. */
static int walk_strip(const uint8_t *strip, uint32_t width, uint32_t rows, uint32_t k,
                      uint64_t *counts, symbols *out) {
    uint8_t *up = calloc(width + PAD, 1), *up2 = calloc(width + PAD, 1), *A = malloc((size_t)width + 16);
    if (!up || !up2 || !A) {
        free(up), free(up2), free(A);
        return KMC_NOMEM;
    }
    uint64_t *lit = LIT_COUNTS(counts);
    for (uint32_t y = 0; y < rows; y++) {
        const uint8_t *row = strip + (size_t)y * width;
        above_bits(up, up2, width, A);
        uint32_t L = 0, LL = 0, after_run = 0;
        for (uint32_t c = 0; c < width; c++) {
            uint32_t v = row[c], UL = up[c], U = up[c + 1], UR = up[c + 2];
            uint32_t ctx = A[c] | left_bits(L, LL, U, UL, UR) | after_run << 8, s;
            int run = 0;
            if ((ctx & 0x81) == 0x81 && width - c >= RUN) {
                run = 1;
                for (uint32_t i = 0; i < RUN && run; i++) run = row[c + i] == L;
            }
            if (run) s = SYM_RUN;
            else if (v == L) s = 0;
            else if (v == U) s = 1;
            else if (v == UR) s = 2;
            else if (v == UL) s = 3;
            else s = SYM_LITERAL;
            counts[ctx * SYMBOLS + s]++;
            if (out) out->sym[out->n_sym++] = (uint16_t)(ctx | s << 9);
            if (s == SYM_LITERAL) {
                uint32_t d = v >= L ? v - L : v + k - L;
                lit[L * 256 + d]++;
                if (out) {
                    out->lit_d[out->n_lit] = (uint8_t)d;
                    out->lit_L[out->n_lit++] = (uint8_t)L;
                }
            }
            after_run = (uint32_t)run;
            if (run) {
                c += RUN - 1;
                LL = L;
                continue;
            }
            LL = L;
            L = v;
        }
        memcpy(up2 + 1, up + 1, width);
        memcpy(up + 1, row, width);
    }
    free(up), free(up2), free(A);
    return KMC_OK;
}

int kmc_tables_count(const uint8_t *plane, uint32_t width, uint32_t y0, uint32_t rows,
                     uint32_t strip_rows, int k, uint64_t *counts) {
    if (width == 0 || width > KMC_MAX_SIDE || rows == 0 || strip_rows == 0 || k < 1 || k > 256)
        return KMC_BAD_ARGS;
    const uint8_t *strip = plane + (size_t)y0 * width;
    for (size_t i = 0, n = (size_t)width * rows; i < n; i++)
        if (strip[i] >= k) return KMC_BAD_ARGS;
    memset(counts, 0, KMC_TABLES_COUNTS * sizeof *counts);
    for (uint32_t y = 0; y < rows; y += strip_rows) {
        uint32_t n = rows - y < strip_rows ? rows - y : strip_rows;
        int code = walk_strip(strip + (size_t)y * width, width, n, (uint32_t)k, counts, NULL);
        if (code != KMC_OK) return code;
    }
    return KMC_OK;
}

/* Estimated bits (16-bit fixed point) of a literal group with these counts of d: its
 * description and its literals under rounded frequencies, at the best precision (*bits). */
static uint64_t group_cost(const uint64_t *count, const uint32_t *order, uint32_t n,
                           const log_table *lg, uint32_t *bits) {
    uint64_t nz_count[256], total = 0, zero_runs = 0;
    uint32_t m = 0, zeros = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t c = count[order[i]];
        if (!c) {
            zeros++;
            continue;
        }
        nz_count[m++] = c;
        total += c;
        zero_runs += gamma_bits(zeros + 1);
        zeros = 0;
    }
    uint64_t head = 1; /* the used bit; the caller counts the group's length */
    if (!total) return head << 16;
    uint64_t best = UINT64_MAX;
    for (uint32_t p = LIT_MIN; p <= LIT_MAX; p++) {
        uint32_t one = 1u << p, sum = 0;
        if (m > one) continue;
        uint64_t data = 0, desc = zero_runs + gamma_bits(p - 4);
        for (uint32_t i = 0; i < m; i++) {
            uint64_t f = (nz_count[i] * one + total / 2) / total;
            f = f ? f : 1;
            sum += (uint32_t)f;
            data -= nz_count[i] * lg->log2[f]; /* wraps; corrected by the total below */
            desc += gamma_bits((uint32_t)f);
        }
        data += total * lg->log2[sum];
        uint64_t cost = data + ((desc + head) << 16);
        if (cost < best) best = cost, *bits = p;
    }
    return best;
}

/* The literal groups: start from one group per L, and merge the adjacent pair that saves the
 * most until no merge saves. `ends[g]` is the end (exclusive) of group g; returns the number. */
static uint32_t literal_groups(const uint64_t *lit, uint32_t k, const uint32_t *order,
                               uint32_t n, const log_table *lg, uint32_t *ends,
                               uint32_t *bits_of) {
    uint64_t (*hist)[256] = malloc(sizeof(uint64_t[256]) * k);
    if (!hist) return 0;
    uint64_t cost[256], merged[256], both[256];
    uint32_t len[256], next[256], prev[256], bits[256], merged_bits[256];
    for (uint32_t l = 0; l < k; l++) {
        memcpy(hist[l], lit + l * 256, sizeof hist[l]);
        len[l] = 1, next[l] = l + 1, prev[l] = l ? l - 1 : k, bits[l] = LIT_MIN;
        cost[l] = group_cost(hist[l], order, n, lg, &bits[l]) + ((uint64_t)gamma_bits(1) << 16);
    }
#define MERGE_COST(a)                                                                           \
    do {                                                                                        \
        uint32_t b_ = next[a];                                                                  \
        for (uint32_t s = 0; s < k; s++) both[s] = hist[a][s] + hist[b_][s];                    \
        merged_bits[a] = LIT_MIN;                                                               \
        merged[a] = group_cost(both, order, n, lg, &merged_bits[a]) +                           \
                    ((uint64_t)gamma_bits(len[a] + len[b_]) << 16);                             \
    } while (0)
    for (uint32_t l = 0; l + 1 < k; l++) MERGE_COST(l);
    for (;;) {
        uint32_t a = k;
        uint64_t saving = 0;
        for (uint32_t l = 0; l < k; l = next[l]) {
            uint32_t b = next[l];
            if (b < k && cost[l] + cost[b] > merged[l] && cost[l] + cost[b] - merged[l] > saving)
                saving = cost[l] + cost[b] - merged[l], a = l;
        }
        if (a == k) break;
        uint32_t b = next[a];
        for (uint32_t s = 0; s < k; s++) hist[a][s] += hist[b][s];
        len[a] += len[b];
        cost[a] = merged[a];
        bits[a] = merged_bits[a];
        next[a] = next[b];
        if (next[a] < k) {
            prev[next[a]] = a;
            MERGE_COST(a);
        }
        if (prev[a] < k) MERGE_COST(prev[a]);
    }
#undef MERGE_COST
    uint32_t groups = 0;
    for (uint32_t l = 0; l < k; l = next[l]) {
        ends[groups] = l + len[l];
        bits_of[groups++] = bits[l];
    }
    free(hist);
    return groups;
}

/* Frequencies the strips code with: the image's pixel and literal tables. */
typedef struct {
    uint32_t pix_f[CONTEXTS][SYMBOLS];
    uint8_t used[CONTEXTS];
    uint8_t group_of[256];
    uint32_t group_bits[256];
    uint32_t lit_f[256][256];
} freq_tables;

/* Counts that a plane of fewer than 2^40 pixels can give, and no literal d = 0, d >= k or
 * L >= k: the estimates' fixed point does not overflow below that. */
static int counts_valid(const uint64_t *counts, uint32_t k) {
    uint64_t total = 0;
    for (uint32_t i = 0; i < KMC_TABLES_COUNTS; i++) {
        if (counts[i] >= (1ull << 40) - total) return 0;
        total += counts[i];
    }
    const uint64_t *lit = LIT_COUNTS(counts);
    for (uint32_t L = 0; L < 256; L++)
        for (uint32_t d = 0; d < 256; d++)
            if (lit[L * 256 + d] && (d == 0 || d >= k || L >= k)) return 0;
    return 1;
}

int kmc_tables_image(const uint64_t *counts, int kk, uint8_t **out, size_t *out_len) {
    if (kk < 1 || kk > 256 || !counts_valid(counts, (uint32_t)kk)) return KMC_BAD_ARGS;
    uint32_t k = (uint32_t)kk, order[256], n = literal_order(k, order);
    log_table *lg = malloc(sizeof *lg);
    uint32_t *f = malloc(256 * sizeof *f), ends[256], bits[256];
    uint64_t *group = malloc(256 * sizeof *group);
    bits_out w = {0};
    int result = KMC_NOMEM;
    if (!lg || !f || !group) goto done;
    make_log_table(lg);
    for (uint32_t t = 0; t < CONTEXTS; t++) {
        const uint64_t *c = counts + t * SYMBOLS;
        uint64_t any = 0;
        for (uint32_t s = 0; s < SYMBOLS; s++) any |= c[s];
        put_bits(&w, any != 0, 1);
        if (!any) continue;
        normalise(c, SYMBOLS, PIX_BITS, f, lg);
        write_pixel_table(&w, f);
    }
    const uint64_t *lit = LIT_COUNTS(counts);
    uint32_t groups = literal_groups(lit, k, order, n, lg, ends, bits);
    if (!groups) goto done;
    for (uint32_t g = 0, start = 0; g < groups; start = ends[g++]) {
        uint64_t total = 0;
        memset(group, 0, 256 * sizeof *group);
        for (uint32_t l = start; l < ends[g]; l++)
            for (uint32_t s = 0; s < k; s++) group[s] += lit[l * 256 + s], total += lit[l * 256 + s];
        put_gamma(&w, ends[g] - start);
        put_bits(&w, total != 0, 1);
        if (!total) continue;
        put_gamma(&w, bits[g] - 4);
        normalise(group, k, bits[g], f, lg);
        write_literal_table(&w, f, order, n);
    }
    flush_bits(&w);
    if (w.failed) goto done;
    *out = w.buf;
    *out_len = w.n;
    w.buf = NULL;
    result = KMC_OK;
done:
    free(lg);
    free(f);
    free(group);
    free(w.buf);
    return result;
}

/* The image's tables back from their description (the encoder's own, so valid). */
static int parse_image_tables(const uint8_t *data, size_t len, uint32_t k, freq_tables *ft) {
    bits_in r = {data, len, 0};
    uint32_t order[256], n = literal_order(k, order), L = 0, g = 0;
    for (uint32_t t = 0; t < CONTEXTS; t++) {
        ft->used[t] = (uint8_t)get_bit(&r);
        if (ft->used[t] && !read_pixel_table(&r, ft->pix_f[t])) return KMC_BAD_ARGS;
    }
    while (L < k) {
        uint32_t count = get_gamma(&r);
        if (!count || count > k - L) return KMC_BAD_ARGS;
        memset(ft->group_of + L, (int)g, count);
        L += count;
        memset(ft->lit_f[g], 0, sizeof ft->lit_f[g]);
        ft->group_bits[g] = 0;
        if (get_bit(&r)) {
            uint32_t p = get_gamma(&r) + 4;
            if (p < LIT_MIN || p > LIT_MAX || !read_literal_table(&r, order, n, p, ft->lit_f[g], k))
                return KMC_BAD_ARGS;
            ft->group_bits[g] = p;
        }
        g++;
    }
    return bits_end_ok(&r) ? KMC_OK : KMC_BAD_ARGS;
}

/* rANS: push one symbol (frequency f, start s, precision b) into x, backwards. */
static inline int put_symbol(uint64_t *x, uint32_t f, uint32_t s, uint32_t b, uint32_t **words,
                             size_t *n, size_t *cap) {
    if (*x >= (uint64_t)f << (63 - b)) {
        if (*n == *cap) {
            size_t grown = *cap + *cap / 2 + 64;
            uint32_t *bigger = realloc(*words, grown * sizeof *bigger);
            if (!bigger) return 0;
            *words = bigger;
            *cap = grown;
        }
        (*words)[(*n)++] = (uint32_t)*x;
        *x >>= 32;
    }
    *x = ((*x / f) << b) + *x % f + s;
    return 1;
}

static void put_be32(uint8_t *o, uint32_t v) {
    o[0] = (uint8_t)(v >> 24), o[1] = (uint8_t)(v >> 16), o[2] = (uint8_t)(v >> 8), o[3] = (uint8_t)v;
}

int kmc_tables_strip(const uint8_t *plane, uint32_t width, uint32_t y0, uint32_t rows, int kk,
                     const uint8_t *image_tables, size_t image_len, uint8_t **out,
                     size_t *out_len) {
    if (width == 0 || width > KMC_MAX_SIDE || rows == 0 || kk < 1 || kk > 256) return KMC_BAD_ARGS;
    if ((uint64_t)width * rows > SIZE_MAX / 8) return KMC_BAD_ARGS;
    const uint32_t k = (uint32_t)kk;
    const uint8_t *strip = plane + (size_t)y0 * width;
    size_t pixels = (size_t)width * rows, cap = pixels / 8 + 64, n_words = 0;
    for (size_t i = 0; i < pixels; i++)
        if (strip[i] >= k) return KMC_BAD_ARGS;
    freq_tables *ft = malloc(sizeof *ft);
    log_table *lg = malloc(sizeof *lg);
    uint64_t *counts = calloc(KMC_TABLES_COUNTS, sizeof *counts);
    symbols sy = {malloc(pixels * sizeof *sy.sym), malloc(pixels), malloc(pixels), 0, 0};
    uint32_t *words = malloc(cap * sizeof *words);
    uint32_t *pix_start = malloc((CONTEXTS * SYMBOLS + 256 * 256) * sizeof *pix_start);
    uint32_t *lit_start = pix_start + CONTEXTS * SYMBOLS;
    bits_out w = {0};
    int result = KMC_NOMEM;
    if (!ft || !lg || !counts || !sy.sym || !sy.lit_d || !sy.lit_L || !words || !pix_start) goto done;
    result = parse_image_tables(image_tables, image_len, k, ft);
    if (result != KMC_OK) goto done;
    result = walk_strip(strip, width, rows, k, counts, &sy);
    if (result != KMC_OK) goto done;
    result = KMC_BAD_ARGS;
    make_log_table(lg);
    /* This strip's own table for a context where it, with its description, costs less;
     * no tables at all (H = 0) if there is no such context. */
    int any_own = 0;
    for (uint32_t t = 0; t < CONTEXTS; t++) {
        const uint64_t *c = counts + t * SYMBOLS;
        uint64_t any = 0, image = 0, own = 0;
        for (uint32_t s = 0; s < SYMBOLS; s++) {
            any |= c[s];
            if (c[s] && (!ft->used[t] || !ft->pix_f[t][s])) goto done; /* not in the image's tables */
        }
        if (!ft->used[t]) continue;
        if (!any) {
            put_bits(&w, 0, 1);
            continue;
        }
        uint32_t f[SYMBOLS];
        normalise(c, SYMBOLS, PIX_BITS, f, lg);
        for (uint32_t s = 0; s < SYMBOLS; s++)
            if (c[s]) {
                image += c[s] * ((PIX_BITS << 16) - lg->log2[ft->pix_f[t][s]]);
                own += c[s] * ((PIX_BITS << 16) - lg->log2[f[s]]);
            }
        for (uint32_t s = 0; s + 1 < SYMBOLS; s++) own += (uint64_t)gamma_bits(f[s] + 1) << 16;
        if (own >= image) {
            put_bits(&w, 0, 1);
            continue;
        }
        put_bits(&w, 1, 1);
        write_pixel_table(&w, f);
        memcpy(ft->pix_f[t], f, sizeof f);
        any_own = 1;
    }
    flush_bits(&w);
    if (!any_own) w.n = 0;
    if (w.failed) {
        result = KMC_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < sy.n_lit; i++)
        if (!ft->lit_f[ft->group_of[sy.lit_L[i]]][sy.lit_d[i]]) goto done;
    /* Starts of every table, then the symbols backwards. */
    for (uint32_t t = 0; t < CONTEXTS; t++)
        for (uint32_t s = 0, at = 0; s < SYMBOLS; at += ft->pix_f[t][s++]) pix_start[t * SYMBOLS + s] = at;
    for (uint32_t g = 0; g < k; g++)
        for (uint32_t s = 0, at = 0; s < k; at += ft->lit_f[g][s++]) lit_start[g * 256 + s] = at;
    uint64_t x = X_LOW;
    size_t li = sy.n_lit;
    result = KMC_NOMEM;
    for (size_t i = sy.n_sym; i-- > 0;) {
        uint32_t t = sy.sym[i] & 511, s = sy.sym[i] >> 9;
        if (s == SYM_LITERAL) {
            li--;
            uint32_t g = ft->group_of[sy.lit_L[li]], d = sy.lit_d[li];
            if (!put_symbol(&x, ft->lit_f[g][d], lit_start[g * 256 + d], ft->group_bits[g], &words,
                            &n_words, &cap))
                goto done;
        }
        if (!put_symbol(&x, ft->pix_f[t][s], pix_start[t * SYMBOLS + s], PIX_BITS, &words, &n_words, &cap))
            goto done;
    }
    *out_len = 4 + w.n + 8 + 4 * n_words;
    *out = malloc(*out_len);
    if (!*out) goto done;
    uint8_t *o = *out;
    put_be32(o, (uint32_t)w.n);
    if (w.n) memcpy(o + 4, w.buf, w.n);
    o += 4 + w.n;
    put_be32(o, (uint32_t)(x >> 32));
    put_be32(o + 4, (uint32_t)x);
    o += 8;
    for (size_t i = 0; i < n_words; i++) put_be32(o + 4 * i, words[n_words - 1 - i]);
    result = KMC_OK;
done:
    free(ft);
    free(lg);
    free(counts);
    free(sy.sym);
    free(sy.lit_d);
    free(sy.lit_L);
    free(words);
    free(pix_start);
    free(w.buf);
    return result;
}
