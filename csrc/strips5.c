/* Compression method 5, `strips` (spec/kmc.md section 5.6).
 *
 * The plane is cut into strips of whole rows, each coded on its own, so that
 * strips decode in parallel threads. Within a strip, pixels go in raster
 * order; each is the questions of method 4 (is it L, U, UR, UL, skipping
 * repeats; else its bits), each answer coded by one rANS state with an
 * adaptive probability that is updated at once: counting at first, then
 * following the recent answers of its context.
 */
#include <stdlib.h>
#include <string.h>

#include "kmc_codec.h"
#include "rans.h"

/* neighbour pattern (7 bits) x question number (4) */
#define FLAG_CONTEXTS 512u
/* Adaptation: the step towards each answer is 1/(n + 2) of the way after n answers
 * in the context (a counting estimate), never less than 1/STEP_LIMIT. */
#define STEP_LIMIT 64u
/* A run question covers this many pixels at once (spec 5.6, "runs"). */
#define RUN 8u
#define RUN_CONTEXTS 2u

typedef struct {
    uint16_t p;  /* probability of a 0, in 1/65536 */
    uint16_t n;  /* answers seen, at most STEP_LIMIT - 2 */
} prob;

static uint32_t literal_bits(int k) {
    uint32_t b = 0;
    while ((1u << b) < (uint32_t)k) b++;
    return b ? b : 1;
}

static inline uint32_t coding_p0(prob q) {
    uint32_t f0 = q.p >> 4;
    return f0 < 1 ? 1 : f0;  /* p < 65536, so f0 <= 4095 */
}

/* STEP[n] = 65536 div (n + 2): the share of the way each answer moves p. */
static const uint16_t STEP[STEP_LIMIT - 1] = {
    32768, 21845, 16384, 13107, 10922, 9362, 8192, 7281, 6553, 5957, 5461, 5041, 4681, 4369,
    4096, 3855, 3640, 3449, 3276, 3120, 2978, 2849, 2730, 2621, 2520, 2427, 2340, 2259, 2184,
    2114, 2048, 1985, 1927, 1872, 1820, 1771, 1724, 1680, 1638, 1598, 1560, 1524, 1489, 1456,
    1424, 1394, 1365, 1337, 1310, 1285, 1260, 1236, 1213, 1191, 1170, 1149, 1129, 1110, 1092,
    1074, 1057, 1040, 1024
};

static inline void learn(prob *q, uint32_t bit) {
    uint32_t step = STEP[q->n], p = q->p;
    /* towards 0 after a 1, towards 65536 after a 0 */
    q->p = (uint16_t)(bit ? p - ((p * step) >> 16) : p + (((65536u - p) * step) >> 16));
    q->n = (uint16_t)(q->n + (q->n < STEP_LIMIT - 2));
}

/* learn for an answer used as data (literal bits, and every answer in the encoder):
 * the same update, computed with masks rather than a branch on the answer. */
static inline void learn_data(prob *q, uint32_t bit) {
    uint32_t step = STEP[q->n], p = q->p, mask = 0u - bit;
    uint32_t moved = (((mask & p) | (~mask & (65536u - p))) * step) >> 16;
    q->p = (uint16_t)(p + ((moved ^ mask) - mask)); /* p - moved after a 1, p + moved after a 0 */
    q->n = (uint16_t)(q->n + (q->n < STEP_LIMIT - 2));
}

/* The flags' contexts, the runs', then the literal tree's: node n of a literal under
 * neighbours L (and U where they fit) is entry ((L [+ U << bits]) << bits) + n, so the
 * nodes one literal visits lie together in memory. */
static prob *new_model(int k, size_t *count) {
    uint32_t b = literal_bits(k);
    *count = FLAG_CONTEXTS + RUN_CONTEXTS + ((size_t)1 << ((b <= 6 ? 3 : 2) * b));
    prob *m = malloc(*count * sizeof *m);
    if (m)
        for (size_t i = 0; i < *count; i++) m[i] = (prob){32768, 0};
    return m;
}

/* A run question is asked where the row above holds L from the pixel up-left of
 * this one to the one up-right of the run's last pixel (0 past the row's end),
 * and the run fits in the row. */
static inline int run_above(const uint8_t *up, uint32_t width, uint32_t c, uint32_t L) {
    if (c + RUN > width) return 0;
    for (uint32_t i = 2; i <= RUN; i++)
        if ((c + i < width ? up[c + i] : 0) != L) return 0;
    return 1;
}

int kmc_strips_table(const uint8_t *stream, size_t len, uint32_t width, uint32_t height,
                     int partial, kmc_strip_table *table) {
    if (width == 0 || height == 0) return KMC_BAD_ARGS;
    if (len < 4) return KMC_TRUNCATED;
    uint32_t rows = rans_be32(stream);
    if (rows == 0 || rows > height) return KMC_BAD_STRIPS;
    uint32_t strips = (uint32_t)(((uint64_t)height + rows - 1) / rows);
    if (strips > 1 && (uint64_t)rows * width < KMC_MIN_STRIP_PIXELS) return KMC_BAD_STRIPS;
    size_t header = 4 + 4 * (size_t)strips;
    if (len < header) return KMC_TRUNCATED;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < strips; i++) {
        uint32_t n = rans_be32(stream + 4 + 4 * (size_t)i);
        if (n < 4 || n % 2) return KMC_BAD_STRIPS;
        sum += n;
    }
    if (sum > len - header && !partial) return KMC_TRUNCATED;
    if (sum < len - header) return KMC_EXTRA;
    table->rows_per_strip = rows;
    table->strips = strips;
    table->header_bytes = header;
    table->lengths = stream + 4;
    return KMC_OK;
}

/* Decode one strip's rows [y0, y0 + rows) from `data` (len bytes available). */
static int decode_strip(const uint8_t *data, size_t len, int cut, uint32_t width, uint32_t y0,
                        uint32_t rows, int k, int partial, prob *model, size_t contexts,
                        const uint8_t *zero_row, uint8_t *out) {
    uint8_t *strip = out + (size_t)y0 * width;
    if (len < 4) {
        if (!partial) return KMC_TRUNCATED;
        memset(strip, 0, (size_t)rows * width);
        return KMC_OK;
    }
    if ((len - 4) % 2) len--;  /* only when cut: the rest of a word */
    for (size_t i = 0; i < contexts; i++) model[i] = (prob){32768, 0};
    uint32_t x = rans_be32(data);
    if (x < RANS_LOW) return KMC_LOW_STATE;
    const uint8_t *words = data + 4;
    size_t n_words = (len - 4) / 2, ptr = 0;
    const uint32_t bits = literal_bits(k), top = 1u << bits;
    prob *runs = model + FLAG_CONTEXTS, *literal = runs + RUN_CONTEXTS;
    int too_big = 0;
#define ANSWER(q, bit)                                              \
    do {                                                            \
        bit = rans_take(&x, coding_p0(*(q)));                       \
        if (!rans_refill(&x, words, n_words, &ptr)) goto out_of_words; \
        learn(q, bit);                                              \
    } while (0)
    uint32_t y = 0;
    for (; y < rows; y++) {
        uint8_t *row = strip + (size_t)y * width;
        const uint8_t *up = y ? row - width : zero_row;
        const uint8_t *up2 = y > 1 ? row - 2 * (size_t)width : zero_row;
        /* The neighbours slide along the row: UL <- U <- UR <- the next byte above. */
        uint32_t L = 0, LL = 0, UL = 0, U = up[0], UR = width > 1 ? up[1] : 0;
        uint32_t no_run_before = 0;
        for (uint32_t c = 0; c < width; c++) {
            uint32_t bit, v;
            if (c >= no_run_before && L == U && L == UL && L == UR && run_above(up, width, c, L)) {
                ANSWER(runs + (L == LL), bit);
                if (bit) {
                    memset(row + c, (int)L, RUN);
                    c += RUN - 1;
                    LL = L;
                    UL = L;
                    U = c + 1 < width ? up[c + 1] : 0;
                    UR = c + 2 < width ? up[c + 2] : 0;
                    continue;
                }
                no_run_before = c + RUN;
            }
            uint32_t pattern = (L == U) | (L == UL) << 1 | (U == UL) << 2 | (U == UR) << 3 |
                               (L == UR) << 4 | (L == LL) << 5 | (U == up2[c]) << 6;
            prob *flags = model + pattern * 4;
            ANSWER(flags, bit);
            if (bit) { v = L; goto found; }
            if (U != L) {
                ANSWER(flags + 1, bit);
                if (bit) { v = U; goto found; }
            }
            if (UR != L && UR != U) {
                ANSWER(flags + 2, bit);
                if (bit) { v = UR; goto found; }
            }
            if (UL != L && UL != U && UL != UR) {
                ANSWER(flags + 3, bit);
                if (bit) { v = UL; goto found; }
            }
            {
                /* No branch on a literal's bits: they only steer the walk down the tree. */
                uint32_t node = 1;
                prob *lit = literal + ((L + (bits <= 6 ? U << bits : 0)) << bits);
                while (node < top) {
                    prob *q = lit + node;
                    bit = rans_take_data(&x, coding_p0(*q));
                    if (!rans_refill(&x, words, n_words, &ptr)) goto out_of_words;
                    learn_data(q, bit);
                    node = node << 1 | bit;
                }
                v = node - top;
                too_big |= v >= (uint32_t)k;
            }
        found:
            row[c] = (uint8_t)v;
            LL = L;
            L = v;
            UL = U;
            U = UR;
            UR = c + 2 < width ? up[c + 2] : 0;
        }
    }
#undef ANSWER
    if (too_big) return KMC_INDEX_K;
    if (ptr != n_words) return KMC_EXTRA;
    if (x != RANS_LOW) return cut && partial ? KMC_OK : KMC_BAD_END;
    return KMC_OK;
out_of_words:
    if (too_big) return KMC_INDEX_K;
    /* Only a strip that the file's early end cut may stop short; a whole one is corrupt. */
    if (!partial || !cut) return KMC_TRUNCATED;
    memset(strip + (size_t)y * width, 0, (size_t)(rows - y) * width);
    return KMC_OK;
}

int kmc_strips_decode(const uint8_t *stream, size_t len, const kmc_strip_table *table,
                      uint32_t width, uint32_t height, int k, int partial, uint32_t first,
                      uint32_t last, uint8_t *out) {
    if (k < 1 || k > 256 || last > table->strips || first > last) return KMC_BAD_ARGS;
    size_t contexts;
    prob *model = new_model(k, &contexts);
    uint8_t *zero_row = calloc(width, 1);
    int result = model && zero_row ? KMC_OK : KMC_NOMEM;
    /* 64 bits: with `partial` the lengths may add up to more than any buffer. */
    uint64_t offset = table->header_bytes;
    for (uint32_t i = 0; i < first; i++) offset += rans_be32(table->lengths + 4 * (size_t)i);
    for (uint32_t i = first; i < last && result == KMC_OK; i++) {
        size_t n = rans_be32(table->lengths + 4 * (size_t)i);
        size_t at = offset < len ? (size_t)offset : len, have = len - at;
        int cut = have < n;
        uint32_t y0 = i * table->rows_per_strip;
        uint32_t rows = height - y0 < table->rows_per_strip ? height - y0 : table->rows_per_strip;
        result = decode_strip(stream + at, cut ? have : n, cut, width,
                              y0, rows, k, partial, model, contexts, zero_row, out);
        offset += n;
    }
    free(model);
    free(zero_row);
    return result;
}

/* One row's questions in coding order: each answer's context and value. */
static size_t row_questions(const uint8_t *row, const uint8_t *up, const uint8_t *up2,
                            uint32_t width, uint32_t bits, prob *model, prob **ctx,
                            uint8_t *answer) {
    prob *runs = model + FLAG_CONTEXTS, *literal = runs + RUN_CONTEXTS;
    size_t n = 0;
    uint32_t no_run_before = 0;
    for (uint32_t c = 0; c < width; c++) {
        uint32_t s = row[c], L = c ? row[c - 1] : 0, LL = c > 1 ? row[c - 2] : 0;
        uint32_t U = up[c], UL = c ? up[c - 1] : 0, UR = c + 1 < width ? up[c + 1] : 0;
        if (c >= no_run_before && L == U && L == UL && L == UR && run_above(up, width, c, L)) {
            int all = 1;
            for (uint32_t i = 0; i < RUN; i++) all &= row[c + i] == L;
            ctx[n] = runs + (L == LL);
            answer[n++] = (uint8_t)all;
            if (all) {
                c += RUN - 1;
                continue;
            }
            no_run_before = c + RUN;
        }
        uint32_t pattern = (L == U) | (L == UL) << 1 | (U == UL) << 2 | (U == UR) << 3 |
                           (L == UR) << 4 | (L == LL) << 5 | (U == up2[c]) << 6;
        prob *flags = model + pattern * 4;
        ctx[n] = flags;
        if ((answer[n++] = s == L)) continue;
        if (U != L) {
            ctx[n] = flags + 1;
            if ((answer[n++] = s == U)) continue;
        }
        if (UR != L && UR != U) {
            ctx[n] = flags + 2;
            if ((answer[n++] = s == UR)) continue;
        }
        if (UL != L && UL != U && UL != UR) {
            ctx[n] = flags + 3;
            if ((answer[n++] = s == UL)) continue;
        }
        prob *lit = literal + ((L + (bits <= 6 ? U << bits : 0)) << bits);
        for (uint32_t j = 0, node = 1; j < bits; j++) {
            uint32_t b = s >> (bits - 1 - j) & 1;
            ctx[n] = lit + node;
            answer[n++] = (uint8_t)b;
            node = node << 1 | b;
        }
    }
    return n;
}

int kmc_strips_encode_strip(const uint8_t *plane, uint32_t width, uint32_t y0, uint32_t rows,
                            int k, uint8_t **out, size_t *out_len) {
    if (width == 0 || rows == 0 || k < 1 || k > 256) return KMC_BAD_ARGS;
    if ((uint64_t)width * rows > SIZE_MAX / 32) return KMC_BAD_ARGS;
    const uint8_t *strip = plane + (size_t)y0 * width;
    size_t pixels = (size_t)width * rows;
    for (size_t i = 0; i < pixels; i++)
        if (strip[i] >= k) return KMC_BAD_ARGS;
    const uint32_t bits = literal_bits(k);
    size_t contexts, cap = 2 * pixels + 16, used = 0, row_max = (size_t)width * 12;
    prob *model = new_model(k, &contexts);
    uint8_t *zero_row = calloc(width, 1), *answer = malloc(row_max);
    prob **ctx = malloc(row_max * sizeof *ctx);
    uint16_t *pending = malloc(cap * sizeof *pending), *words = NULL;
    int result = KMC_NOMEM;
    if (!model || !zero_row || !answer || !ctx || !pending) goto done;
    /* Forward: each answer and its probability, learning as the decoder will. */
    for (uint32_t y = 0; y < rows; y++) {
        const uint8_t *row = strip + (size_t)y * width, *up = y ? row - width : zero_row;
        const uint8_t *up2 = y > 1 ? row - 2 * (size_t)width : zero_row;
        size_t n = row_questions(row, up, up2, width, bits, model, ctx, answer);
        if (!rans_reserve(&pending, &cap, used, n)) goto done;
        for (size_t i = 0; i < n; i++) {
            /* p0 < 4096, so p0 and the answer fit in 16 bits together */
            pending[used++] = (uint16_t)(coding_p0(*ctx[i]) << 1 | answer[i]);
            learn_data(ctx[i], answer[i]);
        }
    }
    /* Backward: rANS codes last in, first out; at most one word per answer. */
    words = malloc((used + 1) * sizeof *words);
    if (!words) goto done;
    size_t n_words = 0;
    uint32_t x = RANS_LOW;
    for (size_t i = used; i-- > 0;) x = rans_put(x, pending[i] >> 1, pending[i] & 1, words, &n_words);
    if (!rans_finish(&x, 1, words, n_words, out, out_len)) goto done;
    result = KMC_OK;
done:
    free(model);
    free(zero_row);
    free(answer);
    free(ctx);
    free(pending);
    free(words);
    return result;
}
