"""Pillow glue for ``.kmc``: open, decode, save and registration.

Only translation lives here; the format is in :mod:`pil_kmc.layout`, the
index stream in :mod:`pil_kmc.codec` and the encoder in
:mod:`pil_kmc.encoder`. numpy is imported on first decode or save, not at
import, so that ``import pil_kmc`` stays as cheap as a Pillow plugin.
"""

from __future__ import annotations

import io
from typing import IO

from PIL import Image, ImageFile, ImagePalette

from . import encoder, layout, metadata, ziplook

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
        if self.fp is None:
            raise OSError("no file to read")
        kmc = layout.read(self.fp, index=False)
        header = kmc.header
        self._kmc = kmc
        self._size = (header.width, header.height)
        self._mode = _opened_mode(header.channels)
        transparency = None
        if self._mode == "P":
            self.palette, transparency = _palette(header.channels, kmc.palette)
        #: Every tEXt entry, also those whose keyword names another ``info`` key.
        self.text = metadata.text_of(kmc.ancillary)
        self.info.update(metadata.from_chunks(kmc.ancillary, self.text))
        # The alpha is the palette's: a tEXt keyword may not pose as it.
        self.info.pop("transparency", None)
        if transparency is not None:
            self.info["transparency"] = transparency
        self._decoded = _Handover()
        self.tile = [
            ImageFile._Tile(FORMAT, (0, 0, *self._size), kmc.index_offset, (kmc, self._decoded))
        ]

    def load_end(self) -> None:
        # The decoded plane becomes the image's memory (for L and P; LA is
        # copied) instead of being copied into the memory Pillow allocated: a
        # pass over the whole plane saved, and the plane is not held twice.
        # The buffer is this image's alone and writable, so the image stays
        # writable, as any other loaded image.
        plane = self._decoded.take()
        if plane is not None:
            self.im = Image.frombuffer(self.mode, self.size, plane, "raw", self.mode, 0, 1).im
            if self.palette:
                self.palette.dirty = 1  # the new memory has no palette yet

    def verify(self) -> None:
        """Check every chunk's CRC and the chunk structure to the end, without decoding.

        Like PNG's ``verify()``: call it directly after opening; it raises
        ``OSError`` for a broken or truncated file and then closes the file.
        """
        if self.fp is None:
            raise RuntimeError("verify must be called directly after open")
        self.fp.seek(self._kmc.index_offset)
        tail = self._kmc.read_index(self.fp)
        metadata.check_after(self._kmc.ancillary, tail.ancillary)
        super().verify()


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


class _Handover:
    """The plane a decoder hands to its image's ``load_end``, not copied into Pillow's memory."""

    plane = None

    def take(self):
        plane, self.plane = self.plane, None
        return plane


class _Incremental(ImageFile.PyDecoder):
    """A decoder that reads its file itself or, fed by ``ImageFile.Parser``, buffers it.

    Fed data (no file) is kept and decoded as a whole when it may be
    complete: it ends like a file, it has doubled since the last try (so
    feeding stays linear), or nothing was fed (as ``Parser.close()`` does).
    A try that finds the data cut short waits for more, and ``close()``
    then reports the image as incomplete (``OSError``), as for PNG; any
    other error is final and raised at once.
    """

    _pulls_fd = True
    _fed: bytearray | None = None
    _tried = 0

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:
        if self.fd is not None:
            self._decode(self.fd, bool(ImageFile.LOAD_TRUNCATED_IMAGES))
            return -1, 0
        data = bytes(buffer)
        if self._fed is None:
            self._fed = bytearray()
        self._fed += data
        if data and not self._ends(self._fed) and len(self._fed) < 2 * self._tried:
            return len(data), 0
        self._tried = len(self._fed)
        try:
            self._decode(io.BytesIO(bytes(self._fed)), False)
        except layout.TruncatedError:
            return len(data), 0
        self._fed = None
        return -1, 0

    def _ends(self, data: bytearray) -> bool:
        return False

    def _decode(self, fp: IO[bytes], partial: bool) -> None:
        raise NotImplementedError


_KEND = layout.chunk(layout.KEND, b"")
# Pillow keeps a table of 8 bytes per row for every image, so mapping the
# decoded plane (a second image over it, beside the one load_prepare made)
# costs 8 bytes a row: for narrow images more than copying the plane (1 byte
# a pixel), so those are copied.
_MAPPED_WIDTH = 8


class KmcDecoder(_Incremental):
    """Reads the KIDX chunks and KEND, checks them and hands Pillow raw pixels."""

    def _ends(self, data: bytearray) -> bool:
        return data.endswith(_KEND)

    def _decode(self, fp: IO[bytes], partial: bool) -> None:
        import numpy as np

        from . import codec

        kmc, handover = self.args
        header = kmc.header
        tail = kmc.read_index(fp, partial=partial)
        # Section 6a chunks after the index data obey the same rules (section 9).
        metadata.check_after(kmc.ancillary, tail.ancillary)
        indices = codec.decode(tail.stream, header, partial=tail.truncated)
        if header.channels <= layout.GRAY_ALPHA:  # opened as L or LA: look colours up
            table = np.frombuffer(kmc.palette, np.uint8).reshape(header.k, header.channels)
            indices = table[indices]
        plane = np.ascontiguousarray(indices)
        if self.fd is not None and plane.flags.writeable and header.width >= _MAPPED_WIDTH:
            # Called by ImageFile.load, which calls load_end next (ImageFile.Parser
            # does not, and feeds no file).
            handover.plane = plane
        else:  # a view, not a copy: the decoded plane is not held twice
            self.set_as_raw(memoryview(plane).cast("B"))


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    options = encoder.save_options(im.encoderinfo, im.info)
    fp.write(encoder.encode(im, options))


def _save_all(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """A .kmc file holds one image: refuse several frames rather than drop them."""
    # Any iterable of images, as Pillow's PNG, GIF and WebP plugins take it.
    frames = getattr(im, "n_frames", 1) + len(list(im.encoderinfo.get("append_images", [])))
    if frames > 1:
        raise ValueError(
            f"KMC holds a single image, not {frames} frames; save each frame "
            "separately (im.seek(i)), or save_all=False for the first frame only"
        )
    _save(im, fp, filename)


def _accept_npz(prefix: bytes) -> bool:
    # Any zip archive; _open then takes a bounded look for the three arrays.
    return prefix.startswith(b"PK\x03\x04")


class KmcNpzImageFile(ImageFile.ImageFile):
    """The original project's ``compressed.npz`` (see :mod:`pil_kmc.npz`)."""

    format = NPZ_FORMAT
    format_description = "k-means arrays in the original .npz layout"
    n_frames = 1
    is_animated = False

    def _open(self) -> None:
        if self.fp is None:
            raise OSError("no file to read")
        problem = ziplook.npz_problem(self.fp)
        if problem:
            raise SyntaxError(problem)

        from . import npz

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


class KmcNpzDecoder(_Incremental):
    def _decode(self, fp: IO[bytes], partial: bool) -> None:
        import numpy as np

        from . import npz

        try:
            arrays = npz.read(fp)
        except npz.NotNpzLayout as e:  # the file changed since it was opened
            raise OSError(str(e)) from None
        if arrays.shape[:2] != (self.state.ysize, self.state.xsize):
            raise OSError("npz arrays changed while reading")
        pixels = npz.decode(arrays) if arrays.shape[2] <= layout.GRAY_ALPHA else arrays.indices
        pixels = np.ascontiguousarray(pixels)
        self.set_as_raw(memoryview(pixels).cast("B"))


def _save_npz(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from . import coding, npz

    options = encoder.save_options(im.encoderinfo, im.info)
    result, _ = encoder.quantize_image(im, options)
    # The palette order a default .kmc save stores (optimize= and compression=
    # choose .kmc coding only), so that both files agree.
    palette, indices = coding.ordered(result, given=options.palette is not None)
    npz.write(fp, npz.Arrays(indices, palette))


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
