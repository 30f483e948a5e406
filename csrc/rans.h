/* The binary rANS coder that methods 4 and 5 share (spec/kmc.md 5.5, "coding").
 *
 * A state x is kept in [2**16, 2**32); an answer with probability p0 / 4096
 * of a 0 takes a 12-bit slot of it, and the decoder refills 16 bits at a time
 * from big-endian words. The encoder runs backwards and writes its words in
 * reverse, so this header has both directions side by side.
 */
#ifndef KMC_RANS_H
#define KMC_RANS_H

#include <stdint.h>
#include <stdlib.h>

#define PROB_BITS 12
#define PROB_ONE (1u << PROB_BITS)
#define RANS_LOW (1u << 16)

static inline uint32_t rans_be32(const uint8_t *s) {
    return (uint32_t)s[0] << 24 | (uint32_t)s[1] << 16 | (uint32_t)s[2] << 8 | s[3];
}

/* Decode one answer from *x given p0 (1 to 4095); the caller refills after. */
static inline uint32_t rans_take(uint32_t *x, uint32_t p0) {
    uint32_t slot = *x & (PROB_ONE - 1), bit = slot >= p0;
    *x = bit ? (PROB_ONE - p0) * (*x >> PROB_BITS) + slot - p0 : p0 * (*x >> PROB_BITS) + slot;
    return bit;
}

/* rans_take for an answer the caller mostly uses as data rather than branching on it
 * (method 5's literal bits, method 4's answers): the same result, computed with masks,
 * so the processor has no branch on the answer to guess. Where the caller's next steps
 * depend on the answer (method 5's flags), rans_take lets it run ahead and is faster. */
static inline uint32_t rans_take_data(uint32_t *x, uint32_t p0) {
    uint32_t slot = *x & (PROB_ONE - 1), bit = slot >= p0, mask = 0u - bit;
    *x = (p0 + (mask & (PROB_ONE - 2 * p0))) * (*x >> PROB_BITS) + slot - (mask & p0);
    return bit;
}

/* Refill *x below RANS_LOW from words[*ptr]; 0 when the words have run out. */
static inline int rans_refill(uint32_t *x, const uint8_t *words, size_t n_words, size_t *ptr) {
    if (*x >= RANS_LOW) return 1;
    if (*ptr >= n_words) return 0;
    *x = *x << 16 | (uint32_t)words[2 * *ptr] << 8 | words[2 * *ptr + 1];
    ++*ptr;
    return 1;
}

/* Encode one answer into x (backwards), pushing at most one word. */
static inline uint32_t rans_put(uint32_t x, uint32_t p0, uint32_t bit, uint16_t *words,
                                size_t *n_words) {
    uint32_t f = bit ? PROB_ONE - p0 : p0, start = bit ? p0 : 0;
    if (x >= f << (32 - PROB_BITS)) {
        words[(*n_words)++] = (uint16_t)(x & 0xFFFF);
        x >>= 16;
    }
    return ((x / f) << PROB_BITS) + x % f + start;
}

/* Make room for `more` entries after `used` in *buf (capacity *cap); 0 if out of memory. */
static inline int rans_reserve(uint16_t **buf, size_t *cap, size_t used, size_t more) {
    if (used + more <= *cap) return 1;
    size_t grown = *cap + *cap / 2 + more;
    uint16_t *bigger = realloc(*buf, grown * sizeof *bigger);
    if (!bigger) return 0;
    *buf = bigger;
    *cap = grown;
    return 1;
}

/* The final states (big-endian u32) and then the words in the order the decoder reads them:
 * a malloc'd buffer in *out, or 0 if out of memory. */
static inline int rans_finish(const uint32_t *states, size_t n_states, const uint16_t *words,
                              size_t n_words, uint8_t **out, size_t *out_len) {
    *out_len = 4 * n_states + 2 * n_words;
    *out = malloc(*out_len ? *out_len : 1);
    if (!*out) return 0;
    uint8_t *o = *out;
    for (size_t i = 0; i < n_states; i++, o += 4) {
        o[0] = (uint8_t)(states[i] >> 24);
        o[1] = (uint8_t)(states[i] >> 16);
        o[2] = (uint8_t)(states[i] >> 8);
        o[3] = (uint8_t)states[i];
    }
    for (size_t i = 0; i < n_words; i++) { /* pushed last first */
        uint16_t w = words[n_words - 1 - i];
        o[2 * i] = (uint8_t)(w >> 8);
        o[2 * i + 1] = (uint8_t)w;
    }
    return 1;
}

#endif
