"""Make docs/reconstructions.jpg: the sample photo beside its k = 4, 16, 64 versions.

    python3 scripts/make_readme_figure.py

Each panel is captioned with k, the .kmc file's size and its PSNR.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import pil_kmc  # noqa: E402, F401

SOURCE = ROOT / "examples" / "rocket.jpg"
OUT = ROOT / "docs" / "reconstructions.jpg"


def panel(im: Image.Image, caption: str, width: int = 300) -> Image.Image:
    shown = im.convert("RGB").resize((width, round(im.height * width / im.width)), Image.LANCZOS)
    canvas = Image.new("RGB", (width, shown.height + 22), "white")
    canvas.paste(shown, (0, 22))
    ImageDraw.Draw(canvas).text((4, 5), caption, fill="black")
    return canvas


def main() -> None:
    original = Image.open(SOURCE).convert("RGB")
    ref = np.asarray(original, dtype=np.float64)
    panels = [panel(original, f"original JPEG, {SOURCE.stat().st_size:,} bytes")]
    for k in (4, 16, 64):
        buffer = io.BytesIO()
        original.save(buffer, "KMC", clusters=k)
        decoded = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        mse = np.mean((np.asarray(decoded, dtype=np.float64) - ref) ** 2)
        psnr = 10 * np.log10(255**2 / mse)
        panels.append(panel(decoded, f"k = {k}: {buffer.tell():,} bytes, {psnr:.1f} dB"))
    figure = Image.new(
        "RGB", (sum(p.width for p in panels) + 6 * (len(panels) - 1), panels[0].height), "white"
    )
    x = 0
    for p in panels:
        figure.paste(p, (x, 0))
        x += p.width + 6
    OUT.parent.mkdir(exist_ok=True)
    figure.save(OUT, quality=88)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
