"""The kmc command line: encode, info, npz; exit codes; atomic, collision-free writes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import pil_kmc  # noqa: F401
from pil_kmc import cli, layout

ROOT = Path(__file__).resolve().parent.parent


def run_kmc(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -m pil_kmc ARGS`` with this worktree's package."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pil_kmc", *args], capture_output=True, env=env, **kwargs
    )


@pytest.fixture
def photo(tmp_path) -> Path:
    y, x = np.mgrid[0:40, 0:50]
    a = np.stack([x * 5, y * 6, (x * y) % 256], axis=2).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(a).save(path)
    return path


def one_line_error(err: str) -> str:
    """The whole of standard error, checked to be one ``kmc:`` line without a traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kmc: ") and "Traceback" not in err and "<_io." not in err
    return lines[0]


def test_encode_writes_beside_the_input_and_info_speaks_plainly(photo, capsys):
    assert cli.main(["encode", str(photo), "-k", "16"]) == cli.OK
    out = photo.with_suffix(".kmc")
    assert Image.open(out).format == "KMC"
    assert cli.main(["info", str(out)]) == cli.OK
    line = capsys.readouterr().out
    assert ", 50 x 40, RGB, 16 colours (4-bit indices)" in line
    assert f"{out.stat().st_size:,} bytes" in line and "metadata: none" in line


def test_info_names_gray_alpha_and_metadata_sizes(tmp_path, capsys):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "la.kmc"
    Image.new("LA", (6, 5), (90, 200)).save(path, icc_profile=icc, dpi=(300, 300))
    assert cli.main(["info", str(path)]) == cli.OK
    line = capsys.readouterr().out
    assert "6 x 5, gray + alpha, 1 colour" in line
    assert f"ICC profile, {len(icc):,} bytes" in line and "300 x 300 dpi" in line


def test_info_reads_npz_files(photo, tmp_path, capsys):
    kmc, npz_path = tmp_path / "a.kmc", tmp_path / "a.npz"
    cli.main(["encode", str(photo), "-o", str(kmc), "-k", "20"])
    cli.main(["npz", str(kmc), str(npz_path)])
    capsys.readouterr()
    assert cli.main(["info", str(npz_path)]) == cli.OK
    assert ".npz (the original k-means layout), 50 x 40, RGB, 20 colours" in capsys.readouterr().out


def test_info_reads_a_bounded_amount(tmp_path):
    # /dev/zero never ends; neither must info.
    run = run_kmc("info", "/dev/zero", timeout=60)
    assert run.returncode == cli.UNREADABLE
    assert "/dev/zero: not a .kmc or .npz file" in one_line_error(run.stderr.decode())
    # A (sparse) file whose first metadata chunk claims 1.5 GB is not read to its end.
    head = layout.SIGNATURE + layout.chunk(b"KHDR", layout.Header(2, 2, 3, 2, 1).pack())
    huge = tmp_path / "huge.kmc"
    with open(huge, "wb") as f:
        f.write(head + (1_500_000_000).to_bytes(4, "big") + b"teXt")
        f.truncate(1_600_000_000)
    run = run_kmc("info", str(huge), timeout=60)
    assert run.returncode == cli.UNREADABLE
    assert "not inspected further" in one_line_error(run.stderr.decode())


def test_compression_option_is_the_save_parameter(photo, capsys):
    assert cli.main(["encode", str(photo), "-k", "9", "--compression", "context"]) == cli.OK
    out = photo.with_suffix(".kmc")
    assert cli.main(["info", str(out)]) == cli.OK
    assert "KMC 1.1," in capsys.readouterr().out
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
    args = ["encode", str(photo), "-o", str(out), "-k", "2", "--quality", "90-99", "-f"]
    assert cli.main(args) == cli.QUALITY
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
    err = capsys.readouterr().err
    assert "missing.png: cannot read: No such file or directory" in err
    assert "3 files: 2 written, 1 failed" in err.splitlines()[-1]


def test_not_an_image_is_one_line_naming_the_path(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"hello")
    assert cli.main(["encode", str(bad)]) == cli.UNREADABLE
    line = one_line_error(capsys.readouterr().err)
    assert line == f"kmc: {bad}: not an image file that Pillow can read"


def test_skip_if_larger(tmp_path):
    tiny = tmp_path / "tiny.png"
    Image.new("L", (1, 1)).save(tiny)
    assert cli.main(["encode", str(tiny), "--skip-if-larger"]) == cli.LARGER
    assert not tiny.with_suffix(".kmc").exists()


def test_quality_is_pngquants_scale_and_k_is_its_maximum(tmp_path):
    y, x = np.mgrid[0:48, 0:64]
    photo = tmp_path / "smooth.png"
    Image.fromarray((np.stack([x * 4, y * 5, (x + y) * 2], axis=2) % 256).astype(np.uint8)).save(
        photo
    )
    out = tmp_path / "q.kmc"
    assert cli.main(["encode", str(photo), "-o", str(out), "--quality", "0-50"]) == cli.OK
    k = len(Image.open(out).getcolors(256))
    assert 1 < k < 256
    # -k and --quality combine: k is the most colours the target may take.
    args = ["encode", str(photo), "-o", str(out), "-f", "--quality", "0-50", "-k", str(k // 2)]
    assert cli.main(args[:-2]) == cli.OK and len(Image.open(out).getcolors(256)) == k
    assert cli.main(args) == cli.OK
    assert len(Image.open(out).getcolors(256)) == k // 2


def test_quality_below_minimum_is_exit_99(photo, tmp_path, capsys):
    out = tmp_path / "q.kmc"
    assert cli.main(["encode", str(photo), "-o", str(out), "--quality", "65-80", "-k", "4"]) == 99
    line = one_line_error(capsys.readouterr().err)
    assert "quality not reached: 4 colours give quality" in line and "minimum of 65" in line
    assert not out.exists()


def test_psnr_takes_todays_db_targets(photo, tmp_path):
    out = tmp_path / "p.kmc"
    assert cli.main(["encode", str(photo), "-o", str(out), "--psnr", "20-28"]) == cli.OK
    assert 1 < len(Image.open(out).getcolors(256)) < 256


def quality_option(text: str) -> tuple[float, float]:
    return cli.parse(["encode", "in.png", f"--quality={text}"]).quality


@given(st.integers(0, 100), st.integers(0, 100))
def test_quality_ranges_take_pngquants_forms(a, b):
    low, high = min(a, b), max(a, b)
    assert quality_option(f"{low}-{high}") == (low, high)
    assert quality_option(f"{low}-") == (low, 100)
    assert quality_option(f"-{high}") == (0, high)
    assert quality_option(str(high)) == (high * 9 // 10, high)  # pngquant's "N"


@pytest.mark.parametrize(
    "ext, name",
    [("-fs8.kmc", "photo-fs8.kmc"), (".kmc", "photo.kmc"), ("kmc", "photo.kmc"),
     (".small.kmc", "photo.small.kmc")],
)  # fmt: skip
def test_ext_takes_pngquants_forms(photo, ext, name):
    assert cli.main(["encode", str(photo), f"--ext={ext}", "-k", "4"]) == cli.OK
    assert Image.open(photo.parent / name).format == "KMC"


def test_ext_takes_a_dash_suffix_as_the_next_word(photo):
    assert cli.main(["encode", str(photo), "--ext", "-fs8.kmc", "-k", "4"]) == cli.OK
    assert Image.open(photo.parent / "photo-fs8.kmc").format == "KMC"


def test_options_come_before_or_after_the_files(photo):
    assert cli.main(["encode", "-k", "3", str(photo), "--ext", ".a.kmc"]) == cli.OK
    assert len(Image.open(photo.with_suffix(".a.kmc")).getcolors()) == 3


def test_options_are_validated_once_before_any_file_is_read(tmp_path, capsys):
    # The inputs do not exist: reading any of them would add an error line.
    names = [str(tmp_path / f"missing{i}.png") for i in range(3)]
    assert cli.main(["encode", *names, "-k", "0"]) == cli.USAGE
    assert one_line_error(capsys.readouterr().err) == "kmc: clusters must be from 1 to 256, not 0"


@pytest.mark.parametrize("jobs", ["-1", "0", "two"])
def test_jobs_below_one_are_refused(photo, jobs, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["encode", str(photo), "-j", jobs])
    assert e.value.code == cli.USAGE
    assert "-j/--jobs: expected a number of processes, 1 or more" in capsys.readouterr().err


def test_bad_usage_is_exit_2(photo):
    with pytest.raises(SystemExit) as e:
        cli.main(["encode", str(photo), "--psnr", "30-40", "--quality", "30-40"])
    assert e.value.code == cli.USAGE
    assert cli.main(["encode", str(photo), str(photo), "-o", "x.kmc"]) == cli.USAGE


def test_two_inputs_to_one_output_are_refused_before_any_work(tmp_path, capsys):
    for name in ("d.png", "d.PNG"):
        Image.new("RGB", (4, 4), "red" if name == "d.png" else "blue").save(tmp_path / name, "PNG")
    assert cli.main(["encode", str(tmp_path / "d.png"), str(tmp_path / "d.PNG")]) == cli.USAGE
    assert "would both be written to" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "d.kmc").exists()


def test_outputs_differing_only_in_case_are_refused(tmp_path, capsys):
    # x.kmc and X.kmc are one file wherever names ignore case (macOS, Windows).
    for name in ("x.png", "X.png"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    assert cli.main(["encode", str(tmp_path / "x.png"), str(tmp_path / "X.png")]) == cli.USAGE
    assert "would both be written to" in one_line_error(capsys.readouterr().err)
    assert list(tmp_path.glob("*.kmc")) == []


def test_output_that_is_the_input_is_refused_even_with_force(photo, capsys):
    before = photo.read_bytes()
    assert cli.main(["encode", str(photo), "--ext", ".png", "-f"]) == cli.USAGE
    assert "would overwrite the input" in one_line_error(capsys.readouterr().err)
    assert photo.read_bytes() == before
    assert cli.main(["encode", str(photo), "-o", str(photo), "-f"]) == cli.USAGE
    assert photo.read_bytes() == before


def test_an_output_linked_to_the_input_is_refused(photo, tmp_path, capsys):
    before = photo.read_bytes()
    alias = tmp_path / "alias.kmc"
    os.link(photo, alias)
    assert cli.main(["encode", str(photo), "-o", str(alias), "-f"]) == cli.USAGE
    assert "would overwrite the input" in one_line_error(capsys.readouterr().err)
    assert photo.read_bytes() == before


def test_an_output_that_is_another_input_is_refused(photo, tmp_path, capsys):
    kmc = tmp_path / "photo.kmc"
    Image.new("RGB", (4, 4)).save(kmc)
    before = kmc.read_bytes()
    assert cli.main(["encode", str(photo), str(kmc), "-f"]) == cli.USAGE
    assert kmc.read_bytes() == before


def test_symlinks_are_never_replaced_silently(photo, tmp_path, capsys):
    dangling = tmp_path / "dangling.kmc"
    dangling.symlink_to(tmp_path / "nowhere" / "x.kmc")
    assert cli.main(["encode", str(photo), "-o", str(dangling)]) == cli.EXISTS
    assert "is a symbolic link (use --force" in one_line_error(capsys.readouterr().err)
    assert dangling.is_symlink()
    target = tmp_path / "target.kmc"
    target.write_bytes(b"keep")
    link = tmp_path / "link.kmc"
    link.symlink_to(target)
    assert cli.main(["encode", str(photo), "-o", str(link)]) == cli.EXISTS
    assert target.read_bytes() == b"keep"
    # With --force the link itself is replaced by the file; what it pointed to stays.
    assert cli.main(["encode", str(photo), "-o", str(link), "-f"]) == cli.OK
    assert not link.is_symlink() and Image.open(link).format == "KMC"
    assert target.read_bytes() == b"keep"


def test_names_up_to_the_file_system_limit_work(photo, tmp_path):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    out = tmp_path / ("n" * (limit - 4) + ".kmc")
    assert cli.main(["encode", str(photo), "-o", str(out), "-k", "4"]) == cli.OK
    assert Image.open(out).format == "KMC"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([photo.name, out.name])


def test_a_write_failure_names_the_output_not_the_temporary_file(photo, tmp_path, monkeypatch,
                                                                   capsys):  # fmt: skip
    def no_space(src, dst):
        raise OSError(28, "No space left on device", src, dst)

    monkeypatch.setattr(os, "replace", no_space)
    out = tmp_path / "full.kmc"
    assert cli.main(["encode", str(photo), "-o", str(out)]) == cli.FAILED
    line = one_line_error(capsys.readouterr().err)
    assert line == f"kmc: {out}: cannot write: No space left on device"
    assert list(tmp_path.iterdir()) == [photo]


def test_a_missing_output_folder_is_one_line(photo, tmp_path):
    out = tmp_path / "nowhere" / "x.kmc"
    run = run_kmc("encode", str(photo), "-o", str(out))
    assert run.returncode == cli.FAILED
    line = one_line_error(run.stderr.decode())
    assert line == f"kmc: {out}: cannot write: folder {out.parent} does not exist"


def test_first_frame_of_an_animation_only_when_asked(tmp_path, capsys):
    frames = [Image.new("P", (8, 8), i) for i in range(3)]
    for i, f in enumerate(frames):
        f.putpalette([i * 80, 0, 0] * 3)
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50)
    assert cli.main(["encode", str(gif)]) == cli.USAGE
    assert "has 3 frames" in one_line_error(capsys.readouterr().err)
    assert not gif.with_suffix(".kmc").exists()
    assert cli.main(["encode", str(gif), "--first-frame"]) == cli.OK
    kmc = Image.open(gif.with_suffix(".kmc")).convert("RGB")
    assert kmc.getpixel((0, 0)) == (0, 0, 0)


def _jpeg_with_metadata(path: Path) -> tuple[bytes, Image.Exif]:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 30.0)  # a GPS latitude
    a = np.zeros((20, 30, 3), np.uint8)
    a[:, :10] = 255
    Image.fromarray(a).save(path, icc_profile=icc, exif=exif, dpi=(300, 300), xmp=b"<x:xmpmeta/>")
    return icc, exif


def test_encode_keeps_the_inputs_metadata(tmp_path):
    jpeg = tmp_path / "cam.jpg"
    icc, _ = _jpeg_with_metadata(jpeg)
    assert cli.main(["encode", str(jpeg), "-k", "4"]) == cli.OK
    with Image.open(jpeg.with_suffix(".kmc")) as kmc:
        assert kmc.info["icc_profile"] == icc and kmc.info["xmp"] == b"<x:xmpmeta/>"
        assert kmc.getexif()[0x0112] == 6 and kmc.getexif().get_ifd(0x8825)
        assert round(kmc.info["dpi"][0]) == 300


def test_strip_removes_metadata_gps_included_and_applies_the_orientation(tmp_path):
    jpeg = tmp_path / "cam.jpg"
    icc, _ = _jpeg_with_metadata(jpeg)
    assert cli.main(["encode", str(jpeg), "-k", "4", "--strip"]) == cli.OK
    data = jpeg.with_suffix(".kmc").read_bytes()
    kinds = [kind for kind, _ in layout.read(io.BytesIO(data), index=False).ancillary]
    assert kinds == [b"iCCP"]  # the colours' meaning stays; EXIF, GPS, XMP and DPI go
    with Image.open(io.BytesIO(data)) as kmc:
        assert kmc.size == (20, 30)  # turned upright, as the orientation said
        gray = kmc.convert("L")  # the white left columns are now the top rows
        assert gray.getpixel((19, 0)) > 200 and gray.getpixel((0, 29)) < 50


def test_npz_round_trip(photo, tmp_path):
    kmc, npz_path, back = tmp_path / "a.kmc", tmp_path / "a.npz", tmp_path / "b.kmc"
    cli.main(["encode", str(photo), "-o", str(kmc), "-k", "20"])
    assert cli.main(["npz", str(kmc), str(npz_path)]) == cli.OK
    assert zipfile.is_zipfile(npz_path)
    assert cli.main(["npz", str(npz_path), str(back)]) == cli.OK
    assert np.array_equal(np.asarray(Image.open(kmc)), np.asarray(Image.open(back)))


def test_npz_names_a_bad_output_extension(photo, tmp_path, capsys):
    kmc = tmp_path / "x.kmc"
    cli.main(["encode", str(photo), "-o", str(kmc), "-k", "2"])
    assert cli.main(["npz", str(kmc), str(tmp_path / "a.txt")]) == cli.USAGE
    line = one_line_error(capsys.readouterr().err)
    assert line == f"kmc: {tmp_path / 'a.txt'}: the output must end in .npz or .kmc, not '.txt'"


def test_stdin_to_stdout_and_module_entry_point(photo):
    run = run_kmc("encode", "-", "-o", "-", "-k", "4", input=photo.read_bytes(), check=True)
    assert run.stdout.startswith(b"\x89KMC\r\n\x1a\n")
    version = run_kmc("--version", check=True)
    assert version.stdout.decode().startswith("kmc (pil_kmc) ")


def test_floyd_sets_the_dithering_strength_as_pngquant(tmp_path):
    from pil_kmc import cli

    rng = np.random.default_rng(2)
    src = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (30, 40, 4), dtype=np.uint8), "RGBA").save(src)
    outputs = {}
    for flags in (["--nofs"], ["--floyd=0.5"], ["--floyd"], ["--dither"]):
        out = tmp_path / f"out{len(outputs)}.kmc"
        assert cli.main(["encode", str(src), "-k", "8", "-o", str(out), *flags]) == 0
        outputs[flags[0]] = out.read_bytes()
    assert outputs["--floyd"] == outputs["--dither"] != outputs["--floyd=0.5"] != outputs["--nofs"]
    with pytest.raises(SystemExit) as refused:
        cli.main(["encode", str(src), "--floyd=2", "-o", str(tmp_path / "x.kmc")])
    assert refused.value.code == 2


def test_names_after_a_double_dash_may_start_with_a_dash_as_in_pngquant(photo, monkeypatch):
    monkeypatch.chdir(photo.parent)
    (photo.parent / "-photo.png").write_bytes(photo.read_bytes())
    assert cli.main(["encode", "-k", "4", "--", "-photo.png"]) == cli.OK
    assert cli.main(["encode", "-f", "-k", "4", "--", "photo.png", "-photo.png"]) == cli.OK
    assert Image.open("-photo.kmc").format == Image.open("photo.kmc").format == "KMC"
    assert cli.main(["encode", "photo.png", "-k", "4", "-o", "-out.kmc"]) == cli.OK
    assert Image.open("-out.kmc").format == "KMC"
    assert cli.main(["info", "--", "-out.kmc"]) == cli.OK
    assert cli.main(["decode", "--", "-out.kmc", "-out.png"]) == cli.OK
    assert Image.open("-out.png").format == "PNG"


def test_floyd_alone_is_full_strength_and_takes_no_file_name(photo, tmp_path):
    out = tmp_path / "floyd.kmc"
    assert cli.main(["encode", "--floyd", str(photo), "-k", "4", "-o", str(out)]) == cli.OK
    dither = tmp_path / "dither.kmc"
    assert cli.main(["encode", str(photo), "--dither", "-k", "4", "-o", str(dither)]) == cli.OK
    assert out.read_bytes() == dither.read_bytes()


def test_an_empty_output_name_is_refused_not_ignored(photo, capsys):
    assert cli.main(["encode", str(photo), "-o", ""]) == cli.USAGE
    assert "-o needs a file name" in one_line_error(capsys.readouterr().err)
    assert not photo.with_suffix(".kmc").exists()


def test_what_a_save_cannot_keep_is_one_line_and_the_file_is_written(tmp_path, capsys):
    # A PNG's 600 kB of Latin-1 text is 1.2 MB as UTF-8, past a tEXt chunk's 1 MiB.
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "\xe9" * 600_000)
    info.add_text("Title", "kept")
    src = tmp_path / "text.png"
    Image.new("RGB", (8, 8), "teal").save(src, pnginfo=info)
    assert cli.main(["encode", str(src), "-k", "4"]) == cli.OK
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"kmc: {src}: info['Comment'] not written")
    with Image.open(src.with_suffix(".kmc")) as kmc:
        assert kmc.info["Title"] == "kept" and "Comment" not in kmc.info


def test_a_cmyk_profile_does_not_follow_the_pixels_into_rgb(tmp_path):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "print.jpg"
    cmyk_profile = srgb[:16] + b"CMYK" + srgb[20:]
    Image.new("CMYK", (8, 8), (0, 200, 200, 0)).save(src, icc_profile=cmyk_profile)
    assert cli.main(["encode", str(src), "-k", "4"]) == cli.OK
    assert "icc_profile" not in Image.open(src.with_suffix(".kmc")).info


def test_images_without_a_fixed_range_are_one_plain_line(tmp_path, capsys):
    src = tmp_path / "float.tif"
    Image.new("F", (4, 4), 0.5).save(src)
    assert cli.main(["encode", str(src)]) == cli.FAILED
    assert one_line_error(capsys.readouterr().err) == (
        f"kmc: {src}: F images have no fixed range; scale them to 8 or 16 bits first"
    )


def test_a_decompression_bomb_warning_is_one_line_naming_the_file(photo, monkeypatch, capsys):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # the photo has 2,000
    assert cli.main(["encode", str(photo), "-k", "4"]) == cli.OK
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"kmc: {photo}: Image size (2000 pixels) exceeds limit")


def test_an_option_left_without_its_value_before_a_double_dash_is_a_usage_error(photo, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["encode", str(photo), "-k", "--", str(photo)])
    assert e.value.code == cli.USAGE
    assert "-k needs a value before --" in capsys.readouterr().err


def test_encoding_in_a_thread_leaves_the_processs_warning_settings_alone(photo, monkeypatch):
    # A Dask worker runs tasks in threads: catch_warnings there would change
    # the settings that every other thread sees, and overlapping ones mix up
    # their notes.
    import threading
    import warnings

    callers, original = [], warnings.catch_warnings

    def catch_warnings(*args, **kwargs):
        callers.append(threading.current_thread())
        return original(*args, **kwargs)

    monkeypatch.setattr(cli.warnings, "catch_warnings", catch_warnings, raising=True)
    job = cli.EncodeJob(str(photo), str(photo.with_suffix(".kmc")), {"clusters": 4})
    results = []
    thread = threading.Thread(target=lambda: results.append(cli.encode_one(job)))
    thread.start()
    thread.join()
    assert results[0].status == cli.OK and thread not in callers
    assert cli.encode_one(job).status == cli.OK and callers == [threading.main_thread()]
