"""The specification's worked example is a real file that this reader and writer agree on."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

import pil_kmc  # noqa: F401
from pil_kmc import codec, layout

SPEC = Path(__file__).resolve().parent.parent / "spec" / "kmc.md"


def example_bytes() -> bytes:
    text = SPEC.read_text().split("## 11. Example", 1)[1].split("```", 2)[1]
    data = bytearray()
    for line in text.splitlines():
        m = re.match(r"([0-9a-f]{4}): (.*)", line.strip())
        if m:
            assert int(m.group(1), 16) == len(data), "offsets in the dump must be contiguous"
            for token in m.group(2).split():  # hex bytes, then a comment
                if not re.fullmatch(r"[0-9a-f]{2}", token):
                    break
                data.append(int(token, 16))
    return bytes(data)


def test_worked_example_is_what_the_writer_makes():
    header = layout.Header(3, 2, 3, 2, 1, compression=layout.STORED)
    indices = np.array([[0, 1, 1], [1, 0, 0]], np.uint8)
    written = layout.build(header, bytes([255, 0, 0, 0, 0, 255]), codec.encode(indices, header))
    assert example_bytes() == written


def test_worked_example_decodes_as_described():
    im = Image.open(io.BytesIO(example_bytes()))
    assert (im.mode, im.size) == ("P", (3, 2))
    red, blue = (255, 0, 0), (0, 0, 255)
    assert np.asarray(im.convert("RGB")).reshape(-1, 3).tolist() == [
        list(c) for c in (red, blue, blue, blue, red, red)
    ]
