"""pngquant's --quality against pil_kmc's quality=, on the photos of bench/cli_jobs.py.

    python3 bench/quality_scale.py            # needs pngquant on PATH

Two tables. Calibration: for ``--quality 0-T`` (T = 50, 65, 80, 90), the
plain sRGB mean squared error of pngquant's result and that of pil_kmc at
pngquant's number of colours, each divided by libimagequant's curve at T
(``pil_kmc.encoder.quality_to_mse``). Comparison: the colours each picks
for ``--quality 65-80``, or exit 99.
"""

from __future__ import annotations

import io
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_jobs import make_photos  # noqa: E402

import pil_kmc  # noqa: E402, F401
from pil_kmc import pixels, quantize  # noqa: E402
from pil_kmc.encoder import QualityNotReached, quality_to_mse  # noqa: E402


def pngquant(path: str, quality: str) -> Image.Image | None:
    command = ["pngquant", "--quality", quality, "--speed", "4", "-", "-o", "-"]
    run = subprocess.run(command, input=Path(path).read_bytes(), capture_output=True)
    return Image.open(io.BytesIO(run.stdout)) if run.returncode == 0 else None


def mse(a: Image.Image, b: Image.Image) -> float:
    d = np.asarray(a.convert("RGB"), float) - np.asarray(b.convert("RGB"), float)
    return float(np.mean(d * d))


def main() -> None:
    print(subprocess.run(["pngquant", "--version"], capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory() as tmp:
        photos = make_photos(Path(tmp))
        print("| --quality | photos | pngquant's MSE / curve | pil_kmc's at pngquant's k / curve |")
        print("|---|---|---|---|")
        for target in (50, 65, 80, 90):
            theirs, ours = [], []
            for path in photos:
                out = pngquant(path, f"0-{target}")
                k = len(out.getcolors(256))
                if k >= 256:
                    continue
                src = Image.open(path).convert("RGB")
                a, _ = pixels.to_array(src)
                curve = quality_to_mse(target)
                theirs.append(mse(src, out) / curve)
                ours.append(quantize.mse(a, quantize.quantize(a, k)) / curve)
            print(
                f"| 0-{target} | {len(ours)} | median {statistics.median(theirs):.2f} | "
                f"median {statistics.median(ours):.2f} ({min(ours):.2f}-{max(ours):.2f}) |"
            )
        print("\n| photo | pngquant --quality 65-80 | pil_kmc quality=(65, 80) |")
        print("|---|---|---|")
        ratios = []
        for path in photos:
            out = pngquant(path, "65-80")
            theirs = len(out.getcolors(256)) if out else None
            buffer = io.BytesIO()
            try:
                Image.open(path).convert("RGB").save(buffer, "KMC", quality=(65, 80))
                ours = len(Image.open(buffer).getcolors(256))
            except QualityNotReached:
                ours = None
            if theirs and ours and theirs < 256:
                ratios.append(ours / theirs)
            show = [f"{n} colours" if n else "exit 99" for n in (theirs, ours)]
            print(f"| {Path(path).stem} | {show[0]} | {show[1]} |")
        print(
            f"\npil_kmc's colours / pngquant's where pngquant used fewer than 256: median "
            f"{statistics.median(ratios):.2f}x, {min(ratios):.2f}-{max(ratios):.2f}x"
        )


if __name__ == "__main__":
    main()
