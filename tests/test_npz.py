"""The original project's .npz layout: reading safely, writing exactly, converting."""

from __future__ import annotations

import io
import struct
import time
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageFile, UnidentifiedImageError

import pil_kmc  # noqa: F401
from pil_kmc import layout, npz


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def valid(h=3, w=4, c=3, k=5) -> dict:
    rng = np.random.default_rng(0)
    return {
        "array1": rng.integers(0, k, (h * w, 1), dtype=np.uint8),
        "array2": rng.integers(0, 256, (k, c), dtype=np.uint8),
        "array3": np.array([h, w, c], dtype=np.int64),
    }


def original_decoder(data: bytes) -> np.ndarray:
    z = np.load(io.BytesIO(data), allow_pickle=False)
    return z["array2"][z["array1"][:, 0]].reshape(z["array3"])


def test_the_original_file_opens_with_its_reconstruction(seed_dir):
    with Image.open(seed_dir / "compressed.npz") as im:
        assert (im.format, im.mode, im.size) == ("KMCNPZ", "P", (512, 512))
        got = np.asarray(im.convert("RGB"))
    assert np.array_equal(got, np.asarray(Image.open(seed_dir / "PNG_reconstruction.png")))


def test_saving_npz_writes_the_original_layout(seed_dir, tmp_path):
    photo = Image.open(seed_dir / "PNG_reconstruction.png")
    photo.save(tmp_path / "x.npz", clusters=100)
    data = (tmp_path / "x.npz").read_bytes()
    z = np.load(io.BytesIO(data), allow_pickle=False)
    assert sorted(z.files) == ["array1", "array2", "array3"]
    assert (z["array1"].dtype, z["array1"].shape) == (np.uint8, (512 * 512, 1))
    assert (z["array2"].dtype, z["array2"].shape) == (np.uint8, (100, 3))
    assert (z["array3"].dtype, z["array3"].tolist()) == (np.int64, [512, 512, 3])
    members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in members)
    assert np.array_equal(original_decoder(data), np.asarray(photo))


@pytest.mark.parametrize("mode, clusters", [("RGB", 8), ("RGB", 40), ("RGBA", 30), ("L", 20)])
def test_an_npz_save_stores_the_palette_and_indices_of_a_kmc_save(mode, clusters):
    rng = np.random.default_rng(clusters)
    a = np.repeat(rng.integers(0, 256, (24, 30, 4), dtype=np.uint8), 2, axis=0)
    a[..., 3] = np.where(a[..., 3] < 40, 0, 255)
    im = Image.fromarray(a, "RGBA").convert(mode)
    as_kmc, as_npz, converted = io.BytesIO(), io.BytesIO(), io.BytesIO()
    im.save(as_kmc, "KMC", clusters=clusters)
    im.save(as_npz, "KMCNPZ", clusters=clusters)
    npz.kmc_to_npz(io.BytesIO(as_kmc.getvalue()), converted)
    direct, via_kmc = (npz.read(io.BytesIO(b.getvalue())) for b in (as_npz, converted))
    assert np.array_equal(direct.palette, via_kmc.palette)
    assert np.array_equal(direct.indices, via_kmc.indices)


def test_original_npz_to_kmc_and_back_is_identical(seed_dir, tmp_path):
    npz.npz_to_kmc(seed_dir / "compressed.npz", tmp_path / "x.kmc")
    npz.kmc_to_npz(tmp_path / "x.kmc", tmp_path / "y.npz")
    a, b = np.load(seed_dir / "compressed.npz"), np.load(tmp_path / "y.npz")
    for key in ("array1", "array2", "array3"):
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key])


@given(
    st.integers(1, 4),
    st.integers(1, 256),
    st.integers(1, 20),
    st.integers(1, 20),
    st.integers(0, 2**32 - 1),
)
def test_npz_kmc_npz_is_lossless(c, k, h, w, seed):
    rng = np.random.default_rng(seed)
    arrays = npz.Arrays(
        rng.integers(0, k, (h, w), dtype=np.uint8), rng.integers(0, 256, (k, c), dtype=np.uint8)
    )
    first = io.BytesIO()
    npz.write(first, arrays)
    first.seek(0)
    kmc, second = io.BytesIO(), io.BytesIO()
    npz.npz_to_kmc(first, kmc)
    kmc.seek(0)
    npz.kmc_to_npz(kmc, second)
    second.seek(0)
    back = npz.read(second)
    assert np.array_equal(back.indices, arrays.indices)
    assert np.array_equal(back.palette, arrays.palette)
    kmc.seek(0)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
    decoded = np.asarray(Image.open(kmc).convert(mode)).reshape(h, w, c)
    assert np.array_equal(decoded, npz.decode(arrays))


def test_pickled_objects_are_refused_never_unpickled():
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    arrays = valid()
    arrays["array2"] = np.array([Boom()], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # savez pickles object arrays
    with pytest.raises(OSError, match="refusing to unpickle"):
        npz.read(io.BytesIO(buffer.getvalue()))
    with pytest.raises(OSError, match="refusing to unpickle"):
        Image.open(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda a: a.update(array1=a["array1"].astype(np.int16)), "array1 has dtype int16"),
        (lambda a: a.update(array2=a["array2"].astype(np.float32)), "array2 has dtype float32"),
        (lambda a: a.update(array3=np.array([3, 4], np.int64)), "array3 must be 3 integers"),
        (lambda a: a.update(array3=np.array([3, 5, 3], np.int64)), "array1 has shape"),
        (lambda a: a.update(array3=np.array([0, 4, 3], np.int64)), "invalid image shape"),
        (lambda a: a.update(array3=np.array([3, 4, 5], np.int64)), "invalid channel count"),
        (lambda a: a.update(array2=np.zeros((5, 4), np.uint8)), "array2 must have shape"),
        (lambda a: a.update(array2=np.zeros((0, 3), np.uint8)), "array2 must have shape"),
        (lambda a: a.update(array2=np.zeros((3, 3), np.uint8)), "at or above k=3"),
    ],
)
def test_broken_layouts_get_clear_errors(edit, message):
    arrays = valid()
    edit(arrays)
    data = npz_bytes(**arrays)
    with pytest.raises(OSError, match=message):
        npz.read(io.BytesIO(data))
    with pytest.raises(OSError, match=message):
        Image.open(io.BytesIO(data)).load()


def test_missing_or_extra_members_are_not_this_layout():
    arrays = valid()
    del arrays["array3"]
    with pytest.raises(npz.NotNpzLayout):
        npz.read(io.BytesIO(npz_bytes(**arrays)))
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(npz_bytes(**arrays)))
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(npz_bytes(**valid(), extra=np.zeros(1))))


def test_other_zip_files_are_not_mistaken_for_it():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("document.xml", "<x/>")
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(buffer.getvalue()))


def test_zip_bomb_member_is_read_only_to_its_declared_size():
    arrays = valid()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (12, 1)}
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("array1.npy", header.getvalue() + bytes(100_000_000))
        for key in ("array2", "array3"):
            member = io.BytesIO()
            np.lib.format.write_array(member, arrays[key])
            zf.writestr(f"{key}.npy", member.getvalue())
    with pytest.raises(OSError, match="expected 12"):
        npz.read(io.BytesIO(buffer.getvalue()))


def test_converting_a_non_kmc_file_is_a_value_error():
    with pytest.raises(ValueError, match="not a .kmc file"):
        npz.kmc_to_npz(io.BytesIO(b"not a kmc file at all"), io.BytesIO())


def test_damaged_member_is_an_os_error():
    data = bytearray(npz_bytes(**valid(h=20, w=20)))
    start = data.index(b"array1.npy") + 10 + 60  # inside array1's compressed data
    data[start] ^= 0xFF
    with pytest.raises(OSError):
        npz.read(io.BytesIO(bytes(data)))
    with pytest.raises(OSError):
        Image.open(io.BytesIO(bytes(data))).load()


class CountingReader(io.BytesIO):
    """A file that counts the bytes read from it."""

    read_bytes = 0

    def read(self, size=-1):
        data = super().read(size)
        self.read_bytes += len(data)
        return data


def many_entries_zip(entries: int, first: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(first, b"")
        for i in range(entries - 1):
            zf.writestr(f"{i}", b"")
    return buffer.getvalue()


@pytest.mark.parametrize("first", ["array1.npy", "other.txt"])
def test_the_npz_opener_decides_from_a_bounded_look(first):
    # Issue 15 item 6: a zip of a million entries cost 9.5 s and 549 MB before
    # UnidentifiedImageError; the opener reads the first local header and the
    # end of central directory record only, whatever the number of entries.
    data = many_entries_zip(20_000, first)
    assert len(data) > 1_000_000
    fp = CountingReader(data)
    with pytest.raises(UnidentifiedImageError):
        Image.open(fp)
    assert fp.read_bytes < 70_000


def zip64_hiding(entries: int, comment: int = 0) -> bytes:
    """A valid .npz whose classic end record says 3 members, behind a ZIP64 record of more.

    ``comment`` bytes of archive comment follow the end record.
    """
    good = npz_bytes(**valid())
    start = zipfile.ZipFile(io.BytesIO(good)).start_dir
    directory = good[start : good.rfind(b"PK\x05\x06")]
    extra = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 1, *[0] * 6)
    directory += (extra + b"x") * (entries - 3)
    record = struct.pack(
        "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, len(directory), start
    )
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, start + len(directory), 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 3, 3, 1000, 0xFFFFFFFF, comment)
    return good[:start] + directory + record + locator + end + b"c" * comment


# The longest comment a zip allows puts the ZIP64 locator before the last 64 KiB + 22 bytes.
@pytest.mark.parametrize("comment", [0, 65_535])
def test_a_zip64_record_cannot_hide_a_large_directory_from_the_bounded_look(monkeypatch, comment):
    # zipfile takes the ZIP64 record's counts over the classic record's; every
    # reader of the layout looks at both before zipfile parses anything.
    data = zip64_hiding(20_000, comment)
    assert len(zipfile.ZipFile(io.BytesIO(data)).infolist()) == 20_000
    fp = CountingReader(data)
    with pytest.raises(UnidentifiedImageError):
        Image.open(fp)
    assert fp.read_bytes < 70_000
    monkeypatch.setattr(zipfile, "ZipFile", None)  # never reached
    with pytest.raises(npz.NotNpzLayout, match="20000 members"):
        npz.read(io.BytesIO(data))
    with pytest.raises(npz.NotNpzLayout, match="20000 members"):
        npz.read_header(io.BytesIO(data))


def test_the_npz_opener_turns_away_a_large_zip_quickly():
    data = many_entries_zip(20_000, "array1.npy")
    start = time.perf_counter()
    for _ in range(10):
        with pytest.raises(UnidentifiedImageError):
            Image.open(io.BytesIO(data))
    assert (time.perf_counter() - start) / 10 < 0.05


def test_members_must_be_stored_or_deflated():
    # Appendix A: no other zip compression (an LZMA member names its own dictionary).
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_BZIP2) as zf:
        for name, array in valid().items():
            member = io.BytesIO()
            np.save(member, array)
            zf.writestr(name + ".npy", member.getvalue())
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(buffer.getvalue()))
    with pytest.raises(OSError, match="not stored or deflated"):
        npz.read(io.BytesIO(buffer.getvalue()))


def test_kmc_bytes_records_the_version_of_its_method():
    # Issue 15 item 12 / issue 17 item 1: kmc_bytes(..., CONTEXT) wrote a 1.0 file.
    arrays = npz.Arrays(np.zeros((3, 4), np.uint8), np.zeros((2, 3), np.uint8))
    for method in (layout.XZ, layout.CONTEXT):
        kmc = layout.read(io.BytesIO(npz.kmc_bytes(arrays, method)))
        assert kmc.header.version == layout.version_for(method)
        assert Image.open(io.BytesIO(npz.kmc_bytes(arrays, method))).size == (4, 3)


def test_npz_parser_feeding_works():
    data = npz_bytes(**valid())
    parser = ImageFile.Parser()
    for i in range(0, len(data), 50):
        parser.feed(data[i : i + 50])
    im = parser.close()
    assert im.tobytes() == Image.open(io.BytesIO(data)).tobytes()


def test_npz_parser_fed_a_file_that_grows_past_its_end_raises_os_error():
    # Found by bench/fuzz.py: a span copied into the end record; the parser
    # opens the archive from its first bytes, and reading the whole then
    # said "not a zip archive" as a ValueError.
    data = npz_bytes(**valid())
    grown = data[:-2] + data[-54:-2] + data[-2:]
    parser = ImageFile.Parser()
    parser.feed(grown[: len(data) + 5])  # an archive already, to zipfile
    assert parser.image is not None
    with pytest.raises(OSError):
        parser.feed(grown[len(data) + 5 :])
        parser.close()
