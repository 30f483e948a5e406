"""The kmc command line: encode, decode, info, npz; exit codes; atomic writes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pil_kmc  # noqa: F401
from pil_kmc import cli


@pytest.fixture
def photo(tmp_path) -> Path:
    y, x = np.mgrid[0:40, 0:50]
    a = np.stack([x * 5, y * 6, (x * y) % 256], axis=2).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(a).save(path)
    return path


def test_encode_writes_beside_the_input_and_info_reports_k(photo, capsys):
    assert cli.main(["encode", str(photo), "-k", "16"]) == cli.OK
    out = photo.with_suffix(".kmc")
    assert Image.open(out).format == "KMC"
    assert cli.main(["info", str(out)]) == cli.OK
    assert "k=16" in capsys.readouterr().out


def test_compression_option_is_the_save_parameter(photo, capsys):
    assert cli.main(["encode", str(photo), "-k", "9", "--compression", "context"]) == cli.OK
    out = photo.with_suffix(".kmc")
    assert cli.main(["info", str(out)]) == cli.OK
    assert "context compression, version 1.1" in capsys.readouterr().out
    with Image.open(photo) as im, Image.open(out) as kmc:
        buffer = io.BytesIO()
        im.save(buffer, "KMC", clusters=9)
        assert np.array_equal(
            np.asarray(kmc.convert("RGB")), np.asarray(Image.open(buffer).convert("RGB"))
        )


def test_existing_output_is_kept_without_force(photo):
    out = photo.with_suffix(".kmc")
    out.write_bytes(b"precious")
    assert cli.main(["encode", str(photo)]) == cli.EXISTS
    assert out.read_bytes() == b"precious"
    assert cli.main(["encode", str(photo), "--force"]) == cli.OK
    assert Image.open(out).format == "KMC"


def test_failed_run_leaves_no_partial_file_and_keeps_the_old_one(photo, tmp_path):
    out = tmp_path / "out.kmc"
    out.write_bytes(b"old")
    assert cli.main(["encode", str(photo), "-o", str(out), "--quality", "90-99", "-f"]) == 99
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_output_gets_ordinary_permissions(photo, tmp_path):
    out = tmp_path / "perm.kmc"
    cli.main(["encode", str(photo), "-o", str(out)])
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_unreadable_input_and_batch_continue(photo, tmp_path, capsys):
    other = tmp_path / "second.png"
    Image.new("RGB", (3, 3), "red").save(other)
    status = cli.main(["encode", str(tmp_path / "missing.png"), str(photo), str(other), "-j", "2"])
    assert status == cli.UNREADABLE
    assert photo.with_suffix(".kmc").exists() and other.with_suffix(".kmc").exists()
    assert "missing.png" in capsys.readouterr().err


def test_not_an_image_is_unreadable(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"hello")
    assert cli.main(["encode", str(bad)]) == cli.UNREADABLE


def test_skip_if_larger(tmp_path):
    tiny = tmp_path / "tiny.png"
    Image.new("L", (1, 1)).save(tiny)
    assert cli.main(["encode", str(tiny), "--skip-if-larger"]) == cli.LARGER
    assert not tiny.with_suffix(".kmc").exists()


def test_quality_chooses_k(photo, tmp_path):
    out = tmp_path / "q.kmc"
    assert cli.main(["encode", str(photo), "-o", str(out), "--quality", "20-28"]) == cli.OK
    k = len(Image.open(out).getcolors(256))
    assert 1 < k < 256


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".gif", ".bmp"])
def test_decode_to_any_pillow_format(photo, tmp_path, ext):
    kmc = tmp_path / "x.kmc"
    cli.main(["encode", str(photo), "-o", str(kmc), "-k", "8"])
    out = tmp_path / f"x{ext}"
    assert cli.main(["decode", str(kmc), str(out)]) == cli.OK
    assert Image.open(out).size == (50, 40)


def test_decode_with_alpha_to_jpeg(tmp_path):
    kmc = tmp_path / "a.kmc"
    Image.new("RGBA", (4, 4), (9, 9, 9, 100)).save(kmc)
    assert cli.main(["decode", str(kmc), str(tmp_path / "a.jpg")]) == cli.OK


def test_npz_round_trip(photo, tmp_path):
    kmc, npz_path, back = tmp_path / "a.kmc", tmp_path / "a.npz", tmp_path / "b.kmc"
    cli.main(["encode", str(photo), "-o", str(kmc), "-k", "20"])
    assert cli.main(["npz", str(kmc), str(npz_path)]) == cli.OK
    assert cli.main(["npz", str(npz_path), str(back)]) == cli.OK
    assert np.array_equal(np.asarray(Image.open(kmc)), np.asarray(Image.open(back)))


def test_bad_usage_is_exit_2(photo, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["encode", str(photo), "-k", "16", "--quality", "30-40"])
    assert e.value.code == cli.USAGE
    assert cli.main(["encode", str(photo), "-k", "0"]) == cli.USAGE
    assert cli.main(["encode", str(photo), str(photo), "-o", "x.kmc"]) == cli.USAGE


def test_stdin_to_stdout_and_module_entry_point(photo):
    run = subprocess.run(
        [sys.executable, "-m", "pil_kmc", "encode", "-", "-o", "-", "-k", "4"],
        input=photo.read_bytes(),
        capture_output=True,
        check=True,
    )
    assert run.stdout.startswith(b"\x89KMC\r\n\x1a\n")
    version = subprocess.run(
        [sys.executable, "-m", "pil_kmc", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("kmc (pil_kmc) ")
