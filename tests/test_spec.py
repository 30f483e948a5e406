"""The specification's worked example is a real file that this reader and writer agree on."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

import pil_kmc  # noqa: F401
from pil_kmc import codec, layout

SPEC = Path(__file__).resolve().parent.parent / "spec" / "kmc.md"


def example_bytes() -> bytes:
    text = SPEC.read_text().split("## 11. Example", 1)[1].split("```", 2)[1]
    data = bytearray()
    for line in text.splitlines():
        m = re.match(r"([0-9a-f]{4}): (.*)", line.strip())
        if m:
            assert int(m.group(1), 16) == len(data), "offsets in the dump must be contiguous"
            for token in m.group(2).split():  # hex bytes, then a comment
                if not re.fullmatch(r"[0-9a-f]{2}", token):
                    break
                data.append(int(token, 16))
    return bytes(data)


def test_worked_example_is_what_the_writer_makes():
    header = layout.Header(3, 2, 3, 2, 1, compression=layout.STORED)
    indices = np.array([[0, 1, 1], [1, 0, 0]], np.uint8)
    written = layout.build(header, bytes([255, 0, 0, 0, 0, 255]), codec.encode(indices, header))
    assert example_bytes() == written


def test_worked_example_decodes_as_described():
    im = Image.open(io.BytesIO(example_bytes()))
    assert (im.mode, im.size) == ("P", (3, 2))
    red, blue = (255, 0, 0), (0, 0, 255)
    assert np.asarray(im.convert("RGB")).reshape(-1, 3).tolist() == [
        list(c) for c in (red, blue, blue, blue, red, red)
    ]


def decode_context_as_written(stream: bytes, width: int, height: int, k: int) -> np.ndarray:
    """Section 5.5 transcribed pixel by pixel, in plain Python, as an independent reader."""
    lanes = min(height, -(-width // 2))
    state = [int.from_bytes(stream[4 * i : 4 * i + 4], "big") for i in range(lanes)]
    words = [int.from_bytes(stream[i : i + 2], "big") for i in range(4 * lanes, len(stream), 2)]
    position = 0
    bits = max(1, (k - 1).bit_length())
    flag, literal = {}, {}  # context -> [zeros, total]
    plane = [[0] * width for _ in range(height)]

    def at(x, y):
        return plane[y][x] if 0 <= x < width and 0 <= y < height else 0

    def answer(lane, table, context, pending):
        nonlocal position
        zeros, total = table.get(context, (0, 0))
        f0 = min(max((5 * zeros + 2) * 4096 // (5 * total + 4), 1), 4095)
        x = state[lane]
        slot = x % 4096
        bit = int(slot >= f0)
        x = (f0 * (x // 4096) + slot) if not bit else ((4096 - f0) * (x // 4096) + slot - f0)
        if x < 1 << 16:
            x = x * (1 << 16) + words[position]
            position += 1
        state[lane] = x
        pending.append((table, context, bit))
        return bit

    for t in range(width + 2 * height - 2):
        pixels = [(t - 2 * y, y) for y in range(height) if 0 <= t - 2 * y < width]
        pending: list = []
        open_ = {}
        for x, y in pixels:
            L, U, UL, UR = at(x - 1, y), at(x, y - 1), at(x - 1, y - 1), at(x + 1, y - 1)
            pattern = (L == U) + 2 * (L == UL) + 4 * (U == UL) + 8 * (U == UR) + 16 * (L == UR)
            open_[y] = [pattern, [L, U, UR, UL], set(), None, 1]
        for i in range(4):
            for _x, y in pixels:
                pattern, cands, seen, found, _ = open_[y]
                if found is None and cands[i] not in seen:
                    seen.add(cands[i])
                    if answer(y % lanes, flag, pattern * 4 + i, pending):
                        open_[y][3] = cands[i]
        for _ in range(bits):
            for x, y in pixels:
                if open_[y][3] is None:
                    node = open_[y][4]
                    bit = answer(y % lanes, literal, (node << bits) + at(x - 1, y), pending)
                    open_[y][4] = node * 2 + bit
        for x, y in pixels:
            found, node = open_[y][3], open_[y][4]
            plane[y][x] = found if found is not None else node - (1 << bits)
            assert plane[y][x] < k
        for table, context, bit in pending:
            zeros, total = table.get(context, (0, 0))
            table[context] = (zeros + (bit == 0), total + 1)
    assert position == len(words) and all(x == 1 << 16 for x in state)
    return np.array(plane, np.uint8)


def test_context_method_decodes_by_the_spec_text_alone():
    from pil_kmc import context

    rng = np.random.default_rng(5)
    for w, h, k in [(1, 1, 1), (7, 1, 3), (1, 6, 2), (13, 9, 100), (24, 16, 256)]:
        plane = np.kron(rng.integers(0, k, (h, w)), np.ones((2, 2), np.int64))[:h, :w]
        plane[rng.random((h, w)) < 0.3] = rng.integers(0, k)
        plane = plane.astype(np.uint8)
        assert np.array_equal(decode_context_as_written(context.encode(plane, k), w, h, k), plane)
