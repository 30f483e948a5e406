"""A bounded look at a zip archive: can it be the original ``.npz`` layout?

Python's :mod:`zipfile` reads an archive's whole central directory when it
opens one, however many members it names. Every reader of the layout
(Pillow's open, the command line, the conversions) first takes this look,
which reads a fixed number of bytes and needs no numpy, so that any zip
that is not the layout is turned away in constant time (spec appendix A).
"""

from __future__ import annotations

import struct
from typing import IO

#: The layout's members, in the order numpy writes them.
MEMBERS = ("array1.npy", "array2.npy", "array3.npy")

# The zip structures of the .npz layout (appendix A): a local file header
# (30 bytes, then the name) and the end of central directory record (22
# bytes, then a comment of up to 65,535 bytes).
_LOCAL = struct.Struct("<4s2xHH16xH2x")
_END = b"PK\x05\x06"
# ZIP64: a locator (20 bytes) just before that record points to a record
# (56 bytes) whose 64-bit counts zipfile then uses.
_LOCATOR64, _END64 = b"PK\x06\x07", b"PK\x06\x06"
# zipfile looks for the end record in the last 64 KiB + 22 bytes (the
# longest comment after it); the ZIP64 locator and record may lie before that.
_END_WINDOW, _ZIP64_BEFORE = (1 << 16) + 22, 76
_MAX_DIRECTORY = 1 << 16


def npz_problem(fp: IO[bytes]) -> str | None:
    """Why a zip archive is not the ``.npz`` layout, from a bounded look, or None.

    Reads the first local header and at most the last 64 KiB (the end of
    central directory record), never the whole directory, so that any zip
    that is not the layout is turned away in constant time (appendix A).
    """
    fp.seek(0)
    head = fp.read(_LOCAL.size)
    if len(head) != _LOCAL.size:
        return "truncated zip archive"
    magic, _flags, method, name_length = _LOCAL.unpack(head)
    if fp.read(name_length).decode("latin-1") not in MEMBERS:
        return "not the k-means .npz layout (first member is not an array of it)"
    if method not in (0, 8):
        return f"zip member compression {method}: not stored or deflated, as the layout's are"
    return directory_problem(fp)


def directory_problem(fp: IO[bytes]) -> str | None:
    """Why a zip archive's central directory cannot be the ``.npz`` layout's, or None.

    Reads at most the last 64 KiB and a little: the end of central directory
    record (in the last 64 KiB + 22 bytes, where :mod:`zipfile` looks for
    it), and the ZIP64 locator and record just before it if there are, whose
    counts zipfile then takes. Three members and a directory of at most 64
    KiB pass.
    """
    size = fp.seek(0, 2)
    window = min(size, _END_WINDOW)
    tail_length = min(size, _END_WINDOW + _ZIP64_BEFORE)
    fp.seek(size - tail_length)
    tail = fp.read(tail_length)
    at = tail.rfind(_END, len(tail) - window)
    if at < 0 or len(tail) < at + 22:
        return "not a zip archive (no end of central directory)"
    entries, directory = struct.unpack_from("<HI", tail, at + 10)
    if at >= 20 and tail[at - 20 : at - 16] == _LOCATOR64:
        # A ZIP64 archive: zipfile takes the counts of the ZIP64 record that
        # comes just before the locator instead.
        zip64 = tail[at - 76 : at - 20] if at >= 76 else b""
        if zip64[:4] != _END64:
            return "not a zip archive (broken ZIP64 end of central directory)"
        entries, directory = struct.unpack_from("<QQ", zip64, 32)
    if entries != len(MEMBERS) or directory > _MAX_DIRECTORY:
        return f"not the k-means .npz layout ({entries} members)"
    fp.seek(0)
    return None
