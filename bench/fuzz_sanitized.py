"""The compiled codec under AddressSanitizer and UndefinedBehaviorSanitizer, fuzzed.

    python3 bench/fuzz_sanitized.py              # 1,000,000 inputs (a few minutes)
    python3 bench/fuzz_sanitized.py -n 20000     # a shorter run
    python3 bench/fuzz.py --sanitize             # the same, from the main fuzzer
    python3 bench/fuzz_sanitized.py --no-simd    # method 6's portable C instead of SSE2

Builds ``pil_kmc._kmc`` with gcc's ``-fsanitize=address,undefined`` (every
finding fatal: ``-fno-sanitize-recover``) into a temporary copy of the
package, then, in a child process that preloads the ASan runtime, feeds the
decoders mutated streams directly, past the CRCs that would stop most of
them in a file: valid ``context`` (method 4), ``strips`` (method 5) and ``tables``
(method 6) streams (the last also from the spec transcription's writer,
with every option it has) and packed rows (and the error diffusion random pixels and
palettes), mutated by bit flips, byte edits, truncation, duplicated and
dropped spans and lying strip tables, and decoded against
random header fields (width, height, k, bit depth), with and without
``partial``. A sanitizer report ends the child with a non-zero status and
the report on stderr; otherwise every input must decode or return an error
code, and the child reports the counts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]

CHILD = r"""
import random, sys, time
import numpy as np
from pil_kmc import _kmc, context

n, seed = int(sys.argv[1]), int(sys.argv[2])
sys.path.insert(0, sys.argv[3])  # bench/: the byte mutator of the main fuzzer
sys.path.append(sys.argv[4])  # the repository: the spec transcriptions in tests/reference
from tests.reference import tables6
r = random.Random(seed)
rng = np.random.default_rng(seed)

def plane(w, h, k):
    block = r.randrange(1, 9)
    coarse = rng.integers(0, k, (-(-h // block), -(-w // block)))
    p = np.kron(coarse, np.ones((block, block), np.int64))[:h, :w]
    noise = rng.random((h, w)) < r.random() * 0.3
    p[noise] = rng.integers(0, k, int(noise.sum()))
    return np.ascontiguousarray(p, dtype=np.uint8)

# Valid streams to mutate: shapes from 1 x N to square, every method.
seeds, tables_planes = [], []
for w, h in [(1, 1), (1, 40), (40, 1), (7, 5), (33, 20), (64, 64), (300, 230), (2, 300)]:
    for k in (1, 2, 5, 17, 100, 256):
        p = plane(w, h, k)
        seeds.append(("context", w, h, k, _kmc.context_encode(p, w, h, k)))
        seeds.append(("strips", w, h, k, context.encode_strips(p, k)))
        written = tables6.encode(
            p.tolist(), k, h, own_tables=r.random() < 0.5,
            groups=r.choice(["each", "one", "pairs"]), precision=r.randrange(5, 11),
            runs=r.choice(["writer", "anywhere", "never"]),
            literals=r.choice(["writer", "always"]))
        for data in (context.encode_tables(p, k), written):
            seeds.append(("tables", w, h, k, data))
            tables_planes.append((data, w, h, k, p))
        depth = next(d for d in (1, 2, 4, 8) if k <= 1 << d)
        from pil_kmc import codec
        seeds.append(("packed", w, h, k, codec.pack_rows(p, depth)))
for w, h in [(1, 1), (13, 7), (64, 40), (1, 90)]:  # error diffusion: pixels and palettes
    seeds.append(("dither", w, h, 256, r.randbytes(w * h * 4 + 1024)))
big = plane(300, 600, 9)
seeds.append(("strips", 300, 600, 9, context.encode_strips(big, 9, rows=256)))
big[256:512] = rng.integers(0, 9, (256, 300))  # strips with tables of their own
seeds.append(("tables", 300, 600, 9, context.encode_tables(big, 9, rows=256)))
tables_planes.append((seeds[-1][4], 300, 600, 9, big.copy()))

from fuzz import mutate_bytes


def mutate(data):
    if data and r.random() < 0.15:  # the strip table's rows field, which framing keeps
        data = r.randrange(0, 1 << 20).to_bytes(4, "big") + data[4:]
    return mutate_bytes(data, r)

counts = {}
start = time.perf_counter()
for i in range(n):
    kind, w, h, k, data = r.choice(seeds)
    if r.random() < 0.2:  # the stream against other header fields
        w, h = max(1, w + r.randrange(-2, 3)), max(1, h + r.randrange(-2, 3))
        k = r.randrange(1, 257)
    data = mutate(data) if r.random() < 0.95 else data
    partial = r.random() < 0.3
    out = bytearray(w * h)
    if kind == "context":
        code = _kmc.context_decode(data, w, h, k, partial, out)
    elif kind in ("strips", "tables"):
        table = _kmc.strips_table if kind == "strips" else _kmc.tables_table
        decode = _kmc.strips_decode if kind == "strips" else _kmc.tables_decode
        code, _, strips = table(data, w, h, partial)
        if code == _kmc.OK:
            a = r.randrange(strips + 1)
            b = r.randrange(a, strips + 1)
            code = decode(data, w, h, k, partial, a, b, out)
    elif kind == "dither":
        channels = r.randrange(1, 5)
        pal = data[: channels * r.randrange(1, 257)]
        pal = pal[: len(pal) // channels * channels] or bytes(channels)
        pix = (data * (1 + w * h * channels // max(1, len(data))))[: w * h * channels]
        pix = pix or bytes(w * h * channels)
        _kmc.dither(pix, w, h, channels, pal, r.randrange(257), out)
        code = _kmc.OK
    else:
        depth = r.choice((1, 2, 4, 8))
        size = (w * depth + 7) // 8 * h
        data = (data + bytes(size))[:size]
        code = _kmc.unpack_rows(data, w, h, depth, k, out)
    counts[(kind, code)] = counts.get((kind, code), 0) + 1
    if code == _kmc.OK and kind in ("context", "strips", "tables"):
        assert max(out, default=0) < k, (kind, w, h, k)
    if (i + 1) % 200_000 == 0:
        print(f"{i + 1:,} inputs, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
for p in (plane(40, 30, 200), plane(1, 50, 3), plane(50, 1, 256)):
    h, w = p.shape  # the encoders too, on valid planes
    stream = _kmc.context_encode(p, w, h, 256)
    assert _kmc.context_decode(stream, w, h, 256, False, bytearray(w * h)) == 0
# Unmutated, every tables seed decodes to its plane (under --no-simd, the portable C).
for data, w, h, k, p in tables_planes:
    assert np.array_equal(context.decode_tables(data, w, h, k), p), (w, h, k)
names = {v: k for k, v in vars(_kmc).items() if isinstance(v, int) and k.isupper()}
print(f"inputs: {n:,} (seed {seed}) in {time.perf_counter() - start:.0f} s, no sanitizer report")
for (kind, code), count in sorted(counts.items()):
    print(f"  {kind}: {names.get(code, code)}: {count:,}")
"""


def build(workdir: Path, simd: bool = True) -> Path:
    """A copy of the package with a sanitized ``_kmc`` in it; returns the folder to import from."""
    package = workdir / "pil_kmc"
    shutil.copytree(ROOT / "pil_kmc", package, ignore=shutil.ignore_patterns("*.so", "*.pyd"))
    include = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    sources = [str(p) for p in sorted((ROOT / "csrc").glob("*.c"))]
    flags = [
        "-O1",
        "-g",
        "-shared",
        "-fPIC",
        "-std=c99",
        *SANITIZE,
        *([] if simd else ["-DKMC_NO_SIMD"]),
    ]
    cmd = ["gcc", *flags, f"-I{include}", f"-I{ROOT / 'csrc'}", *sources]
    subprocess.run([*cmd, "-o", str(package / f"_kmc{suffix}")], check=True)
    return workdir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="inputs to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-simd", action="store_true", help="build method 6 without SSE2")
    args = parser.parse_args(argv)
    runtime = subprocess.run(
        ["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        folder = build(Path(tmp), simd=not args.no_simd)
        env = {
            **os.environ,
            "PYTHONPATH": str(folder),
            "LD_PRELOAD": runtime,
            # Python's own allocations are not under test; leaks at exit are not findings.
            "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        }
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(args.n),
                str(args.seed),
                str(ROOT / "bench"),
                str(ROOT),
            ],
            env=env,
            cwd=tmp,
        )
    if child.returncode:
        print(f"the sanitized child failed (exit {child.returncode}): see the report above")
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
