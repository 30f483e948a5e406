"""Pillow glue for ``.kmc``: open, decode, save and registration.

Only translation lives here; the format is in :mod:`pil_kmc.layout`, the
index stream in :mod:`pil_kmc.codec` and the encoder in
:mod:`pil_kmc.encoder`. numpy is imported on first decode or save, not at
import, so that ``import pil_kmc`` stays as cheap as a Pillow plugin.
"""

from __future__ import annotations

from typing import IO

from PIL import Image, ImageFile, ImagePalette

from . import encoder, layout, metadata

FORMAT = "KMC"
MIME = "image/x-kmc"
EXTENSION = ".kmc"
NPZ_FORMAT = "KMCNPZ"


def _accept(prefix: bytes) -> bool:
    return prefix.startswith(layout.SIGNATURE)


class KmcImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "k-means colour-quantized image"
    # One image per file, as a PNG that is not an APNG.
    n_frames = 1
    is_animated = False

    def _open(self) -> None:
        assert self.fp is not None
        head = layout.read_head(self.fp)
        header = head.header
        self._size = (header.width, header.height)
        self._mode = _opened_mode(header.channels)
        transparency = None
        if self._mode == "P":
            self.palette, transparency = _palette(header.channels, head.palette)
        self.info.update(metadata.from_chunks(head.ancillary))
        # The alpha is the palette's: a tEXt keyword may not pose as it.
        self.info.pop("transparency", None)
        if transparency is not None:
            self.info["transparency"] = transparency
        self.tile = [
            ImageFile._Tile(FORMAT, (0, 0, *self._size), head.index_offset, (header, head.palette))
        ]


def _opened_mode(channels: int) -> str:
    """Gray models open as L or LA; colour models as P with their palette."""
    return {layout.GRAY: "L", layout.GRAY_ALPHA: "LA"}.get(channels, "P")


def _palette(channels: int, data: bytes) -> tuple[ImagePalette.ImagePalette, int | bytes | None]:
    """An RGB Pillow palette, and ``info["transparency"]`` as the PNG plugin gives it.

    With alpha (RGBA): the index of the one transparent entry if every other
    is opaque, else one alpha byte per entry (the contents of a PNG tRNS chunk).
    """
    transparency: int | bytes | None = None
    if channels == layout.RGBA:
        alpha, rgb = data[3::4], bytearray(len(data) // 4 * 3)
        for c in range(3):
            rgb[c::3] = data[c::4]
        data = bytes(rgb)
        zero = alpha.find(b"\0")
        simple = zero >= 0 and alpha.count(b"\xff") == len(alpha) - 1
        transparency = zero if simple else alpha
    return ImagePalette.raw("RGB", data), transparency


class KmcDecoder(ImageFile.PyDecoder):
    """Reads the KIDX chunks and KEND, checks them and hands Pillow raw pixels."""

    _pulls_fd = True

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:
        import numpy as np

        from . import codec

        assert self.fd is not None
        header, palette = self.args
        parts: list[bytes] = []
        truncated = False
        try:
            for part in layout.iter_index_stream(self.fd):
                parts.append(part)
        except layout.TruncatedError as e:
            if not ImageFile.LOAD_TRUNCATED_IMAGES:
                raise
            parts.append(e.partial)
            truncated = True
        indices = codec.decode(b"".join(parts), header, partial=truncated)
        if header.channels <= layout.GRAY_ALPHA:  # opened as L or LA: look colours up
            table = np.frombuffer(palette, np.uint8).reshape(header.k, header.channels)
            indices = table[indices]
        self.set_as_raw(indices.tobytes())
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    options = encoder.save_options(im.encoderinfo, im.info)
    fp.write(encoder.encode(im, options))


def _save_all(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """A .kmc file holds one image: refuse several frames rather than drop them."""
    frames = getattr(im, "n_frames", 1) + len(im.encoderinfo.get("append_images", []))
    if frames > 1:
        raise ValueError(
            f"KMC holds a single image, not {frames} frames; save each frame "
            "separately (im.seek(i)), or save_all=False for the first frame only"
        )
    _save(im, fp, filename)


def _accept_npz(prefix: bytes) -> bool:
    # Any zip archive; _open then checks for exactly the three arrays.
    return prefix.startswith(b"PK\x03\x04")


class KmcNpzImageFile(ImageFile.ImageFile):
    """The original project's ``compressed.npz`` (see :mod:`pil_kmc.npz`)."""

    format = NPZ_FORMAT
    format_description = "k-means arrays in the original .npz layout"
    n_frames = 1
    is_animated = False

    def _open(self) -> None:
        from . import npz

        assert self.fp is not None
        try:
            head = npz.read_header(self.fp)
        except npz.NotNpzLayout as e:
            raise SyntaxError(str(e)) from None
        self._size = (head.width, head.height)
        self._mode = _opened_mode(head.channels)
        if self._mode == "P":
            self.palette, transparency = _palette(head.channels, head.palette.tobytes())
            if transparency is not None:
                self.info["transparency"] = transparency
        self.tile = [ImageFile._Tile(NPZ_FORMAT, (0, 0, *self._size), 0, ())]


class KmcNpzDecoder(ImageFile.PyDecoder):
    _pulls_fd = True

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:
        from . import npz

        assert self.fd is not None
        arrays = npz.read(self.fd)
        if arrays.shape[:2] != (self.state.ysize, self.state.xsize):
            raise OSError("npz arrays changed while reading")
        pixels = npz.decode(arrays) if arrays.shape[2] <= layout.GRAY_ALPHA else arrays.indices
        self.set_as_raw(pixels.tobytes())
        return -1, 0


def _save_npz(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from . import npz

    options = encoder.save_options(im.encoderinfo, im.info)
    result, _ = encoder.quantize_image(im, options)
    npz.write(fp, npz.Arrays(result.indices, result.palette))


Image.register_open(FORMAT, KmcImageFile, _accept)
Image.register_decoder(FORMAT, KmcDecoder)
Image.register_save(FORMAT, _save)
Image.register_save_all(FORMAT, _save_all)
Image.register_extension(FORMAT, EXTENSION)
Image.register_mime(FORMAT, MIME)

Image.register_open(NPZ_FORMAT, KmcNpzImageFile, _accept_npz)
Image.register_decoder(NPZ_FORMAT, KmcNpzDecoder)
Image.register_save(NPZ_FORMAT, _save_npz)
Image.register_extension(NPZ_FORMAT, ".npz")
