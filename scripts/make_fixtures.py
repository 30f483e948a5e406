"""Regenerate the golden files in fixtures/: python scripts/make_fixtures.py

Each fixture is a small ``.kmc`` file covering one header variant (colour
model, bit depth, compression method, row padding, an ancillary chunk), and
beside it the PNG of what it must decode to. The ``.kmc`` files are built
from explicit palettes and index planes, not by k-means, so that they change
only when the format or the writer's compression settings do (the xz
dictionary, for example); ``fixtures/README.md`` lists them. Two fixtures
keep streams from xz's own defaults, whatever the writer does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lzma  # noqa: E402

from pil_kmc import codec, context, layout  # noqa: E402

OUT = ROOT / "fixtures"


def plane(w: int, h: int, k: int, blocks: bool = False, edges: bool = False) -> np.ndarray:
    """A deterministic index plane using every index below k at least once if it fits.

    With ``blocks``, flat rectangles with a few stray pixels, so that runs,
    every flag question and literals all occur. With ``edges``, blocks
    crossed by bands of index 0 eight rows high every 64 rows, so that runs
    reach the right edge and strips start both in a band and below content.
    """
    y, x = np.mgrid[0:h, 0:w]
    if edges:
        return np.where(y % 64 < 8, 0, plane(w, h, k, blocks=True)).astype(np.uint8)
    if blocks:
        flat = (x // 23 * 7 + y // 17 * 3) % k
        stray = (x * 31 + y * 17) % 97 == 0
        return np.where(stray, (x + y) % k, flat).astype(np.uint8)
    return ((x * 3 + y * 5 + (x * y) % 7) % k).astype(np.uint8)


def palette(k: int, channels: int) -> np.ndarray:
    i = np.arange(k)[:, None]
    c = np.arange(channels)[None, :]
    p = (i * 97 + c * 61 + (i * c) * 13) % 256
    if channels in (2, 4):
        p[:, -1] = np.where(i[:, 0] % 3 == 0, 0, (i[:, 0] * 37) % 256)
        p[p[:, -1] == 0] = 0  # transparent entries have zero colour, as the writer makes them
    return p.astype(np.uint8)


VARIANTS = [
    # name, width, height, channels, k, compression, ancillary
    ("gray-k2-depth1-zlib", 13, 5, 1, 2, layout.ZLIB, []),
    ("gray-k4-depth2-stored", 7, 3, 1, 4, layout.STORED, []),
    ("gray-alpha-k16-depth4-bzip2", 9, 6, 2, 16, layout.BZIP2, []),
    ("rgb-k1-depth1-zlib", 1, 1, 3, 1, layout.ZLIB, []),
    ("rgb-k3-depth2-xz", 11, 4, 3, 3, layout.XZ, []),
    ("rgb-k100-depth8-zlib", 20, 17, 3, 100, layout.ZLIB, []),
    ("rgb-k256-depth8-bzip2", 32, 16, 3, 256, layout.BZIP2, []),
    ("rgba-k17-depth8-xz", 15, 9, 4, 17, layout.XZ, []),
    ("rgba-k5-depth4-stored-ancillary", 6, 2, 4, 5, layout.STORED, [(b"zzZz", b"ignored")]),
    ("rgb-k40-depth8-xz-plain", 33, 7, 3, 40, layout.XZ, []),
    ("rgb-k9-depth4-xz-two-streams", 19, 8, 3, 9, layout.XZ, []),
    ("rgb-k6-depth4-context", 23, 14, 3, 6, layout.CONTEXT, []),
    ("rgba-k100-depth8-context", 31, 12, 4, 100, layout.CONTEXT, []),
    # a pixel's question numbers count skipped candidates (spec 5.5, "Order")
    ("rgb-k7-depth4-context-skips", 19, 11, 3, 7, layout.CONTEXT, []),
    ("rgb-k6-depth4-strips", 23, 14, 3, 6, layout.STRIPS, []),
    ("rgba-k200-depth8-strips", 37, 21, 4, 200, layout.STRIPS, []),
    ("gray-k1-depth1-strips-three", 300, 600, 1, 1, layout.STRIPS, []),
    ("rgb-k16-depth4-strips-blocks-three", 300, 600, 3, 16, layout.STRIPS, []),
    # content across strip boundaries, runs ending at the right edge, B = 6 literals
    ("rgb-k40-depth8-edges-strips-three", 296, 600, 3, 40, layout.STRIPS, []),
    ("rgb-k6-depth4-tables", 23, 14, 3, 6, layout.TABLES, []),
    ("rgba-k200-depth8-tables", 37, 21, 4, 200, layout.TABLES, []),
    ("gray-k1-depth1-tables-three", 300, 600, 1, 1, layout.TABLES, []),
    ("rgb-k16-depth4-tables-blocks-three", 300, 600, 3, 16, layout.TABLES, []),
    ("rgb-k40-depth8-edges-tables-three", 296, 600, 3, 40, layout.TABLES, []),
    # the spec transcription's writer: a table of its own in every strip, literal groups of
    # two, runs wherever they fit, and literals equal to U, UR or UL
    ("rgb-k30-depth8-blocks-tables-three-reference", 300, 600, 3, 30, layout.TABLES, []),
    (
        "gray-k3-depth2-zlib-metadata",
        5,
        5,
        1,
        3,
        layout.ZLIB,
        [(b"pHYs", bytes.fromhex("00000ec400000ec401")), (b"tEXt", b"Title\0golden")],
    ),
]


def index_stream(name: str, indices: np.ndarray, header: layout.Header) -> bytes:
    """The KIDX data; two variants show that any valid xz data must decode."""
    packed = codec.pack_rows(indices, header.bit_depth)
    if name.endswith("xz-plain"):  # xz's own defaults: preset 6, CRC64 check
        return lzma.compress(packed)
    if name.endswith("two-streams"):  # concatenated xz streams
        half = len(packed) // 2
        return lzma.compress(packed[:half]) + lzma.compress(packed[half:])
    if name.endswith("strips-three"):  # strips of 256, 256 and 88 rows
        return context.encode_strips(indices, header.k, rows=256)
    if header.compression == layout.STRIPS:  # one strip, as the writer made them then
        return context.encode_strips(indices, header.k, rows=header.height)
    if name.endswith("tables-three-reference"):
        from tests.reference import tables6

        return tables6.encode(
            indices.tolist(),
            header.k,
            256,
            own_tables=True,
            groups="pairs",
            runs="anywhere",
            literals="always",
        )
    if name.endswith("tables-three"):
        return context.encode_tables(indices, header.k, rows=256)
    return codec.encode(indices, header)


def expected_png(indices: np.ndarray, pal: np.ndarray, channels: int) -> Image.Image:
    if channels == 1:
        return Image.fromarray(pal[indices][:, :, 0], "L")
    if channels == 2:
        return Image.fromarray(pal[indices], "LA")
    return Image.fromarray(pal[indices], "RGB" if channels == 3 else "RGBA")


# Golden encodes: a known image and options must give exactly these bytes
# (tests/test_fixtures.py), the determinism promise. Their sources are made
# here from a formula, and stored beside them as PNG.
ENCODES = [
    ("encode-rgb-k16", "RGB", {"clusters": 16}),
    ("encode-rgb-k200-optimize", "RGB", {"clusters": 200, "optimize": True}),
    ("encode-rgba-k40", "RGBA", {"clusters": 40}),
    ("encode-gray-k6", "L", {"clusters": 6}),
    ("encode-rgb-k16-dither", "RGB", {"clusters": 16, "dither": 0.8}),
]


def encode_source(mode: str) -> Image.Image:
    """A deterministic photo-like image: smooth gradients, edges and noise, 120 x 90."""
    y, x = np.mgrid[0:90, 0:120].astype(np.float64)
    noise = ((x * 7919 + y * 104729) % 61) / 61 * 24 - 12
    r = 128 + 100 * np.sin(x / 17) + noise
    g = 90 + 0.9 * y + 40 * (x > 70) + noise
    b = 200 - 1.2 * x + 30 * np.cos(y / 9) - noise
    a = np.where((x - 60) ** 2 + (y - 45) ** 2 < 900, 255, np.where(x < 20, 0, 128))
    rgba = np.clip(np.stack([r, g, b, a], axis=2), 0, 255).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA").convert(mode)


def golden_encodes() -> list[str]:
    import io

    import pil_kmc  # noqa: F401  (registers the format)

    lines = []
    for name, mode, options in ENCODES:
        source = encode_source(mode)
        source.save(OUT / f"{name}-source.png")
        buffer = io.BytesIO()
        source.save(buffer, "KMC", **options)
        (OUT / f"{name}.kmc").write_bytes(buffer.getvalue())
        with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
            target = {"L": "L", "LA": "LA"}.get(decoded.mode, "RGBA" if mode == "RGBA" else "RGB")
            decoded.convert(target).save(OUT / f"{name}.png")
        lines.append(f"| `{name}` | `{name}-source.png` saved with `{options}` |")
    return lines


def main() -> None:
    OUT.mkdir(exist_ok=True)
    lines = [
        "| fixture | size | colour model | k | bit depth | compression |",
        "|---|---|---|---|---|---|",
    ]
    for name, w, h, channels, k, compression, ancillary in VARIANTS:
        depth = layout.bit_depth_for(k)
        # layout.Header records the version that defines the method (spec section 8).
        header = layout.Header(w, h, channels, k, depth, compression=compression)
        indices = plane(w, h, k, blocks="blocks" in name, edges="edges" in name)
        pal = palette(k, channels)
        data = layout.build(header, pal.tobytes(), index_stream(name, indices, header), ancillary)
        (OUT / f"{name}.kmc").write_bytes(data)
        expected_png(indices, pal, channels).save(OUT / f"{name}.png")
        lines.append(
            f"| `{name}` | {w}x{h} | {layout.CHANNEL_NAMES[channels]} | {k} | "
            f"{header.bit_depth} | {layout.COMPRESSION_NAMES[compression]} |"
        )
    lines += ["", "| golden encode | made from |", "|---|---|", *golden_encodes()]
    readme = OUT / "README.md"
    readme.write_text(
        "# Golden files\n\nMade by `python scripts/make_fixtures.py`; do not edit by hand. "
        "Each `.kmc` must decode to the pixels of the `.png` beside it "
        "(`tests/test_fixtures.py`). A format change that alters these files must keep "
        "the old ones decoding: add new fixtures, never rewrite old ones silently.\n\n"
        + "\n".join(lines)
        + "\n"
    )


if __name__ == "__main__":
    main()
