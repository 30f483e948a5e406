"""Design study for a faster method: what static per-strip tables would cost in bytes.

    python3 bench/static_tables.py            # every photograph and the 9.4 MP case, k = 16 and 256

Method 5 decodes about one adaptive binary answer per pixel, and about
half of its time goes to answers the processor guesses wrong
(docs/decode.md). A method that decodes a whole symbol per pixel from
fixed tables would guess less and execute less. This script estimates
what such tables would cost, without writing a coder: per pixel, within
each of method 5's strips (rows above a strip count as index 0),
the symbol of method 5's questions (L, U, UR, UL with repeats skipped, or a
literal) under method 5's 7-bit neighbour pattern, and the literal as an
index or as its distance from L modulo k, whichever is smaller; the ideal
code length of each strip under its own frequencies, plus 12 bits for every
frequency of every context the strip uses. Runs are left out. The table
compares that estimate with the default save's file.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import corpus  # noqa: E402

import pil_kmc  # noqa: E402, F401
from pil_kmc import context  # noqa: E402

SYMBOLS = 5  # L, U, UR, UL, literal
PATTERNS = 128


def neighbours(a: np.ndarray) -> tuple[np.ndarray, ...]:
    """s, L, U, UL, UR, LL, UU of every pixel, 0 outside the plane (spec 5.5)."""
    h, w = a.shape
    p = np.zeros((h + 2, w + 3), np.int32)
    p[2:, 2 : w + 2] = a
    at = lambda dy, dx: p[2 - dy : h + 2 - dy, 2 + dx : w + 2 + dx]  # noqa: E731
    return at(0, 0), at(0, -1), at(1, 0), at(1, -1), at(1, 1), at(0, -2), at(2, 0)


def ideal_bits(symbols: np.ndarray, contexts: np.ndarray, n_contexts: int, n_symbols: int):
    """Code length under each context's own frequencies, and the contexts used."""
    counts = np.bincount(contexts * n_symbols + symbols, minlength=n_contexts * n_symbols)
    counts = counts.reshape(n_contexts, n_symbols).astype(float)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    bits = -(counts * np.log2(np.where(counts > 0, share, 1))).sum()
    return bits, int((counts.sum(1) > 0).sum())


def estimate(plane: np.ndarray, k: int) -> float:
    """Bytes of a static-table coding of the plane in method 5's strips."""
    height, width = plane.shape
    rows = context.strip_rows(width, height)
    return sum(_strip_estimate(plane[y0 : y0 + rows], k) for y0 in range(0, height, rows))


def _strip_estimate(plane: np.ndarray, k: int) -> float:
    s, left, up, up_left, up_right, left2, up2 = neighbours(plane)
    pattern = (
        (left == up)
        | (left == up_left) << 1
        | (up == up_left) << 2
        | (up == up_right) << 3
        | (left == up_right) << 4
        | (left == left2) << 5
        | (up == up2) << 6
    ).astype(np.int64)
    asked = [
        np.ones(s.shape, bool),
        up != left,
        (up_right != left) & (up_right != up),
        (up_left != left) & (up_left != up) & (up_left != up_right),
    ]
    symbol = np.full(s.shape, SYMBOLS - 1)
    for i, candidate in reversed(list(enumerate([left, up, up_right, up_left]))):
        symbol = np.where(asked[i] & (s == candidate), i, symbol)
    bits, used = ideal_bits(symbol.ravel(), pattern.ravel(), PATTERNS, SYMBOLS)
    literal = symbol == SYMBOLS - 1
    values = s[literal]
    one = np.zeros(values.size, np.int64)
    distance = (values - left[literal]) % k
    literal_bits = min(ideal_bits(values, one, 1, k)[0], ideal_bits(distance, one, 1, k)[0])
    return (bits + literal_bits + 12 * (used * SYMBOLS + k)) / 8


def main() -> None:
    cases = [c for c in [corpus.big(), *corpus.select(kinds=("photo",), quiet=True)] if c]
    print("| image | k | default file (bytes) | static tables, estimate | ratio |")
    print("|---|---|---|---|---|")
    for name, im in cases:
        for k in (16, 256):
            buf = io.BytesIO()
            im.save(buf, "KMC", clusters=k)
            plane = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
            if plane.ndim != 2:
                continue
            size, est = len(buf.getvalue()), estimate(plane, k)
            print(f"| {name} | {k} | {size} | {est:.0f} | {est / size:.3f} |")


if __name__ == "__main__":
    main()
