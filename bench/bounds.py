"""Time and memory of loading .kmc files of every method and shape, against the budget.

    python3 bench/bounds.py                  # 10 MP: 1 x N, N x 1 and square, every method
    python3 bench/bounds.py --pixels 2000000

The budget (issue 14, spec section 10): loading takes at most 1 s per 10
declared megapixels plus 0.1 s, and peak memory beyond the decoded image is
at most 3 bytes per pixel plus 64 MB, whatever the shape. Each file is a
valid all-zero plane, crafted with the library's own writer, loaded in a
fresh process; the figures are that process's wall time for
``Image.open(f).load()`` and its peak RSS above what it held before, less the
decoded image (Pillow's pixels and its pointer to every row, which a 1 x N
image makes 8 bytes per pixel whatever the format).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MAKE = r"""
import sys
import numpy as np
from pil_kmc import codec, layout

method, w, h = (int(v) for v in sys.argv[1:4])
header = layout.Header(w, h, 3, 2, 1, compression=method, version=layout.version_for(method))
data = layout.build(header, bytes(6), codec.encode(np.zeros((h, w), np.uint8), header))
open(sys.argv[4], "wb").write(data)
"""

CHILD = r"""
import io, json, sys, time
import numpy as np
import pil_kmc
from PIL import Image
from pil_kmc import layout

w, h = (int(v) for v in sys.argv[2:4])
data = open(sys.argv[4], "rb").read()
header = layout.read(io.BytesIO(data), index=False).header
Image.MAX_IMAGE_PIXELS = None

def status(field):
    # VmHWM, the peak, starts anew at exec; ru_maxrss would count the parent's memory.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))

Image.open(io.BytesIO(layout.build(header, bytes(6), b""))).close()  # warm up the imports
before = status("VmRSS:")
start = time.perf_counter()
im = Image.open(io.BytesIO(data))
im.load()
seconds = time.perf_counter() - start
peak = status("VmHWM:")
# The decoded image: Pillow's pixels and its pointer to every row.
image = w * h + 8 * h
print(json.dumps({"seconds": seconds, "extra": peak - before - image, "bytes": len(data)}))
"""

SHAPES = {"1 x N": lambda n: (1, n), "N x 1": lambda n: (n, 1), "square": lambda n: (_side(n),) * 2}


def _side(n: int) -> int:
    return int(round(n**0.5))


def measure(method: int, width: int, height: int) -> dict:
    """Load time and peak memory beyond the decoded image, in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "plane.kmc")
        args = [str(method), str(width), str(height), path]
        subprocess.run([sys.executable, "-c", MAKE, *args], check=True, cwd=ROOT)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, *args],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
    return json.loads(out.stdout)


def budget(pixels: int) -> tuple[float, float]:
    """(seconds, bytes beyond the decoded image) allowed for loading ``pixels`` pixels."""
    return pixels / 10e6 + 0.1, 3 * pixels + (64 << 20)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from pil_kmc import layout

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pixels", type=int, default=10_000_000)
    args = parser.parse_args()
    failures = 0
    print("| method | shape | file bytes | load s | budget s | extra MB | budget MB |")
    print("|---|---|---|---|---|---|---|")
    for method, name in layout.COMPRESSION_NAMES.items():
        for shape, size in SHAPES.items():
            w, h = size(args.pixels)
            r = measure(method, w, h)
            seconds, memory = budget(w * h)
            ok = r["seconds"] <= seconds and r["extra"] <= memory
            failures += not ok
            print(
                f"| {name} | {shape} ({w} x {h}) | {r['bytes']:,} | {r['seconds']:.3f} | "
                f"{seconds:.2f} | {r['extra'] / 2**20:.0f} | {memory / 2**20:.0f} |"
                + ("" if ok else " OVER")
            )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
