"""Floyd-Steinberg error diffusion as csrc/dither.c specifies it, in plain Python."""

from __future__ import annotations


def _rounded(e: int) -> int:
    q = (abs(e) + 2048) // 4096
    return q if e >= 0 else -q


def dither(pixels: list, width: int, height: int, channels: int, palette: list, strength: int):
    """Indices (rows of ints) of ``pixels`` (rows of channel tuples) into ``palette``."""
    alpha = channels in (2, 4)
    clear = [j for j, entry in enumerate(palette) if alpha and entry[-1] == 0]
    visible = [j for j, entry in enumerate(palette) if not alpha or entry[-1] > 0]
    here = [[0] * channels for _ in range(width + 2)]
    out = [[0] * width for _ in range(height)]
    for y in range(height):
        below = [[0] * channels for _ in range(width + 2)]
        ltr = y % 2 == 0
        step = 1 if ltr else -1
        for i in range(width):
            x = i if ltr else width - 1 - i
            px = pixels[y][x]
            transparent = alpha and px[-1] == 0
            e = here[x + 1]
            want = [
                px[c] if transparent else min(255, max(0, px[c] + _rounded(e[c])))
                for c in range(channels)
            ]
            # a transparent pixel takes the first transparent entry; a visible one the
            # nearest visible entry (all entries where the palette has none of the kind)
            if transparent and clear:
                best = clear[0]
            else:
                best = min(
                    visible if not transparent and visible else range(len(palette)),
                    key=lambda j: (
                        sum((want[c] - palette[j][c]) ** 2 for c in range(channels)),
                        j,
                    ),
                )
            out[y][x] = best
            if transparent:
                continue
            for c in range(channels):
                q = (want[c] - palette[best][c]) * strength
                here[x + 1 + step][c] += 7 * q
                below[x + 1 - step][c] += 3 * q
                below[x + 1][c] += 5 * q
                below[x + 1 + step][c] += q
        here = below
    return out
