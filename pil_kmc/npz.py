"""The original project's ``compressed.npz`` layout, read safely and written exactly.

==========  =======  ===========  ===========================================
key         dtype    shape        meaning
==========  =======  ===========  ===========================================
``array1``  uint8    (H*W, 1)     one palette index per pixel, row-major
``array2``  uint8    (k, C)       the palette, one colour per row
``array3``  int64    (3,)         the image shape ``[H, W, C]``
==========  =======  ===========  ===========================================

written with :func:`numpy.savez_compressed`. The original decoder is
``array2[array1[:, 0]].reshape(array3)``. Reading never unpickles, checks
every dtype and shape before reading the data they announce, and reads each
member through a bound, so a zip bomb cannot expand past the declared size.
Conversions to and from ``.kmc`` keep the palette and indices as they are.
"""

from __future__ import annotations

import contextlib
import io
import lzma
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TypeVar

import numpy as np
from numpy.lib import format as npy

from . import codec, layout, ziplook

PathOrFile = str | os.PathLike | IO[bytes]
_T = TypeVar("_T")

MEMBERS = ziplook.MEMBERS
_MAX_NPY_HEADER = 10_000


class NotNpzLayout(ValueError):
    """A file that is not the original ``.npz`` layout (or not a zip at all)."""


@dataclass(frozen=True)
class Arrays:
    """The three arrays of the layout, checked against each other."""

    indices: np.ndarray  # (H, W) uint8
    palette: np.ndarray  # (k, C) uint8

    @property
    def shape(self) -> tuple[int, int, int]:
        h, w = self.indices.shape
        return h, w, self.palette.shape[1]


@dataclass(frozen=True)
class NpzHeader:
    """What :func:`read_header` learns without reading the indices."""

    height: int
    width: int
    channels: int
    palette: np.ndarray


def _member(
    zf: zipfile.ZipFile, name: str
) -> tuple[IO[bytes], tuple[int, ...], bool, np.dtype]:
    """Open a member and parse its .npy header: (stream, shape, fortran, dtype)."""
    compression = zf.getinfo(name).compress_type
    if compression not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # Appendix A: stored or deflated only, so no other decompressor (and
        # its memory, such as an LZMA dictionary the member names) is used.
        raise OSError(f"{name} uses zip compression {compression}, not stored or deflated")
    stream = zf.open(name)
    try:
        version = npy.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(stream, _MAX_NPY_HEADER)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npy.read_array_header_2_0(stream, _MAX_NPY_HEADER)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as e:
        stream.close()
        raise OSError(f"{name}: invalid .npy header ({e})") from None
    if dtype.hasobject:
        stream.close()
        raise OSError(f"{name} holds Python objects; refusing to unpickle")
    return stream, shape, fortran, dtype


def _read_data(stream, shape, fortran, dtype, name: str) -> np.ndarray:
    """Read exactly the announced array from an open member, bounded."""
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = stream.read(size + 1)
    stream.close()
    if len(data) != size:
        raise OSError(f"{name} holds {len(data)} bytes of data, expected {size}")
    array = np.frombuffer(data, dtype=dtype)
    if fortran:
        return array.reshape(shape[::-1]).T
    return array.reshape(shape)


def _open_zip(fp: IO[bytes]) -> zipfile.ZipFile:
    problem = ziplook.directory_problem(fp)  # before zipfile reads the whole directory
    if problem:
        raise NotNpzLayout(problem)
    try:
        zf = zipfile.ZipFile(fp)
    except (*_ZIP_ERRORS, OSError) as e:
        raise NotNpzLayout(f"not a zip archive ({e})") from None
    names = sorted(zf.namelist())
    if names != sorted(MEMBERS):
        zf.close()
        raise NotNpzLayout(f"not the k-means .npz layout (members: {', '.join(names[:5])})")
    return zf


def _check_dtype(dtype: np.dtype, kind: str, name: str) -> None:
    if dtype.kind != kind[0] or dtype.itemsize != int(kind[1:]):
        raise OSError(f"{name} has dtype {dtype}, expected {'uint8' if kind == 'u1' else 'int64'}")


def _header(zf: zipfile.ZipFile) -> NpzHeader:
    """Parse and cross-check array3 and array2, and array1's header."""
    stream, shape, fortran, dtype = _member(zf, "array3.npy")
    if dtype.kind not in "iu" or shape != (3,):
        stream.close()
        raise OSError(f"array3 must be 3 integers [H, W, C], not {dtype} {shape}")
    h, w, c = (int(v) for v in _read_data(stream, shape, fortran, dtype, "array3"))
    if not (1 <= h <= layout.MAX_DIMENSION and 1 <= w <= layout.MAX_DIMENSION):
        raise OSError(f"invalid image shape {h}x{w} in array3")
    if c not in layout.CHANNEL_NAMES:
        raise OSError(f"invalid channel count {c} in array3 (must be 1 to 4)")
    stream, shape, fortran, dtype = _member(zf, "array2.npy")
    _check_dtype(dtype, "u1", "array2")
    if len(shape) != 2 or shape[1] != c or not 1 <= shape[0] <= layout.MAX_CLUSTERS:
        stream.close()
        raise OSError(f"array2 must have shape (k, {c}) with 1 <= k <= 256, not {shape}")
    palette = _read_data(stream, shape, fortran, dtype, "array2")
    return NpzHeader(h, w, c, np.ascontiguousarray(palette))


# What zipfile and its decompressors raise for damaged members.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,
    RuntimeError,
    ValueError,
)


@contextlib.contextmanager
def _members_of(fp: IO[bytes]) -> Iterator[zipfile.ZipFile]:
    """The archive, with zipfile's own errors turned into ``OSError``."""
    with _open_zip(fp) as zf:
        try:
            yield zf
        except OSError:
            raise
        except _ZIP_ERRORS as e:
            raise OSError(f"corrupt .npz archive: {e}") from None


def read_header(fp: IO[bytes]) -> NpzHeader:
    """Shape and palette of an ``.npz`` file, without reading its indices.

    Raises :class:`NotNpzLayout` if the file is not this layout at all and
    :class:`OSError` if it is a broken one.
    """
    with _members_of(fp) as zf:
        return _header(zf)


def read(fp: IO[bytes]) -> Arrays:
    """All arrays of an ``.npz`` file in the original layout, validated."""
    with _members_of(fp) as zf:
        head = _header(zf)
        stream, shape, fortran, dtype = _member(zf, "array1.npy")
        _check_dtype(dtype, "u1", "array1")
        if shape != (head.height * head.width, 1):
            stream.close()
            raise OSError(
                f"array1 has shape {shape}, expected ({head.height * head.width}, 1) for array3"
            )
        indices = _read_data(stream, shape, fortran, dtype, "array1")
    if int(indices.max(initial=0)) >= len(head.palette):
        raise OSError(f"array1 refers to a palette entry at or above k={len(head.palette)}")
    return Arrays(indices.reshape(head.height, head.width), head.palette)


def write(fp: IO[bytes], arrays: Arrays) -> None:
    """Write the layout exactly as the original did (``savez_compressed``)."""
    h, w, c = arrays.shape
    np.savez_compressed(
        fp,
        array1=np.ascontiguousarray(arrays.indices, dtype=np.uint8).reshape(h * w, 1),
        array2=np.ascontiguousarray(arrays.palette, dtype=np.uint8),
        array3=np.array([h, w, c], dtype=np.int64),
    )


def decode(arrays: Arrays) -> np.ndarray:
    """The image as the original decoder rebuilds it: (H, W, C) uint8."""
    return arrays.palette[arrays.indices]


def _read_kmc(fp: IO[bytes]) -> Arrays:
    kmc = layout.read(fp)
    header = kmc.header
    palette = np.frombuffer(kmc.palette, np.uint8).reshape(header.k, header.channels)
    return Arrays(codec.decode(kmc.index.stream, header), palette)


def kmc_bytes(arrays: Arrays, compression: int = layout.XZ) -> bytes:
    """A ``.kmc`` file holding exactly these palette and indices.

    The version recorded is the lowest that defines ``compression``.
    """
    h, w, c = arrays.shape
    k = len(arrays.palette)
    header = layout.Header(w, h, c, k, layout.bit_depth_for(k), compression=compression)
    return layout.build(header, arrays.palette.tobytes(), codec.encode(arrays.indices, header))


def _with_input(src: PathOrFile, reader: Callable[[IO[bytes]], _T]) -> _T:
    if isinstance(src, (str, os.PathLike)):
        with open(src, "rb") as f:
            return reader(f)
    return reader(src)


def _write_output(dst: PathOrFile, data: bytes) -> None:
    if isinstance(dst, (str, os.PathLike)):
        with open(dst, "wb") as f:
            f.write(data)
    else:
        dst.write(data)


def kmc_to_npz(src: PathOrFile, dst: PathOrFile) -> None:
    """Convert a ``.kmc`` file to the original ``.npz`` layout, losslessly.

    The palette and every index are kept; nothing is clustered again.
    """
    try:
        arrays = _with_input(src, _read_kmc)
    except SyntaxError as e:
        raise ValueError(f"source is not a .kmc file ({e})") from None
    buffer = io.BytesIO()
    write(buffer, arrays)
    _write_output(dst, buffer.getvalue())


def npz_to_kmc(src: PathOrFile, dst: PathOrFile) -> None:
    """Convert an ``.npz`` file in the original layout to ``.kmc``, losslessly."""
    arrays = _with_input(src, read)
    _write_output(dst, kmc_bytes(arrays))
