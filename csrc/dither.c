/* Floyd-Steinberg error diffusion onto a palette, any of 1 to 4 channels.
 *
 * Serpentine order (left to right on even rows, right to left on odd ones),
 * the classic weights 7, 3, 5, 1 (sixteenths) scaled by `strength` (0 to
 * 256 for 0 to 1), errors kept in integers (1/4096 of a level) so that every
 * machine gives the same indices. The nearest entry is by squared distance,
 * with alpha between colours as seen (premultiplied), ties to the lower index.
 *
 * With alpha (the last channel), dithering never changes which pixels are
 * fully transparent, when the palette has entries of both kinds: a fully
 * transparent pixel takes the first fully transparent entry; a pixel whose
 * own colour is nearest a fully transparent entry takes that entry, as it
 * would without dithering; every other pixel takes the entry nearest its
 * dithered colour among those that are not fully transparent. The error
 * carried in alpha would otherwise punch holes into half-transparent areas,
 * or fill faint ones. Pixels that end up invisible pass no error on.
 */
#include <stdlib.h>
#include <string.h>

#include "kmc_codec.h"

static int clamp255(int32_t v) { return v < 0 ? 0 : v > 255 ? 255 : v; }

/* An error in 1/4096 levels, rounded to whole levels, halves away from zero. */
static int32_t rounded(int32_t e) { return (e + (e < 0 ? -2048 : 2048)) / 4096; }

/* The entry nearest `want`, among all entries or (`visible_only`) those with alpha > 0.
 * With alpha, colours are compared as seen: each colour channel times alpha,
 * and alpha times 255 (pil_kmc.exact.as_seen, the plain lookup's measure). */
static int nearest(const int *want, const uint8_t *palette, int k, int channels,
                   int visible_only) {
    const int alpha = channels == 2 || channels == 4;
    const int colour = alpha ? channels - 1 : channels;
    const int64_t wa = alpha ? want[channels - 1] : 1;
    int best = 0;
    int64_t best_d = -1;
    for (int j = 0; j < k; j++) {
        const uint8_t *p = palette + (size_t)j * (size_t)channels;
        if (visible_only && p[channels - 1] == 0) continue;
        const int64_t pa = alpha ? p[channels - 1] : 1;
        int64_t d = 0;
        for (int c = 0; c < colour; c++) {
            int64_t diff = want[c] * wa - p[c] * pa;
            d += diff * diff;
        }
        if (alpha) {
            int64_t diff = 255 * (wa - pa);
            d += diff * diff;
        }
        if (best_d < 0 || d < best_d) {
            best_d = d;
            best = j;
        }
    }
    return best;
}

int kmc_dither(const uint8_t *pixels, uint32_t width, uint32_t height, int channels,
               const uint8_t *palette, int k, int strength, uint8_t *out) {
    if (channels < 1 || channels > 4 || k < 1 || k > 256 || strength < 0 || strength > 256)
        return KMC_BAD_ARGS;
    const int alpha = channels == 2 || channels == 4;
    /* The first fully transparent entry, and whether the palette has both kinds. */
    int clear = -1, any_visible = 0;
    for (int j = 0; alpha && j < k; j++) {
        if (palette[(size_t)j * (size_t)channels + (size_t)channels - 1] == 0) {
            if (clear < 0) clear = j;
        } else {
            any_visible = 1;
        }
    }
    const int both = clear >= 0 && any_visible;
    /* Two rows of accumulated error, with a spare column on each side. */
    size_t stride = ((size_t)width + 2) * (size_t)channels;
    int32_t *err = calloc(2 * stride, sizeof *err);
    if (!err) return KMC_NOMEM;
    for (uint32_t y = 0; y < height; y++) {
        int32_t *here = err + (y % 2) * stride, *below = err + ((y + 1) % 2) * stride;
        memset(below, 0, stride * sizeof *below);
        const int ltr = y % 2 == 0;
        for (uint32_t i = 0; i < width; i++) {
            uint32_t x = ltr ? i : width - 1 - i;
            const uint8_t *px = pixels + ((size_t)y * width + x) * (size_t)channels;
            int32_t *e = here + ((size_t)x + 1) * (size_t)channels;
            int own[4], want[4];
            for (int c = 0; c < channels; c++) {
                own[c] = px[c];
                want[c] = clamp255(px[c] + rounded(e[c]));
            }
            int best;
            if (alpha && px[channels - 1] == 0) {
                best = clear >= 0 ? clear : nearest(own, palette, k, channels, 0);
                out[(size_t)y * width + x] = (uint8_t)best;
                continue; /* invisible: no error passed on */
            }
            if (both) {
                best = nearest(own, palette, k, channels, 0);
                if (palette[(size_t)best * (size_t)channels + (size_t)channels - 1] == 0) {
                    out[(size_t)y * width + x] = (uint8_t)best;
                    continue; /* as good as invisible, as without dithering */
                }
                best = nearest(want, palette, k, channels, 1);
            } else {
                best = nearest(want, palette, k, channels, 0);
            }
            out[(size_t)y * width + x] = (uint8_t)best;
            const uint8_t *chosen = palette + (size_t)best * (size_t)channels;
            /* Forward is the direction of travel along the row. */
            int32_t *ahead = e + (ltr ? channels : -channels);
            int32_t *b = below + ((size_t)x + 1) * (size_t)channels;
            int32_t *b_ahead = b + (ltr ? channels : -channels);
            int32_t *b_behind = b - (ltr ? channels : -channels);
            for (int c = 0; c < channels; c++) {
                /* w/16 of the error times strength/256 is w * q in 1/4096 levels. */
                int32_t q = (want[c] - chosen[c]) * strength;
                ahead[c] += 7 * q;
                b_behind[c] += 3 * q;
                b[c] += 5 * q;
                b_ahead[c] += q;
            }
        }
    }
    free(err);
    return KMC_OK;
}
