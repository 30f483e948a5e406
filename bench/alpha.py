"""Colours with alpha, as seen: pil_kmc against pngquant on the RGBA graphics.

    python3 bench/alpha.py                  # k = 16 64 256, plain and dithered (about 1 min)
    python3 bench/alpha.py --json FILE      # also write the rows

The error that counts for a pixel with alpha is the one seen: its colour
premultiplied by alpha (composited over black) and its alpha
(bench/run.py's ``seen()``, the measure pil_kmc's k-means lowers and
pngquant weighs by). Per RGBA graphic of bench/corpus.py and k: the PSNR of
that error for pil_kmc's default save and for the installed pngquant
``--speed 1 --nofs``, then the same dithered (``dither=True`` against pngquant's default
Floyd-Steinberg), and the file sizes.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's pil_kmc, not an installed one
sys.path.insert(0, str(ROOT / "bench"))
import corpus  # noqa: E402
import run  # noqa: E402  (bench/run.py: seen() and psnr())


def as_seen(im: Image.Image) -> np.ndarray:
    return run.seen(np.asarray(im.convert("RGBA"), dtype=np.float64))


def pil_kmc(im: Image.Image, k: int, dither: bool) -> tuple[float, int]:
    import pil_kmc as _  # noqa: F401

    buffer = io.BytesIO()
    im.save(buffer, "KMC", clusters=k, dither=dither)
    with Image.open(io.BytesIO(buffer.getvalue())) as back:
        return run.psnr(as_seen(im), as_seen(back)), len(buffer.getvalue())


def pngquant(im: Image.Image, k: int, dither: bool, work: Path) -> tuple[float, int] | None:
    src, dst = work / "src.png", work / "out.png"
    im.save(src)
    dst.unlink(missing_ok=True)
    cmd = ["pngquant", "--speed", "1", "--force", "--output", str(dst), str(k), str(src)]
    if not dither:
        cmd.insert(1, "--nofs")
    if subprocess.run(cmd, capture_output=True).returncode != 0 or not dst.exists():
        return None
    with Image.open(dst) as back:
        return run.psnr(as_seen(im), as_seen(back)), dst.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, nargs="*", default=[16, 64, 256])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not shutil.which("pngquant"):
        sys.exit("bench/alpha.py: pngquant is not installed")
    pictures = [p for p in corpus.select(kinds=("graphic",)) if p[1].mode == "RGBA"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, im in pictures:
            for k in args.k:
                for dither in (False, True):
                    ours, size = pil_kmc(im, k, dither)
                    peer = pngquant(im, k, dither, Path(tmp))
                    rows.append(
                        {
                            "image": name,
                            "k": k,
                            "dither": dither,
                            "pil_kmc": ours,
                            "bytes": size,
                            "pngquant": peer and peer[0],
                            "pngquant_bytes": peer and peer[1],
                        }
                    )
    print("| image | k | dither | pil_kmc dB | pngquant dB | difference | bytes | pngquant bytes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        diff = "" if r["pngquant"] is None else f"{r['pil_kmc'] - r['pngquant']:+.2f}"
        theirs = "" if r["pngquant"] is None else f"{r['pngquant']:.2f}"
        print(
            f"| {r['image']} | {r['k']} | {'yes' if r['dither'] else 'no'} | {r['pil_kmc']:.2f} | "
            f"{theirs} | {diff} | {r['bytes']} | {r['pngquant_bytes'] or ''} |"
        )
    print()
    for dither in (False, True):
        for k in args.k:
            d = [
                r["pil_kmc"] - r["pngquant"]
                for r in rows
                if r["k"] == k
                and r["dither"] == dither
                and r["pngquant"] is not None
                and np.isfinite(r["pil_kmc"] - r["pngquant"])  # not where either is exact
            ]
            if d:
                print(
                    f"k = {k}, {'dithered' if dither else 'plain'}: pil_kmc - pngquant over "
                    f"{len(d)} graphics, min / median / max {min(d):+.2f} / "
                    f"{statistics.median(d):+.2f} / {max(d):+.2f} dB"
                )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
