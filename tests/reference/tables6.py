"""Compression method 6, ``tables``, transcribed from spec/kmc.md section 5.7 in plain Python.

An independent reader and writer for the tests: slow, literal, and sharing
no code with the compiled one. The reader rejects every invalid stream that
section 5.7 (and the strip table it takes from method 5) names, with a
``StreamError``; it has no mode for truncated files. The writer is simple
but valid, with options that reach reader features a clever writer may
never use (a table of its own for every context of every strip, literal
groups of one, two or all values of L, any precision, runs and literals
wherever they are allowed).

Readings of the spec where it leaves room:

- A strip's tables of ``H = 0`` bytes ("may be 0") mean that the strip has
  no table of its own; a bit string of ``H > 0`` bytes is read as the spec
  says. The writer writes ``H = 0`` when a strip has no table of its own.
- A literal table's ``start(d)`` sums the frequencies of the values below d
  (0, 1, ..., k - 1), not of those before d in the order the table is
  written in (1, k - 1, 2, k - 2, ...).
- The writer's literal precision is ``max(precision, the smallest p that
  gives each distinct d of the group a frequency of at least 1)``.
"""

from __future__ import annotations

RUN = 8  # pixels in a run (symbol 5)
CONTEXTS = 512  # P + 128 F + 256 R
SYMBOLS = 6
LITERAL = 4
RUN_SYMBOL = 5
PIXEL_PRECISION = 7  # pixel tables sum to 128
STATE_LOW = 1 << 31  # the rANS state stays in [2**31, 2**63)
STATE_HIGH = 1 << 63
MAX_GAMMA_ZEROS = 10  # every number is at most 1,024
MIN_STRIP_PIXELS = 65536

_Table = list[int]  # frequencies in symbol order
_Group = tuple[list[int], int]  # a literal table: frequencies of d = 0 .. k - 1, precision p


class StreamError(Exception):
    """The stream breaks a rule of section 5.7."""


def _u32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "big")


def _literal_order(k: int) -> list[int]:
    """The order of d: 1, k - 1, 2, k - 2, 3, ... (each of 1 to k - 1 once)."""
    order = []
    low, high = 1, k - 1
    while low <= high:
        order.append(low)
        if high != low:
            order.append(high)
        low, high = low + 1, high - 1
    return order


class _Place:
    """The neighbours and context of position x of a row (section 5.7, "Symbols and contexts")."""

    def __init__(
        self, row: list[int], up: list[int], up2: list[int], x: int, width: int, after_run: bool
    ):
        def above(c: int) -> int:
            return up[c] if 0 <= c < width else 0

        self.L = row[x - 1] if x >= 1 else 0
        self.LL = row[x - 2] if x >= 2 else 0
        self.U, self.UL, self.UR = above(x), above(x - 1), above(x + 1)
        self.UU = up2[x]
        self.P = (
            (self.L == self.U)
            + 2 * (self.L == self.UL)
            + 4 * (self.U == self.UL)
            + 8 * (self.U == self.UR)
            + 16 * (self.L == self.UR)
            + 32 * (self.L == self.LL)
            + 64 * (self.U == self.UU)
        )
        self.F = int(all(above(c) == above(x - 1) for c in range(x - 1, x + RUN + 1)))
        self.R = int(after_run)
        self.context = self.P + 128 * self.F + 256 * self.R
        self.run_fits = x + RUN <= width


# --- Reading -------------------------------------------------------------------------------


class _BitReader:
    """A bit string (section 5.7, "Bit strings"), most significant bit first."""

    def __init__(self, data: bytes, what: str):
        self.data = data
        self.position = 0
        self.what = what

    def bit(self) -> int:
        if self.position >= 8 * len(self.data):
            raise StreamError(f"{self.what} read past their end")
        byte = self.data[self.position // 8]
        value = (byte >> (7 - self.position % 8)) & 1
        self.position += 1
        return value

    def gamma(self) -> int:
        n = 0
        while self.bit() == 0:
            n += 1
            if n > MAX_GAMMA_ZEROS:
                raise StreamError(f"gamma code in {self.what} over 1024")
        v = 1
        for _ in range(n):
            v = v * 2 + self.bit()
        return v

    def end(self) -> None:
        if -(-self.position // 8) < len(self.data):
            raise StreamError(f"a whole byte left over in {self.what}")
        padding = -self.position % 8
        if padding and self.data[-1] & ((1 << padding) - 1):
            raise StreamError(f"nonzero padding bits in {self.what}")


def _read_pixel_table(bits: _BitReader) -> _Table:
    f = [bits.gamma() - 1 for _ in range(5)]
    f5 = 128 - sum(f)
    if f5 < 0:
        raise StreamError("pixel table sums over 128")
    return f + [f5]


def _read_literal_table(bits: _BitReader, k: int, p: int) -> list[int]:
    order = _literal_order(k)
    f = [0] * k
    total = 0
    place = 0  # the next position in the order
    while total < 1 << p:
        z = bits.gamma() - 1
        frequency = bits.gamma()
        place += z
        if place >= len(order):
            raise StreamError("literal pair passes the end of the order")
        total += frequency
        if total > 1 << p:
            raise StreamError("literal table sums over 2**p")
        f[order[place]] = frequency
        place += 1
    return f


def _read_image_tables(data: bytes, k: int) -> tuple[list[_Table | None], list[_Group | None]]:
    """Each context's pixel table (None if unused) and each value of L's group table."""
    bits = _BitReader(data, "image's tables")
    pixel_tables: list[_Table | None] = [None] * CONTEXTS
    for t in range(CONTEXTS):
        if bits.bit():
            pixel_tables[t] = _read_pixel_table(bits)
    group_of: list[_Group | None] = [None] * k
    L = 0
    while L < k:  # noqa: SIM300 (L is the spec's name, not a constant)
        n = bits.gamma()
        if not 1 <= n <= k - L:
            raise StreamError("literal group length outside 1 to k - L")
        group: _Group | None = None
        if bits.bit():
            p = bits.gamma() + 4
            if not 5 <= p <= 10:
                raise StreamError("literal precision outside 5 to 10")
            group = (_read_literal_table(bits, k, p), p)
        for value in range(L, L + n):
            group_of[value] = group
        L += n
    bits.end()
    return pixel_tables, group_of


class _Decoder:
    """A strip's rANS state X and its words (section 5.7, "Decoding a symbol")."""

    def __init__(self, X: int, words: list[int]):
        self.X = X
        self.words = words
        self.position = 0

    def symbol(self, f: list[int], b: int) -> int:
        slot = self.X % (1 << b)
        start = 0
        s = 0
        while not start <= slot < start + f[s]:
            start += f[s]
            s += 1
        self.X = f[s] * (self.X >> b) + slot - start
        if self.X < STATE_LOW:
            if self.position == len(self.words):
                raise StreamError("out of words")
            self.X = self.X * (1 << 32) + self.words[self.position]
            self.position += 1
        return s


def decode(stream: bytes, width: int, height: int, k: int) -> list[list[int]]:
    """The index plane of a ``tables`` stream, following the reader's duties of section 5.7."""
    if len(stream) < 8:
        raise StreamError("stream shorter than rows and G")
    rows = _u32(stream, 0)
    G = _u32(stream, 4)
    if not 1 <= rows <= height:
        raise StreamError("rows per strip outside 1 to height")
    S = -(-height // rows)
    if S > 1 and rows * width < MIN_STRIP_PIXELS:
        raise StreamError("strip too small")
    if G == 0:
        raise StreamError("G = 0")
    table_end = 8 + 4 * S
    if len(stream) < table_end + G:
        raise StreamError("stream shorter than its strip table and image's tables")
    lengths = [_u32(stream, 8 + 4 * i) for i in range(S)]
    if sum(lengths) != len(stream) - table_end - G:
        raise StreamError("strip lengths do not add up")
    pixel_tables, group_of = _read_image_tables(stream[table_end : table_end + G], k)
    plane: list[list[int]] = []
    offset = table_end + G
    for i, n in enumerate(lengths):
        data = stream[offset : offset + n]
        offset += n
        strip_rows = min(height, (i + 1) * rows) - i * rows
        plane += _decode_strip(data, width, strip_rows, k, pixel_tables, group_of)
    return plane


def _decode_strip(
    data: bytes,
    width: int,
    height: int,
    k: int,
    image_tables: list[_Table | None],
    group_of: list[_Group | None],
) -> list[list[int]]:
    if len(data) < 4:
        raise StreamError("strip shorter than its H")
    H = _u32(data, 0)
    if len(data) < 12 + H:
        raise StreamError("strip shorter than 12 + H")
    if (len(data) - 12 - H) % 4:
        raise StreamError("strip words not a multiple of 4 bytes")
    tables = list(image_tables)
    if H:
        bits = _BitReader(data[4 : 4 + H], "strip's tables")
        for t in range(CONTEXTS):
            if image_tables[t] is not None and bits.bit():
                tables[t] = _read_pixel_table(bits)
        bits.end()
    X = int.from_bytes(data[4 + H : 12 + H], "big")
    if not STATE_LOW <= X < STATE_HIGH:
        raise StreamError("initial state outside [2**31, 2**63)")
    words = [_u32(data, i) for i in range(12 + H, len(data), 4)]
    coder = _Decoder(X, words)

    rows: list[list[int]] = []
    for y in range(height):
        up = rows[y - 1] if y else [0] * width
        up2 = rows[y - 2] if y > 1 else [0] * width
        row: list[int] = []
        after_run = False
        while len(row) < width:
            at = _Place(row, up, up2, len(row), width, after_run)
            table = tables[at.context]
            if table is None:
                raise StreamError("context with no table")
            symbol = coder.symbol(table, PIXEL_PRECISION)
            after_run = symbol == RUN_SYMBOL
            if symbol == RUN_SYMBOL:
                if not at.run_fits:
                    raise StreamError("run does not fit")
                row += [at.L] * RUN
                continue
            if symbol == LITERAL:
                group = group_of[at.L]
                if group is None:
                    raise StreamError("literal group with no table")
                f, p = group
                d = coder.symbol(f, p)
                row.append((at.L + d) % k)
            else:
                row.append((at.L, at.U, at.UR, at.UL)[symbol])
        rows.append(row)
    if coder.position != len(words):
        raise StreamError("words left over")
    if coder.X != STATE_LOW:
        raise StreamError("state does not end at 2**31")
    return rows


# --- Writing -------------------------------------------------------------------------------


class _BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def bit(self, value: int) -> None:
        self.bits.append(value)

    def gamma(self, v: int) -> None:
        n = v.bit_length() - 1
        self.bits += [0] * n + [(v >> i) & 1 for i in range(n, -1, -1)]

    def pixel_table(self, f: _Table) -> None:
        for frequency in f[:5]:
            self.gamma(frequency + 1)

    def literal_table(self, f: list[int], k: int) -> None:
        z = 0
        for d in _literal_order(k):
            if f[d]:
                self.gamma(z + 1)
                self.gamma(f[d])
                z = 0
            else:
                z += 1

    def to_bytes(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def _normalise(counts: list[int], total: int) -> list[int]:
    """Frequencies summing to exactly ``total``, at least 1 for every count above 0."""
    whole = sum(counts)
    f = [max(1, c * total // whole) if c else 0 for c in counts]
    while sum(f) > total:  # take from the largest (the first of equals); it is above 1
        i = max(range(len(f)), key=lambda i: (f[i], -i))
        f[i] -= 1
    while sum(f) < total:  # give to the most counted (the first of equals)
        i = max(range(len(f)), key=lambda i: (counts[i], -i))
        f[i] += 1
    return f


def _symbols(rows: list[list[int]], width: int, k: int, runs: str, literals: str):
    """Yield (context, symbol, L, d) for a strip in coding order; d is None but for a literal."""
    for y, row in enumerate(rows):
        up = rows[y - 1] if y else [0] * width
        up2 = rows[y - 2] if y > 1 else [0] * width
        x = 0
        after_run = False
        while x < width:
            at = _Place(row, up, up2, x, width, after_run)
            L = at.L
            eight_are_L = at.run_fits and all(row[c] == L for c in range(x, x + RUN))
            if runs == "writer":
                run = eight_are_L and at.F == 1 and L == at.U
            else:
                run = eight_are_L and runs == "anywhere"
            if run:
                yield at.context, RUN_SYMBOL, L, None
                x += RUN
                after_run = True
                continue
            value = row[x]
            if value == L:
                symbol = 0
            elif literals == "writer" and value in (at.U, at.UR, at.UL):
                symbol = 1 + (at.U, at.UR, at.UL).index(value)
            else:
                symbol = LITERAL
            yield at.context, symbol, L, (value - L) % k if symbol == LITERAL else None
            x += 1
            after_run = False


def _group_lengths(k: int, groups: str) -> list[int]:
    if groups == "each":
        return [1] * k
    if groups == "one":
        return [k]
    return [2] * (k // 2) + [1] * (k % 2)


def _counts(coded: list[tuple[int, int, int, int | None]]) -> dict[int, list[int]]:
    counts: dict[int, list[int]] = {}
    for context, symbol, _, _ in coded:
        counts.setdefault(context, [0] * SYMBOLS)[symbol] += 1
    return counts


def encode(
    plane: list[list[int]],
    k: int,
    rows: int,
    *,
    own_tables: bool = False,
    groups: str = "each",
    precision: int = 8,
    runs: str = "writer",
    literals: str = "writer",
) -> bytes:
    """A whole ``tables`` stream of ``plane`` (rows of indices below k), ``rows`` rows per strip.

    ``own_tables``: every context a strip uses gets a table of the strip's own counts.
    ``groups``: literal groups of one value of L ("each"), all k ("one") or two ("pairs").
    ``precision``: the literal tables' p, raised where a group has more than 2**p values of d.
    ``runs``: "writer" (the spec's writer rule), "anywhere" (wherever 8 pixels of L fit), "never".
    ``literals``: "writer" (symbols 1-3 where they match) or "always" (any index but L).
    """
    height, width = len(plane), len(plane[0])
    if not 1 <= k <= 256 or any(len(r) != width or not all(0 <= v < k for v in r) for r in plane):
        raise ValueError("plane must be rows of one width of indices below k, 1 <= k <= 256")
    if not 1 <= rows <= height or (rows < height and rows * width < MIN_STRIP_PIXELS):
        raise ValueError("rows must be 1 to height, and rows * width >= 65536 with strips")
    if not 5 <= precision <= 10:
        raise ValueError("precision must be 5 to 10")
    if groups not in ("each", "one", "pairs") or runs not in ("writer", "anywhere", "never"):
        raise ValueError("groups or runs")
    if literals not in ("writer", "always"):
        raise ValueError("literals")

    strips = [plane[y : y + rows] for y in range(0, height, rows)]
    coded = [list(_symbols(strip, width, k, runs, literals)) for strip in strips]

    # The image's pixel tables, from the counts of all strips.
    image_counts = _counts([c for strip in coded for c in strip])
    image_tables = {t: _normalise(c, 128) for t, c in image_counts.items()}

    # The literal groups and their tables.
    group_of: list[_Group | None] = []
    lengths = _group_lengths(k, groups)
    literal_counts = [[0] * k for _ in lengths]
    index_of = [g for g, n in enumerate(lengths) for _ in range(n)]
    for strip in coded:
        for _, symbol, L, d in strip:
            if symbol == LITERAL:
                literal_counts[index_of[L]][d] += 1
    bits = _BitWriter()
    for t in range(CONTEXTS):
        bits.bit(int(t in image_tables))
        if t in image_tables:
            bits.pixel_table(image_tables[t])
    for n, counts in zip(lengths, literal_counts, strict=True):
        bits.gamma(n)
        distinct = sum(1 for c in counts if c)
        bits.bit(int(distinct > 0))
        group = None
        if distinct:
            p = max(precision, (distinct - 1).bit_length())
            group = (_normalise(counts, 1 << p), p)
            bits.gamma(p - 4)
            bits.literal_table(group[0], k)
        group_of += [group] * n
    image_bytes = bits.to_bytes()

    strip_data = []
    for strip in coded:
        tables = dict(image_tables)
        own = b""
        if own_tables:
            strip_bits = _BitWriter()
            strip_counts = _counts(strip)
            for t in sorted(image_tables):
                strip_bits.bit(int(t in strip_counts))
                if t in strip_counts:
                    tables[t] = _normalise(strip_counts[t], 128)
                    strip_bits.pixel_table(tables[t])
            own = strip_bits.to_bytes()
        strip_data.append(len(own).to_bytes(4, "big") + own + _code(strip, tables, group_of))

    head = rows.to_bytes(4, "big") + len(image_bytes).to_bytes(4, "big")
    head += b"".join(len(s).to_bytes(4, "big") for s in strip_data)
    return head + image_bytes + b"".join(strip_data)


def _code(
    strip: list[tuple[int, int, int, int | None]],
    tables: dict[int, _Table],
    group_of: list[_Group | None],
) -> bytes:
    """The strip's state and words (section 5.7, "Encoding")."""
    coded = []  # (frequency, start, precision) in decoding order
    for context, symbol, L, d in strip:
        f = tables[context]
        coded.append((f[symbol], sum(f[:symbol]), PIXEL_PRECISION))
        if d is not None:
            group = group_of[L]
            assert group is not None
            f, p = group
            coded.append((f[d], sum(f[:d]), p))
    X, words = STATE_LOW, []
    for f, s, b in reversed(coded):
        if X >= f * (1 << (63 - b)):  # noqa: SIM300 (X is the state)
            words.append(X % (1 << 32))
            X //= 1 << 32
        X = (X // f) * (1 << b) + X % f + s
    return X.to_bytes(8, "big") + b"".join(w.to_bytes(4, "big") for w in reversed(words))
