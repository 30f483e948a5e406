"""Methods 5 (``strips``) and 6 (``tables``) side by side: bytes and decode time of each plane.

    python3 bench/strips_tables.py              # every photograph, k = 16, 64 and 256
    python3 bench/strips_tables.py --big        # the 9.4 MP case only

Each photograph is quantized once per k and stored in the default palette
order; its plane is coded by both methods, decoded back and checked, and
decoded 7 times by each, alternated in one process (both use every core);
the best times are compared. Prints tables ÷ strips bytes and strips ÷
tables time (the speed-up) per image, then the min / median / max per k.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import corpus  # noqa: E402

from pil_kmc import coding, context, quantize  # noqa: E402


def decode_time(decode, stream: bytes, w: int, h: int, k: int) -> float:
    start = time.perf_counter()
    decode(stream, w, h, k)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big", action="store_true", help="the 9.4 MP case only")
    parser.add_argument("--k", type=int, nargs="+", default=[16, 64, 256])
    args = parser.parse_args()
    images = [corpus.big()] if args.big else corpus.photographs()
    for k in args.k:
        sizes, speeds = [], []
        for name, im in images:
            palette, plane = coding.ordered(quantize.quantize(np.asarray(im.convert("RGB")), k))
            h, w = plane.shape
            kk = len(palette)
            strips = context.encode_strips(plane, kk)
            tables = context.encode_tables(plane, kk)
            assert np.array_equal(context.decode_tables(tables, w, h, kk), plane)
            t5 = t6 = float("inf")
            for _ in range(7):
                t5 = min(t5, decode_time(context.decode_strips, strips, w, h, kk))
                t6 = min(t6, decode_time(context.decode_tables, tables, w, h, kk))
            sizes.append(len(tables) / len(strips))
            speeds.append(t5 / t6)
            print(
                f"k={k:3} {name:32} bytes {sizes[-1]:.4f}  speed {speeds[-1]:.2f}x "
                f"({t5 * 1e3:.1f} / {t6 * 1e3:.1f} ms)",
                flush=True,
            )
        print(
            f"k={k:3} bytes tables/strips min/median/max {min(sizes):.3f} / "
            f"{np.median(sizes):.3f} / {max(sizes):.3f}; speed {min(speeds):.2f} / "
            f"{np.median(speeds):.2f} / {max(speeds):.2f}x"
        )


if __name__ == "__main__":
    main()
