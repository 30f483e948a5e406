/* Floyd-Steinberg error diffusion onto a palette, any of 1 to 4 channels.
 *
 * Serpentine order (left to right on even rows, right to left on odd ones),
 * the classic weights 7, 3, 5, 1 (sixteenths) scaled by `strength` (0 to
 * 256 for 0 to 1), errors kept in integers (1/4096 of a unit) so that every
 * machine gives the same indices. The nearest entry is by squared distance,
 * ties to the lower index.
 *
 * With alpha (the last channel) every colour is taken as seen, premultiplied:
 * each colour channel times alpha, and alpha times 255 (pil_kmc.exact.as_seen,
 * the plain lookup's measure). The error is measured and spread in those
 * units, so a faint pixel passes on only the little of its colour that shows.
 * Dithering never changes which pixels are fully transparent, when the
 * palette has entries of both kinds: a fully transparent pixel takes the
 * first fully transparent entry; a pixel whose own colour is nearest a fully
 * transparent entry takes that entry, as it would without dithering; every
 * other pixel takes the entry nearest its dithered colour among those that
 * are not fully transparent. The error carried in alpha would otherwise
 * punch holes into half-transparent areas, or fill faint ones. Pixels that
 * end up invisible pass no error on.
 */
#include <stdlib.h>
#include <string.h>

#include "kmc_codec.h"

static int32_t clamp(int32_t v, int32_t high) { return v < 0 ? 0 : v > high ? high : v; }

/* An error in 1/4096 units, rounded to whole units, halves away from zero. */
static int32_t rounded(int32_t e) { return (e + (e < 0 ? -2048 : 2048)) / 4096; }

/* A colour as the distances see it: itself, or with alpha premultiplied. */
static void seen(const uint8_t *colour, int channels, int alpha, int32_t *out) {
    for (int c = 0; c < channels; c++) out[c] = colour[c];
    if (alpha) {
        for (int c = 0; c < channels - 1; c++) out[c] *= colour[channels - 1];
        out[channels - 1] *= 255;
    }
}

/* The entry nearest `want`, among all entries or (`visible_only`) those with alpha > 0. */
static int nearest(const int32_t *want, const int32_t *entries, const uint8_t *palette, int k,
                   int channels, int visible_only) {
    int best = 0;
    int64_t best_d = -1;
    for (int j = 0; j < k; j++) {
        if (visible_only && palette[(size_t)j * (size_t)channels + (size_t)channels - 1] == 0)
            continue;
        const int32_t *p = entries + (size_t)j * (size_t)channels;
        int64_t d = 0;
        for (int c = 0; c < channels; c++) {
            int64_t diff = (int64_t)want[c] - p[c];
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
    const int32_t top = alpha ? 255 * 255 : 255; /* the largest value in seen units */
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
    /* The entries as seen, and two rows of accumulated error with a spare
     * column on each side. */
    int32_t entries[256 * 4];
    for (int j = 0; j < k; j++)
        seen(palette + (size_t)j * (size_t)channels, channels, alpha,
             entries + (size_t)j * (size_t)channels);
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
            int32_t own[4], want[4];
            seen(px, channels, alpha, own);
            for (int c = channels - 1; c >= 0; c--) {
                /* Alpha first: a premultiplied colour cannot exceed its alpha. */
                int32_t high = alpha && c < channels - 1 ? want[channels - 1] : top;
                want[c] = clamp(own[c] + rounded(e[c]), high);
            }
            int best;
            if (alpha && px[channels - 1] == 0) {
                best = clear >= 0 ? clear : nearest(own, entries, palette, k, channels, 0);
                out[(size_t)y * width + x] = (uint8_t)best;
                continue; /* invisible: no error passed on */
            }
            if (both) {
                best = nearest(own, entries, palette, k, channels, 0);
                if (palette[(size_t)best * (size_t)channels + (size_t)channels - 1] == 0) {
                    out[(size_t)y * width + x] = (uint8_t)best;
                    continue; /* as good as invisible, as without dithering */
                }
                best = nearest(want, entries, palette, k, channels, 1);
            } else {
                best = nearest(want, entries, palette, k, channels, 0);
            }
            out[(size_t)y * width + x] = (uint8_t)best;
            const int32_t *chosen = entries + (size_t)best * (size_t)channels;
            /* Forward is the direction of travel along the row. */
            int32_t *ahead = e + (ltr ? channels : -channels);
            int32_t *b = below + ((size_t)x + 1) * (size_t)channels;
            int32_t *b_ahead = b + (ltr ? channels : -channels);
            int32_t *b_behind = b - (ltr ? channels : -channels);
            for (int c = 0; c < channels; c++) {
                /* w/16 of the error times strength/256 is w * q in 1/4096 units. */
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
