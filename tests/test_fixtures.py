"""Golden files: every fixture decodes to the PNG beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pil_kmc  # noqa: F401

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
KMC_FILES = sorted(FIXTURES.glob("*.kmc"))


def test_fixtures_exist():
    assert len(KMC_FILES) >= 12


@pytest.mark.parametrize("path", KMC_FILES, ids=lambda p: p.stem)
def test_fixture_decodes_to_its_png(path: Path):
    with Image.open(path) as im, Image.open(path.with_suffix(".png")) as png:
        assert im.format == "KMC" and im.size == png.size
        expected_mode = {"L": "L", "LA": "LA", "RGB": "P", "RGBA": "P"}[png.mode]
        assert im.mode == expected_mode
        assert np.array_equal(np.asarray(im.convert(png.mode)), np.asarray(png))


def test_metadata_fixture_opens_with_its_metadata():
    with Image.open(FIXTURES / "gray-k3-depth2-zlib-metadata.kmc") as im:
        assert im.info["Title"] == "golden"
        assert [round(v) for v in im.info["dpi"]] == [96, 96]
