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


ENCODES = sorted(FIXTURES.glob("encode-*-source.png"))


@pytest.mark.parametrize("source", ENCODES, ids=lambda p: p.stem.removesuffix("-source"))
def test_a_known_image_and_options_give_known_bytes(source: Path):
    # The options of each golden encode are in scripts/make_fixtures.py.
    import importlib.util
    import io

    spec = importlib.util.spec_from_file_location(
        "make_fixtures", FIXTURES.parent / "scripts" / "make_fixtures.py"
    )
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    name = source.stem.removesuffix("-source")
    options = next(o for n, _, o in make.ENCODES if n == name)
    buffer = io.BytesIO()
    with Image.open(source) as im:
        im.save(buffer, "KMC", **options)
    assert buffer.getvalue() == (FIXTURES / f"{name}.kmc").read_bytes()


def test_every_golden_encode_is_there():
    assert len(ENCODES) >= 4
