"""Compression method 5, ``strips``, transcribed from spec/kmc.md section 5.6 in plain Python.

An independent reader and writer for the tests: slow, literal, and sharing
no code with the compiled one.
"""

from __future__ import annotations

RUN = 8
FLAG_CONTEXTS = 512
RUN_CONTEXT = 512
LITERAL_BASE = 514


def _bits(k: int) -> int:
    return max(1, (k - 1).bit_length())


def _literal_context(node: int, L: int, U: int, bits: int) -> int:
    if bits <= 6:
        return LITERAL_BASE + (node << 2 * bits) + (U << bits) + L
    return LITERAL_BASE + (node << bits) + L


class _Model:
    """Every context's (p, n), learning as section 5.6 says."""

    def __init__(self) -> None:
        self.state: dict[int, tuple[int, int]] = {}

    def p0(self, context: int) -> int:
        p, _ = self.state.get(context, (32768, 0))
        return max(1, p // 16)

    def learn(self, context: int, bit: int) -> None:
        p, n = self.state.get(context, (32768, 0))
        s = 65536 // (n + 2)
        p = p + ((65536 - p) * s) // 65536 if bit == 0 else p - (p * s) // 65536
        self.state[context] = (p, n + 1 if n < 62 else n)


class _Place:
    """The neighbours of the pixel at column x of a row (section 5.6, "Neighbours")."""

    def __init__(self, row: list[int], up: list[int], up2: list[int], x: int, width: int):
        def above(c: int) -> int:
            return up[c] if 0 <= c < width else 0

        self.L = row[x - 1] if x >= 1 else 0
        self.LL = row[x - 2] if x >= 2 else 0
        self.U, self.UL, self.UR = above(x), above(x - 1), above(x + 1)
        self.candidates = (self.L, self.U, self.UR, self.UL)
        self.pattern = (
            (self.L == self.U)
            + 2 * (self.L == self.UL)
            + 4 * (self.U == self.UL)
            + 8 * (self.U == self.UR)
            + 16 * (self.L == self.UR)
            + 32 * (self.L == self.LL)
            + 64 * (up2[x] == self.U)
        )
        # Section 5.6, step 1: where a run question may be asked (unless barred).
        self.run_possible = (
            x + RUN <= width
            and self.L == self.U == self.UL == self.UR
            and all(above(c) == self.L for c in range(x - 1, x + RUN + 1))
        )
        self.run_context = RUN_CONTEXT + (self.L == self.LL)


def _questions(rows: list[list[int]], width: int, k: int):
    """Yield (context, answer) for a strip's plane, in coding order, as the writer asks them."""
    bits = _bits(k)
    for y, row in enumerate(rows):
        up = rows[y - 1] if y else [0] * width
        up2 = rows[y - 2] if y > 1 else [0] * width

        barred_before = 0
        x = 0
        while x < width:
            s = row[x]
            at = _Place(row, up, up2, x, width)
            L = at.L
            if x >= barred_before and at.run_possible:
                run = all(row[c] == L for c in range(x, x + RUN))
                yield at.run_context, int(run)
                if run:
                    x += RUN
                    continue
                barred_before = x + RUN
            pattern, U = at.pattern, at.U
            found = False
            seen: list[int] = []
            for i, c in enumerate(at.candidates):
                if c in seen:
                    continue
                seen.append(c)
                yield pattern * 4 + i, int(s == c)
                if s == c:
                    found = True
                    break
            if not found:
                node = 1
                for j in range(bits):
                    b = (s >> (bits - 1 - j)) & 1
                    yield _literal_context(node, L, U, bits), b
                    node = node * 2 + b
            x += 1


def encode_strip(rows: list[list[int]], width: int, k: int) -> bytes:
    model = _Model()
    coded = []
    for context, bit in _questions(rows, width, k):
        coded.append((model.p0(context), bit))
        model.learn(context, bit)
    x, words = 1 << 16, []
    for p0, bit in reversed(coded):
        f, start = (4096 - p0, p0) if bit else (p0, 0)
        if x >= f << 20:
            words.append(x & 0xFFFF)
            x >>= 16
        x = (x // f) * 4096 + x % f + start
    return x.to_bytes(4, "big") + b"".join(w.to_bytes(2, "big") for w in reversed(words))


def encode(plane: list[list[int]], k: int, rows: int) -> bytes:
    """A whole stream: the strip table, then each strip."""
    height, width = len(plane), len(plane[0])
    strips = [encode_strip(plane[y : y + rows], width, k) for y in range(0, height, rows)]
    table = rows.to_bytes(4, "big") + b"".join(len(s).to_bytes(4, "big") for s in strips)
    return table + b"".join(strips)


class StreamError(Exception):
    """The stream breaks a rule of section 5.6."""


def decode(stream: bytes, width: int, height: int, k: int) -> list[list[int]]:
    """The index plane of a ``strips`` stream, following the reader's duties of section 5.6."""
    if len(stream) < 4:
        raise StreamError("truncated")
    rows = int.from_bytes(stream[:4], "big")
    if not 1 <= rows <= height:
        raise StreamError("rows per strip")
    count = -(-height // rows)
    if count > 1 and rows * width < 65536:
        raise StreamError("strip too small")
    if len(stream) < 4 + 4 * count:
        raise StreamError("truncated")
    lengths = [int.from_bytes(stream[4 + 4 * i : 8 + 4 * i], "big") for i in range(count)]
    if any(n < 4 or n % 2 for n in lengths):
        raise StreamError("strip length")
    if sum(lengths) != len(stream) - 4 - 4 * count:
        raise StreamError("strip lengths do not add up")
    plane: list[list[int]] = []
    offset = 4 + 4 * count
    bits = _bits(k)
    for i, n in enumerate(lengths):
        data = stream[offset : offset + n]
        offset += n
        strip_rows = min(height, (i + 1) * rows) - i * rows
        plane += _decode_strip(data, width, strip_rows, k, bits)
    return plane


def _decode_strip(data: bytes, width: int, height: int, k: int, bits: int) -> list[list[int]]:
    x = int.from_bytes(data[:4], "big")
    if x < 1 << 16:
        raise StreamError("state below 2**16")
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(4, len(data), 2)]
    position = 0
    model = _Model()

    def answer(context: int) -> int:
        nonlocal x, position
        f0 = model.p0(context)
        slot = x % 4096
        if slot < f0:
            bit, x = 0, f0 * (x // 4096) + slot
        else:
            bit, x = 1, (4096 - f0) * (x // 4096) + slot - f0
        if x < 1 << 16:
            if position == len(words):
                raise StreamError("out of words")
            x = x * 65536 + words[position]
            position += 1
        model.learn(context, bit)
        return bit

    rows: list[list[int]] = []
    for y in range(height):
        up = rows[y - 1] if y else [0] * width
        up2 = rows[y - 2] if y > 1 else [0] * width
        row: list[int] = []

        barred_before = 0
        while len(row) < width:
            xpos = len(row)
            at = _Place(row, up, up2, xpos, width)
            L, U, pattern = at.L, at.U, at.pattern
            if xpos >= barred_before and at.run_possible:
                if answer(at.run_context):
                    row += [L] * RUN
                    continue
                barred_before = xpos + RUN
            value = None
            seen: list[int] = []
            for i, c in enumerate(at.candidates):
                if c in seen:
                    continue
                seen.append(c)
                if answer(pattern * 4 + i):
                    value = c
                    break
            if value is None:
                node = 1
                for _ in range(bits):
                    node = node * 2 + answer(_literal_context(node, L, U, bits))
                value = node - (1 << bits)
                if value >= k:
                    raise StreamError("index at or above k")
            row.append(value)
        rows.append(row)
    if position != len(words):
        raise StreamError("words left over")
    if x != 1 << 16:
        raise StreamError("state does not end at 2**16")
    return rows
