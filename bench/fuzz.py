"""Mutation fuzzer for the KMC and .npz readers, run on demand.

    python3 bench/fuzz.py                    # 1,000,000 inputs (about 15 minutes)
    python3 bench/fuzz.py -n 20000 --seed 3  # a shorter run

Mutates small valid files (bit flips, byte edits, truncation, duplicated or
dropped spans, lying length fields, appended junk) and opens and loads each
result through Pillow. Any exception other than ``OSError`` (which includes
``UnidentifiedImageError``), ``ValueError`` or ``DecompressionBombError`` is
a bug: it is reported with the input in hex, and the exit status is 1.
Reports the inputs tried, exceptions by type, the slowest input and the
process's peak memory.
"""

from __future__ import annotations

import argparse
import collections
import io
import random
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import pil_kmc  # noqa: E402, F401

ALLOWED = (OSError, ValueError, Image.DecompressionBombError)


def seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for mode, k, comp in [
        ("RGB", 7, "xz"),
        ("L", 2, "zlib"),
        ("RGBA", 40, "bzip2"),
        ("LA", 3, "stored"),
        ("RGB", 200, "zlib"),
        ("RGB", 30, "context"),
    ]:
        im = Image.fromarray(rng.integers(0, 256, (12, 17, 3), dtype=np.uint8)).convert(mode)
        b = io.BytesIO()
        im.save(b, "KMC", clusters=k, compression=comp)
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


def mutate(data: bytes, r: random.Random) -> bytes:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="inputs to try")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    r = random.Random(args.seed)
    corpus = seeds()
    outcomes: collections.Counter[str] = collections.Counter()
    slowest = (0.0, b"")
    failures = []
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    start = time.perf_counter()
    for n in range(args.n):
        data = mutate(r.choice(corpus), r)
        t = time.perf_counter()
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
            outcomes["loaded"] += 1
        except ALLOWED as e:
            outcomes[type(e).__name__] += 1
        except Exception as e:  # noqa: BLE001 - a finding, reported below
            outcomes[f"UNEXPECTED {type(e).__name__}"] += 1
            failures.append((repr(e), data))
        elapsed = time.perf_counter() - t
        if elapsed > slowest[0]:
            slowest = (elapsed, data)
        if (n + 1) % 100_000 == 0:
            print(f"{n + 1:,} inputs, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"inputs tried: {args.n:,} (seed {args.seed}) in {time.perf_counter() - start:.0f} s")
    for name, count in outcomes.most_common():
        print(f"  {name}: {count:,}")
    print(f"slowest input: {1000 * slowest[0]:.1f} ms ({len(slowest[1])} bytes)")
    print(f"peak memory (max RSS of this process): {peak:.0f} MB")
    for message, data in failures[:5]:
        print(f"UNEXPECTED {message}: {data.hex()}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
