/* Compression method 4, `context` (spec/kmc.md section 5.5).
 *
 * Pixels are coded in wavefront steps t = x + 2y; within a step, questions go
 * by question number, then by row. All questions of a step use the counts as
 * they were when the step began, and the step's answers are added to the
 * counts once it is done. Row y is coded by rANS lane y mod lanes; the lanes
 * share one stream of 16-bit words.
 */
#include <stdlib.h>
#include <string.h>

#include "kmc_codec.h"
#include "rans.h"

#define FLAG_CONTEXTS 128u

typedef struct {
    uint32_t width, height, lanes, bits;
    uint64_t n_steps;
    size_t n_contexts;
    uint64_t *zeros, *total;
    uint16_t *p_zero;
    /* one step's pixels, at most `lanes` of them */
    uint8_t *value, *open, *pattern, *left;
    uint8_t (*cand)[4];
    uint8_t *asked;  /* bit i: candidate i is asked (not a repeat) */
    uint32_t *node;
    /* one step's answers, at most 12 per pixel */
    uint32_t *pend_ctx;
    uint8_t *pend_bit;
    uint32_t *pend_row;
} model4;

static uint32_t literal_bits(int k) {
    uint32_t b = 0;
    while ((1u << b) < (uint32_t)k) b++;
    return b ? b : 1;
}

static uint16_t probability_of_zero(uint64_t zeros, uint64_t total) {
    uint64_t f0 = ((5 * zeros + 2) << PROB_BITS) / (5 * total + 4);
    if (f0 < 1) f0 = 1;
    if (f0 > PROB_ONE - 1) f0 = PROB_ONE - 1;
    return (uint16_t)f0;
}

static void model_free(model4 *m) {
    free(m->zeros); free(m->total); free(m->p_zero);
    free(m->value); free(m->open); free(m->pattern); free(m->left); free(m->cand);
    free(m->asked); free(m->node); free(m->pend_ctx); free(m->pend_bit); free(m->pend_row);
}

static int model_init(model4 *m, uint32_t width, uint32_t height, int k) {
    memset(m, 0, sizeof *m);
    m->width = width;
    m->height = height;
    m->lanes = height < (width + 1) / 2 ? height : (width + 1) / 2;
    if (m->lanes == 0) m->lanes = 1;  /* width 1: ceil(1 / 2) = 1 */
    m->bits = literal_bits(k);
    m->n_steps = (uint64_t)width + 2 * (uint64_t)height - 2;
    m->n_contexts = FLAG_CONTEXTS + ((size_t)1 << (2 * m->bits));
    size_t lanes = m->lanes;
    m->zeros = calloc(m->n_contexts, sizeof *m->zeros);
    m->total = calloc(m->n_contexts, sizeof *m->total);
    m->p_zero = malloc(m->n_contexts * sizeof *m->p_zero);
    m->value = malloc(lanes);
    m->open = malloc(lanes);
    m->pattern = malloc(lanes);
    m->left = malloc(lanes);
    m->cand = malloc(lanes * sizeof *m->cand);
    m->asked = malloc(lanes);
    m->node = malloc(lanes * sizeof *m->node);
    m->pend_ctx = malloc(12 * lanes * sizeof *m->pend_ctx);
    m->pend_bit = malloc(12 * lanes);
    m->pend_row = malloc(12 * lanes * sizeof *m->pend_row);
    if (!m->zeros || !m->total || !m->p_zero || !m->value || !m->open || !m->pattern ||
        !m->left || !m->cand || !m->asked || !m->node || !m->pend_ctx || !m->pend_bit ||
        !m->pend_row) {
        model_free(m);
        return KMC_NOMEM;
    }
    uint16_t even = probability_of_zero(0, 0);
    for (size_t i = 0; i < m->n_contexts; i++) m->p_zero[i] = even;
    return KMC_OK;
}

/* Rows [*y0, *y1] hold the pixels of step t (x = t - 2y, 0 <= x < width). */
static void step_rows(const model4 *m, uint64_t t, uint32_t *y0, uint32_t *y1) {
    uint64_t lo = t + 2 > m->width ? (t + 2 - m->width) / 2 : 0;
    uint64_t hi = t / 2 < (uint64_t)m->height - 1 ? t / 2 : (uint64_t)m->height - 1;
    *y0 = (uint32_t)lo;
    *y1 = (uint32_t)hi;
}

static uint8_t at(const uint8_t *plane, uint32_t width, uint32_t height, int64_t x, int64_t y) {
    if (x < 0 || y < 0 || x >= (int64_t)width || y >= (int64_t)height) return 0;
    return plane[(size_t)y * width + (size_t)x];
}

/* Neighbours, pattern and candidate questions of the step's pixels. */
static uint32_t step_setup(model4 *m, const uint8_t *plane, uint64_t t, uint32_t *y0out) {
    uint32_t y0, y1;
    step_rows(m, t, &y0, &y1);
    *y0out = y0;
    uint32_t n = y1 - y0 + 1;
    for (uint32_t j = 0; j < n; j++) {
        int64_t y = (int64_t)y0 + j, x = (int64_t)t - 2 * y;
        uint8_t L = at(plane, m->width, m->height, x - 1, y);
        uint8_t U = at(plane, m->width, m->height, x, y - 1);
        uint8_t UL = at(plane, m->width, m->height, x - 1, y - 1);
        uint8_t UR = at(plane, m->width, m->height, x + 1, y - 1);
        m->pattern[j] = (uint8_t)((L == U) | (L == UL) << 1 | (U == UL) << 2 | (U == UR) << 3 |
                                  (L == UR) << 4);
        m->left[j] = L;
        uint8_t *c = m->cand[j];
        c[0] = L; c[1] = U; c[2] = UR; c[3] = UL;
        m->asked[j] = (uint8_t)(1 | (U != L) << 1 | (UR != L && UR != U) << 2 |
                                (UL != L && UL != U && UL != UR) << 3);
        m->open[j] = 1;
        m->node[j] = 1;
    }
    return n;
}

/* Add a finished step's answers to the counts. */
static void step_learn(model4 *m, size_t answers) {
    for (size_t i = 0; i < answers; i++) {
        uint32_t c = m->pend_ctx[i];
        m->total[c]++;
        m->zeros[c] += !m->pend_bit[i];
    }
    for (size_t i = 0; i < answers; i++) {
        uint32_t c = m->pend_ctx[i];
        m->p_zero[c] = probability_of_zero(m->zeros[c], m->total[c]);
    }
}

int kmc_context_decode(const uint8_t *stream, size_t len, uint32_t width, uint32_t height,
                       int k, int partial, uint8_t *out) {
    if (width == 0 || height == 0 || k < 1 || k > 256) return KMC_BAD_ARGS;
    if ((uint64_t)width * height > SIZE_MAX) return KMC_BAD_ARGS;
    size_t pixels = (size_t)width * height;
    memset(out, 0, pixels);
    model4 m;
    size_t lanes = height < (width + 1) / 2 ? height : (width + 1) / 2;
    if (lanes == 0) lanes = 1;
    if (len / 4 < lanes || (len - 4 * lanes) % 2) {
        if (!partial) return KMC_TRUNCATED;
        if (len / 4 < lanes) return KMC_OK;
        len -= 1;  /* the rest of a cut word */
    }
    if (model_init(&m, width, height, k) != KMC_OK) return KMC_NOMEM;
    uint32_t *state = malloc(lanes * sizeof *state);
    if (!state) { model_free(&m); return KMC_NOMEM; }
    int result = KMC_OK;
    for (size_t i = 0; i < lanes; i++) {
        state[i] = rans_be32(stream + 4 * i);
        if (state[i] < RANS_LOW) result = KMC_LOW_STATE;
    }
    const uint8_t *words = stream + 4 * lanes;
    size_t n_words = (len - 4 * lanes) / 2, ptr = 0;
    const uint32_t bits = m.bits;
    for (uint64_t t = 0; t < m.n_steps && result == KMC_OK; t++) {
        uint32_t y0;
        uint32_t n = step_setup(&m, out, t, &y0);
        size_t answers = 0;
        int out_of_words = 0;
        uint32_t still_open = n;
        /* Questions by number, then by row: the order the words were written in. */
        for (uint32_t q = 0; q < 4 + bits && still_open && !out_of_words; q++) {
            for (uint32_t j = 0; j < n; j++) {
                if (!m.open[j]) continue;
                uint32_t ctx;
                if (q < 4) {
                    if (!(m.asked[j] >> q & 1)) continue;
                    ctx = m.pattern[j] * 4u + q;
                } else {
                    ctx = FLAG_CONTEXTS + (m.node[j] << bits) + m.left[j];
                }
                uint32_t row = y0 + j, lane = row % (uint32_t)lanes;
                /* Without a branch on the answer: most answers are only stored, for the
                 * step's learning, and the one test below is cheaper than a guess. */
                uint32_t x = state[lane], bit = rans_take_data(&x, m.p_zero[ctx]);
                if (!rans_refill(&x, words, n_words, &ptr)) { out_of_words = 1; break; }
                state[lane] = x;
                m.pend_ctx[answers] = ctx;
                m.pend_bit[answers++] = (uint8_t)bit;
                if (q < 4) {
                    if (bit) {
                        m.value[j] = m.cand[j][q];
                        m.open[j] = 0;
                        still_open--;
                    }
                } else {
                    m.node[j] = m.node[j] << 1 | bit;
                }
            }
        }
        if (out_of_words) {
            if (!partial) { result = KMC_TRUNCATED; break; }
            /* Rows whose last pixel came before step t are complete. */
            uint64_t done = t + 2 > width ? (t + 2 - width) / 2 : 0;
            memset(out + (size_t)done * width, 0, pixels - (size_t)done * width);
            goto finish;
        }
        int too_big = 0;
        for (uint32_t j = 0; j < n; j++) {
            uint32_t v = m.open[j] ? m.node[j] - (1u << bits) : m.value[j];
            if (v >= (uint32_t)k) too_big = 1;
            uint32_t row = y0 + j;
            out[(size_t)row * width + (size_t)(t - 2 * (uint64_t)row)] = (uint8_t)v;
        }
        if (too_big) { result = KMC_INDEX_K; break; }
        step_learn(&m, answers);
    }
    if (result == KMC_OK) {
        if (ptr != n_words) result = KMC_EXTRA;
        else
            for (size_t i = 0; i < lanes; i++)
                if (state[i] != RANS_LOW) { result = KMC_BAD_END; break; }
    }
finish:
    free(state);
    model_free(&m);
    return result;
}

/* One step's questions in coding order: contexts, answers and rows. */
static size_t step_questions(model4 *m, const uint8_t *plane, uint64_t t) {
    uint32_t y0;
    uint32_t n = step_setup(m, plane, t, &y0);
    const uint32_t bits = m->bits;
    size_t answers = 0;
    for (uint32_t j = 0; j < n; j++) {
        uint32_t row = y0 + j;
        m->value[j] = plane[(size_t)row * m->width + (size_t)(t - 2 * (uint64_t)row)];
    }
    for (uint32_t q = 0; q < 4 + bits; q++) {
        for (uint32_t j = 0; j < n; j++) {
            if (!m->open[j]) continue;
            uint32_t ctx, bit;
            if (q < 4) {
                if (!(m->asked[j] >> q & 1)) continue;
                ctx = m->pattern[j] * 4u + q;
                bit = m->value[j] == m->cand[j][q];
                if (bit) m->open[j] = 0;
            } else {
                ctx = FLAG_CONTEXTS + (m->node[j] << bits) + m->left[j];
                bit = (uint32_t)m->value[j] >> (bits - 1 - (q - 4)) & 1;
                m->node[j] = m->node[j] << 1 | bit;
            }
            m->pend_ctx[answers] = ctx;
            m->pend_bit[answers] = (uint8_t)bit;
            m->pend_row[answers++] = y0 + j;
        }
    }
    return answers;
}

int kmc_context_encode(const uint8_t *plane, uint32_t width, uint32_t height, int k,
                       uint8_t **out, size_t *out_len) {
    if (width == 0 || height == 0 || k < 1 || k > 256) return KMC_BAD_ARGS;
    if ((uint64_t)width * height > SIZE_MAX / 16) return KMC_BAD_ARGS;
    size_t pixels = (size_t)width * height;
    for (size_t i = 0; i < pixels; i++)
        if (plane[i] >= k) return KMC_BAD_ARGS;
    model4 m;
    if (model_init(&m, width, height, k) != KMC_OK) return KMC_NOMEM;
    const size_t lanes = m.lanes;
    /* Forward: every answer's probability of 0, from the counts before its step. */
    size_t cap = pixels * 2 + 16, used = 0;
    uint16_t *p0s = malloc(cap * sizeof *p0s);
    uint64_t *offsets = malloc((m.n_steps + 1) * sizeof *offsets);
    uint32_t *state = malloc(lanes * sizeof *state);
    uint16_t *words = NULL;
    int result = KMC_NOMEM;
    if (!p0s || !offsets || !state) goto done;
    for (uint64_t t = 0; t < m.n_steps; t++) {
        offsets[t] = used;
        size_t answers = step_questions(&m, plane, t);
        if (!rans_reserve(&p0s, &cap, used, answers)) goto done;
        for (size_t i = 0; i < answers; i++) p0s[used + i] = m.p_zero[m.pend_ctx[i]];
        used += answers;
        step_learn(&m, answers);
    }
    offsets[m.n_steps] = used;
    /* Backward: rANS codes last in, first out. At most one word per answer. */
    words = malloc((used + 1) * sizeof *words);
    if (!words) goto done;
    size_t n_words = 0;
    for (size_t i = 0; i < lanes; i++) state[i] = RANS_LOW;
    for (uint64_t t = m.n_steps; t-- > 0;) {
        size_t answers = step_questions(&m, plane, t);
        const uint16_t *p = p0s + offsets[t];
        for (size_t i = answers; i-- > 0;) {
            uint32_t lane = m.pend_row[i] % (uint32_t)lanes;
            state[lane] = rans_put(state[lane], p[i], m.pend_bit[i], words, &n_words);
        }
    }
    if (!rans_finish(state, lanes, words, n_words, out, out_len)) goto done;
    result = KMC_OK;
done:
    free(p0s); free(offsets); free(state); free(words);
    model_free(&m);
    return result;
}
