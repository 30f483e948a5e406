"""Fuzzer for the KMC and .npz readers, run on demand.

    python3 bench/fuzz.py                        # 1,000,000 inputs, both modes
    python3 bench/fuzz.py -n 20000 --seed 3      # a shorter run
    python3 bench/fuzz.py --mode bytes           # the byte-level mutator alone

Two mutators, alternating by default:

- ``bytes``: bit flips, byte edits, truncation, duplicated or dropped spans,
  lying length fields and appended junk, anywhere in the file (so most
  inputs fail their CRC).
- ``structure``: the file is cut into chunks, one or more chunks are
  mutated (their data edited, header fields set to edge values, chunks
  dropped, duplicated, moved or split, ancillary chunks valid and malformed
  inserted, floods of up to 6,000 chunks, index streams re-cut into many
  concatenated or empty xz streams or a second zlib/bzip2 stream), and every
  CRC is recomputed, so the reader's checks past the CRC are reached.

Seeds cover every compression method (0 to 6), every colour model,
metadata, and shapes from 1 x N and N x 1 to square; ``context`` seeds stay
small (at most 24 x 24 or 1 x 200), as a thin ``context`` plane is slow to
decode without the compiled codec. Each input is opened and loaded through
Pillow, a quarter of them with ``ImageFile.LOAD_TRUNCATED_IMAGES``, and
some through ``verify()`` or ``ImageFile.Parser``. The parser gets each
input in at most 16 pieces: ``Parser`` tries to open the data it holds
after every piece, whatever the format, so its cost grows with the pieces
times the bytes before the index data.

Budgets per input: 1 s of time, and 3 bytes per declared pixel plus 64 MB
of memory beyond the image that Pillow allocates itself (checked whenever
the process's peak RSS grows; see :func:`budget`). The fuzzer sets
``Image.MAX_IMAGE_PIXELS`` to 2**24 so that a header declaring more is a
``DecompressionBombError``, keeping the whole run's memory bounded. Any
exception other than ``OSError`` (which includes
``UnidentifiedImageError``), ``ValueError`` or ``DecompressionBombError``,
and any input over budget, is a finding: it is reported with the input in
hex, and the exit status is 1. Reports the inputs tried, outcomes by type,
the slowest input and the process's peak memory.
"""

from __future__ import annotations

import argparse
import bz2
import collections
import io
import lzma
import random
import resource
import struct
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import pil_kmc  # noqa: E402, F401
from pil_kmc import layout  # noqa: E402

# DecompressionBombWarning is raised as an error here; ImageFile.Parser lets
# it through, as it does for every format.
ALLOWED = (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning)
TIME_BUDGET = 1.0
MAX_PIXELS = 1 << 24
_PAGE = resource.getpagesize()


def seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    shapes = [(12, 17), (1, 64), (64, 1), (2, 33), (24, 24), (5, 3), (1, 200), (40, 2)]
    methods = ["stored", "zlib", "xz", "bzip2", "context", "strips", "tables"]
    modes = ["RGB", "L", "RGBA", "LA"]
    for i, (h, w) in enumerate(shapes):
        for j, comp in enumerate(methods):
            mode = modes[(i + j) % 4]
            k = (2, 7, 30, 200)[(i * 3 + j) % 4]
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            im = Image.fromarray(pixels).convert(mode)
            b = io.BytesIO()
            im.save(b, "KMC", clusters=k, compression=comp)
            out.append(b.getvalue())
    big = Image.fromarray(rng.integers(0, 256, (128, 96, 3), dtype=np.uint8))
    b = io.BytesIO()
    big.save(b, "KMC", clusters=40)  # two xz strips
    out.append(b.getvalue())
    b = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(b, "KMCNPZ", clusters=9)
    out.append(b.getvalue())
    exif = Image.Exif()
    exif[0x0112] = 3
    b = io.BytesIO()
    Image.new("RGB", (5, 4), "olive").save(
        b, "KMC", icc_profile=b"\0" * 300, exif=exif, xmp=b"<x/>", dpi=(96, 96), text={"a": "b"}
    )
    out.append(b.getvalue())
    return out


def mutate_bytes(data: bytes, r: random.Random) -> bytes:
    d = bytearray(data)
    for _ in range(r.choice((1, 1, 1, 2, 3, 5))):
        op = r.randrange(7)
        if not d:
            break
        i = r.randrange(len(d))
        if op == 0:
            d[i] ^= 1 << r.randrange(8)
        elif op == 1:
            d[i] = r.randrange(256)
        elif op == 2:
            del d[i:]
        elif op == 3:
            j = min(len(d), i + r.randrange(1, 64))
            d[i:i] = d[i:j]
        elif op == 4:
            del d[i : i + r.randrange(1, 32)]
        elif op == 5:
            d[i : i + 4] = r.choice(
                (b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\0\0\0\0", r.randbytes(4))
            )
        else:
            d += r.randbytes(r.randrange(1, 16))
    return bytes(d)


def chunks_of(data: bytes) -> list[list] | None:
    """[type, data] of every chunk of a well-framed file, or None."""
    if not data.startswith(layout.SIGNATURE):
        return None
    out, pos = [], len(layout.SIGNATURE)
    while pos + 12 <= len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        out.append([data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]])
        pos += 12 + n
    return out


def frame(chunks: list[list]) -> bytes:
    """Chunks back into a file, every CRC recomputed."""
    parts = [layout.SIGNATURE]
    for kind, data in chunks:
        crc = zlib.crc32(data, zlib.crc32(kind))
        parts.append(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc))
    return b"".join(parts)


EDGE = (0, 1, 2, 3, 7, 8, 255, 256, 257, 4096, 65535, 1 << 20, 2**31 - 1, 2**32 - 1)


def _ancillary(r: random.Random) -> list:
    kind = r.choice((b"tEXt", b"iCCP", b"eXIf", b"xMPp", b"pHYs", b"zzZz", b"qqQq"))
    data = r.choice(
        (
            b"",
            b"k\0v",
            b"\xff\0\xfe",
            b"dpi\0" + str(r.randrange(1000)).encode(),
            b"icc_profile\0x",
            zlib.compress(r.randbytes(r.randrange(40))),
            b"II*\0" + r.randbytes(8),
            b"MM\0*",
            struct.pack(">IIB", r.choice(EDGE), r.choice(EDGE), r.randrange(3)),
            r.randbytes(r.randrange(64)),
        )
    )
    return [kind, data]


def _restream(stream: bytes, method: int, r: random.Random) -> bytes:
    """The index stream re-cut into other stream sequences of its method."""
    if method == layout.XZ:
        try:
            plain = lzma.decompress(stream)
        except lzma.LZMAError:
            return stream
        empty = lzma.compress(b"", format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE)
        cuts = sorted(r.sample(range(len(plain) + 1), min(len(plain) + 1, r.randrange(1, 40))))
        pieces = [plain[a:b] for a, b in zip([0, *cuts], [*cuts, len(plain)], strict=True)]
        streams = [lzma.compress(p, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE) for p in pieces]
        if r.random() < 0.5:
            streams = [
                s for s, p in zip(streams, pieces, strict=True) if p
            ]  # a valid concatenation
        if r.random() < 0.3:
            streams.insert(r.randrange(len(streams) + 1), empty * r.randrange(1, 2000))
        return b"".join(streams)
    if method == layout.ZLIB:
        return stream + zlib.compress(r.randbytes(r.randrange(8)))
    if method == layout.BZIP2:
        return stream + bz2.compress(r.randbytes(r.randrange(8)))
    return stream + r.randbytes(r.randrange(1, 8))


def mutate_structure(data: bytes, r: random.Random) -> bytes:
    chunks = chunks_of(data)
    if not chunks:
        return mutate_bytes(data, r)
    for _ in range(r.choice((1, 1, 2, 3))):
        op = r.randrange(10)
        i = r.randrange(len(chunks))
        kind, body = chunks[i]
        if op == 0 and body:  # edit a chunk's data
            d = bytearray(body)
            for _ in range(r.randrange(1, 4)):
                j = r.randrange(len(d))
                d[j] = r.randrange(256) if r.random() < 0.5 else d[j] ^ (1 << r.randrange(8))
            chunks[i][1] = bytes(d)
        elif op == 1 and chunks[0][0] == b"KHDR" and len(chunks[0][1]) == 16:  # header fields
            h = bytearray(chunks[0][1])
            field = r.choice(
                ((0, 1), (1, 1), (2, 4), (6, 4), (10, 1), (11, 2), (13, 1), (14, 1), (15, 1))
            )
            at, size = field
            value = r.choice(EDGE) if r.random() < 0.6 else r.randrange(1 << (8 * size))
            if field == (15, 1):
                value = r.randrange(7)
            h[at : at + size] = (value % (1 << (8 * size))).to_bytes(size, "big")
            chunks[0][1] = bytes(h)
        elif op == 2:
            del chunks[i]
        elif op == 3:
            chunks.insert(r.randrange(len(chunks) + 1), list(chunks[i]))
        elif op == 4:
            j = r.randrange(len(chunks))
            chunks[i], chunks[j] = chunks[j], chunks[i]
        elif op == 5:  # a valid or malformed ancillary chunk anywhere
            chunks.insert(r.randrange(1, len(chunks) + 1), _ancillary(r))
        elif op == 6:  # a flood of chunks
            flood = r.choice(([b"tEXt", b""], [b"zzZz", b""], [b"KIDX", b""], _ancillary(r)))
            count = r.choice((10, 100, 1000, 4096, 6000))
            if flood[0] == b"tEXt" and not flood[1]:
                block = [[b"tEXt", b"k%d\0" % n] for n in range(count)]
            else:
                block = [list(flood) for _ in range(count)]
            at = r.randrange(1, len(chunks) + 1)
            chunks[at:at] = block
        elif op == 7 and kind == b"KIDX" and len(body) > 1:  # split the index data
            cut = r.randrange(1, len(body))
            chunks[i : i + 1] = [[b"KIDX", body[:cut]], [b"KIDX", body[cut:]]]
        elif op == 8 and kind == b"KIDX" and chunks[0][0] == b"KHDR" and len(chunks[0][1]) == 16:
            chunks[i][1] = _restream(body, chunks[0][1][15], r)
        elif op == 9 and body:  # truncate or grow a chunk's data
            chunks[i][1] = (
                body[: r.randrange(len(body))]
                if r.random() < 0.5
                else body + r.randbytes(r.randrange(1, 32))
            )
    out = frame(chunks)
    if r.random() < 0.1:
        out = out[: r.randrange(len(out))]
    return out


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def budget(data: bytes) -> int:
    """The memory an input may take: 3 bytes per declared pixel and 64 MB.

    On top comes the image Pillow itself allocates before any decoder runs
    (1 byte a pixel for L and P, 4 for LA, and a pointer a row), which no
    reader can avoid (thin LA images are the largest of it).
    """
    if len(data) >= 32 and data[12:16] == b"KHDR":
        w, h = struct.unpack(">II", data[18:26])
        if w * h <= MAX_PIXELS:
            pillow = (4 if data[26] == layout.GRAY_ALPHA else 1) * w * h + 8 * h
            return 3 * w * h + pillow + (64 << 20)
    return 64 << 20


def run_one(data: bytes, how: int) -> None:
    ImageFile.LOAD_TRUNCATED_IMAGES = how == 1
    try:
        if how == 2:
            with Image.open(io.BytesIO(data)) as im:
                im.verify()
            return
        if how == 3:
            parser = ImageFile.Parser()
            step = max(97, len(data) // 16)
            for i in range(0, len(data), step):
                parser.feed(data[i : i + step])
            parser.close().load()
            return
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="inputs to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=("both", "bytes", "structure"), default="both")
    parser.add_argument(
        "--sanitize",
        action="store_true",
        help="instead: the compiled codec under ASan and UBSan (bench/fuzz_sanitized.py)",
    )
    args = parser.parse_args()
    if args.sanitize:
        import fuzz_sanitized

        return fuzz_sanitized.main(["-n", str(args.n), "--seed", str(args.seed)])
    r = random.Random(args.seed)
    corpus = seeds()
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    outcomes: collections.Counter[str] = collections.Counter()
    slowest = (0.0, b"")
    failures = []
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    start = time.perf_counter()
    high = peak()
    for n in range(args.n):
        structure = args.mode == "structure" or (args.mode == "both" and n % 2)
        data = (mutate_structure if structure else mutate_bytes)(r.choice(corpus), r)
        how = r.choice((0, 0, 0, 0, 1, 1, 2, 3))
        before = rss()
        t = time.perf_counter()
        try:
            run_one(data, how)
            outcomes["loaded"] += 1
        except ALLOWED as e:
            outcomes[type(e).__name__] += 1
        except Exception as e:  # noqa: BLE001 - a finding, reported below
            outcomes[f"UNEXPECTED {type(e).__name__}"] += 1
            failures.append((f"{e!r} (how={how})", data))
        elapsed = time.perf_counter() - t
        if elapsed > slowest[0]:
            slowest = (elapsed, data)
        if elapsed > TIME_BUDGET:
            outcomes["OVER TIME BUDGET"] += 1
            failures.append((f"took {elapsed:.2f} s (how={how})", data))
        now = peak()
        if now > high:
            high = now
            if now - before > budget(data):
                outcomes["OVER MEMORY BUDGET"] += 1
                failures.append((f"peak grew {(now - before) >> 20} MB", data))
        if (n + 1) % 100_000 == 0:
            print(f"{n + 1:,} inputs, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(
        f"inputs tried: {args.n:,} (seed {args.seed}, mode {args.mode}) "
        f"in {time.perf_counter() - start:.0f} s"
    )
    for name, count in outcomes.most_common():
        print(f"  {name}: {count:,}")
    print(f"slowest input: {1000 * slowest[0]:.1f} ms ({len(slowest[1])} bytes)")
    print(f"peak memory (max RSS of this process): {peak() / 2**20:.0f} MB")
    for message, data in failures[:5]:
        print(f"FINDING {message}: {data[:4096].hex()}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
