"""Floyd-Steinberg error diffusion as csrc/dither.c specifies it, in plain Python."""

from __future__ import annotations


def _rounded(e: int) -> int:
    q = (abs(e) + 2048) // 4096
    return q if e >= 0 else -q


def _seen(colour) -> list:
    """With alpha: each colour channel times alpha, and alpha times 255."""
    if len(colour) not in (2, 4):
        return list(colour)
    *rgb, a = colour
    return [c * a for c in rgb] + [255 * a]


def _nearest(want: list, entries: list, among) -> int:
    """The entry (as seen) nearest ``want`` (as seen) among ``among``, ties to the lower index."""

    def distance(j: int) -> int:
        return sum((w - p) ** 2 for w, p in zip(want, entries[j], strict=True))

    return min(among, key=lambda j: (distance(j), j))


def dither(pixels: list, width: int, height: int, channels: int, palette: list, strength: int):
    """Indices (rows of ints) of ``pixels`` (rows of channel tuples) into ``palette``."""
    alpha = channels in (2, 4)
    top = 255 * 255 if alpha else 255
    entries = [_seen(entry) for entry in palette]
    clear = [j for j, entry in enumerate(palette) if alpha and entry[-1] == 0]
    visible = [j for j, entry in enumerate(palette) if alpha and entry[-1] > 0]
    both = bool(clear and visible)
    every = range(len(palette))
    here = [[0] * channels for _ in range(width + 2)]
    out = [[0] * width for _ in range(height)]
    for y in range(height):
        below = [[0] * channels for _ in range(width + 2)]
        ltr = y % 2 == 0
        step = 1 if ltr else -1
        for i in range(width):
            x = i if ltr else width - 1 - i
            px = pixels[y][x]
            own = _seen(px)
            e = here[x + 1]
            want = [0] * channels
            for c in reversed(range(channels)):  # alpha first: colour as seen is at most it
                high = want[-1] if alpha and c < channels - 1 else top
                want[c] = min(high, max(0, own[c] + _rounded(e[c])))
            if alpha and px[-1] == 0:  # invisible: the first transparent entry, no error
                out[y][x] = clear[0] if clear else _nearest(own, entries, every)
                continue
            if both:
                best = _nearest(own, entries, every)
                if palette[best][-1] == 0:  # as good as invisible, as without dithering
                    out[y][x] = best
                    continue
                best = _nearest(want, entries, visible)
            else:
                best = _nearest(want, entries, every)
            out[y][x] = best
            for c in range(channels):
                q = (want[c] - entries[best][c]) * strength
                here[x + 1 + step][c] += 7 * q
                below[x + 1 - step][c] += 3 * q
                below[x + 1][c] += 5 * q
                below[x + 1 + step][c] += q
        here = below
    return out
