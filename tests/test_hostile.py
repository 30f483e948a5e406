"""Hostile and broken input: only Pillow's conventional exceptions, never a crash.

Every malformed file must end in ``UnidentifiedImageError`` (not this format),
``OSError`` (broken or truncated data) or ``DecompressionBombError``. The
bounded hypothesis runs here keep CI fast; ``python3 bench/fuzz.py`` runs the
long campaign on demand.
"""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import pil_kmc  # noqa: F401
from pil_kmc import layout

ALLOWED = (OSError, ValueError, Image.DecompressionBombError)


def small_files() -> list[bytes]:
    rng = np.random.default_rng(0)
    files = []
    for mode, k, compression in [
        ("RGB", 5, "xz"),
        ("L", 2, "zlib"),
        ("RGBA", 20, "bzip2"),
        ("LA", 3, "stored"),
        ("RGB", 12, "context"),
    ]:
        a = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
        im = Image.fromarray(a).convert(mode)
        buffer = io.BytesIO()
        im.save(buffer, "KMC", clusters=k, compression=compression)
        files.append(buffer.getvalue())
    return files


FILES = small_files()
IDS = ["rgb-xz", "gray-zlib", "rgba-bzip2", "ga-stored", "rgb-context"]


def open_and_load(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        im = Image.open(io.BytesIO(data))
        im.load()
    return im


@pytest.mark.parametrize("data", FILES, ids=IDS)
def test_truncation_at_every_offset_is_an_error(data):
    for end in range(len(data)):
        with pytest.raises(ALLOWED):
            open_and_load(data[:end])


@pytest.mark.parametrize("data", FILES, ids=IDS)
def test_every_single_bit_flip_is_detected(data):
    for bit in range(8 * len(data)):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ALLOWED):
            open_and_load(bytes(flipped))


@given(
    st.sampled_from(FILES),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_random_byte_edits_raise_only_conventional_errors(data, edits):
    mutated = bytearray(data)
    for pos, value in edits:
        mutated[pos % len(mutated)] = value
    with contextlib.suppress(ALLOWED):
        open_and_load(bytes(mutated))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_the_signature_raise_only_conventional_errors(tail):
    with contextlib.suppress(ALLOWED):
        open_and_load(layout.SIGNATURE + tail)


def kmc_with_header(width: int, height: int, k: int = 2, depth: int = 1) -> bytes:
    khdr = struct.pack(">BBIIBHBBB", 1, 0, width, height, 3, k, depth, 0, 1)
    return layout.SIGNATURE + layout.chunk(b"KHDR", khdr) + layout.chunk(b"KPAL", bytes(3 * k))


def test_huge_dimensions_are_a_decompression_bomb_before_any_data():
    data = kmc_with_header(2**31 - 1, 2**31 - 1) + layout.chunk(b"KIDX", b"")
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))


def test_declared_size_caps_a_compression_bomb():
    bomb = zlib.compress(bytes(50_000_000), 9)
    data = kmc_with_header(100, 100) + layout.chunk(b"KIDX", bomb) + layout.chunk(b"KEND", b"")
    with pytest.raises(OSError, match="more data than the header declares"):
        open_and_load(data)


@pytest.mark.parametrize(
    "width, height, k, depth, message",
    [
        (0, 5, 2, 1, "invalid image size"),
        (5, 0, 2, 1, "invalid image size"),
        (5, 5, 0, 1, "invalid palette size"),
        (5, 5, 257, 8, "invalid palette size"),
    ],
)
def test_impossible_header_values_are_reported(width, height, k, depth, message):
    data = kmc_with_header(width, height, k, depth)
    with pytest.raises(OSError, match=message):
        Image.open(io.BytesIO(data))


def test_unknown_version_is_reported():
    data = bytearray(FILES[0])
    data[16] = 2  # major version
    # Recompute the KHDR CRC so that only the version is wrong.
    khdr = bytes(data[12:32])
    data[32:36] = struct.pack(">I", zlib.crc32(khdr))
    with pytest.raises(OSError, match="major version 2"):
        Image.open(io.BytesIO(bytes(data)))


def test_wrong_magic_is_unidentified():
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(io.BytesIO(b"\x89KMX" + FILES[0][4:]))
