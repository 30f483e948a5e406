"""--quality and quality= on pngquant's scale: libimagequant's curve, about pngquant's colours."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import pil_kmc  # noqa: F401
from pil_kmc.encoder import allowed_mse, mse_to_quality, quality_to_mse

ROCKET = Path(__file__).resolve().parent.parent / "examples" / "rocket.jpg"


def test_the_curve_is_libimagequants():
    # Values of libimagequant's quality_to_mse (src/quant.rs) at 80 and 10, x 65536 / 6.
    assert quality_to_mse(80) == pytest.approx(6.0895773, rel=1e-6)
    assert quality_to_mse(10) == pytest.approx(44.578345, rel=1e-6)
    assert quality_to_mse(0) == float("inf") and quality_to_mse(100) == 0


@given(st.integers(1, 99), st.integers(1, 99))
def test_higher_quality_allows_less_error_and_round_trips(a, b):
    assert mse_to_quality(allowed_mse(a)) == a
    if a < b:
        assert allowed_mse(a) > allowed_mse(b)


@pytest.mark.skipif(shutil.which("pngquant") is None, reason="pngquant is not installed")
@pytest.mark.parametrize("quality", ["0-50", "0-80"])
def test_quality_picks_about_the_colours_pngquant_picks(quality):
    photo = Image.open(ROCKET).convert("RGB").resize((320, 214))
    png = io.BytesIO()
    photo.save(png, "PNG")
    command = ["pngquant", "--quality", quality, "-"]
    run = subprocess.run(command, input=png.getvalue(), capture_output=True, check=True)
    theirs = len(Image.open(io.BytesIO(run.stdout)).getcolors(256))
    buffer = io.BytesIO()
    photo.save(buffer, "KMC", quality=tuple(int(q) for q in quality.split("-")))
    ours = len(Image.open(buffer).getcolors(256))
    assert theirs < 256 and 0.6 < ours / theirs < 1.6, (ours, theirs)
