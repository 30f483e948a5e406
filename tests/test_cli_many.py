"""kmc encode --shared-palette, --map and --scheduler (without a cluster; see test_distributed)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pil_kmc
from pil_kmc import cli

ROOT = Path(__file__).resolve().parent.parent


def kpal(path: Path) -> bytes:
    with Image.open(path) as im:
        im.load()  # the palette, decoded (before loading Pillow keeps it raw)
        return bytes(im.palette.tobytes()) if im.mode == "P" else b""


@pytest.fixture
def collection(tmp_path) -> list[Path]:
    paths = []
    for i in range(4):
        y, x = np.mgrid[0 : 30 + i, 0:40]
        a = np.stack([(x * 6 + 40 * i) % 256, y * 8, (x * y) % 256], axis=2).astype(np.uint8)
        path = tmp_path / f"frame{i}.png"
        Image.fromarray(a).save(path)
        paths.append(path)
    return paths


def run(*args: str, stdin: bytes = b"", env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pil_kmc", *args], input=stdin, capture_output=True, env=environment
    )


def test_shared_palette_gives_every_output_the_palette_of_the_python_api(collection):
    names = [str(p) for p in collection]
    assert cli.main(["encode", *names, "--shared-palette", "-k", "24", "--seed", "2"]) == cli.OK
    palette = pil_kmc.shared_palette(collection, 24, seed=2)
    for path in collection:
        out = path.with_suffix(".kmc")
        assert kpal(out) == palette.tobytes()
        buffer = io.BytesIO()
        Image.open(path).save(buffer, "KMC", palette=palette)
        assert out.read_bytes() == buffer.getvalue()


def test_a_shared_palette_does_not_depend_on_which_outputs_exist(collection, capsys):
    # The same command gives the same palette: kept outputs still count.
    names = [str(p) for p in collection]
    assert cli.main(["encode", *names, "--shared-palette", "-k", "16"]) == cli.OK
    first = {p: p.with_suffix(".kmc").read_bytes() for p in collection}
    collection[1].with_suffix(".kmc").unlink()
    assert cli.main(["encode", *names, "--shared-palette", "-k", "16"]) == cli.EXISTS
    assert {p: p.with_suffix(".kmc").read_bytes() for p in collection} == first
    capsys.readouterr()


def test_shared_palette_with_two_processes_writes_the_same_bytes(collection, tmp_path):
    names = [str(p) for p in collection]
    assert cli.main(["encode", *names, "--shared-palette", "-k", "16", "-j", "1"]) == cli.OK
    one = [p.with_suffix(".kmc").read_bytes() for p in collection]
    assert cli.main(["encode", *names, "--shared-palette", "-k", "16", "-j", "2", "-f"]) == cli.OK
    assert [p.with_suffix(".kmc").read_bytes() for p in collection] == one


def test_a_broken_input_is_reported_and_the_others_share_the_rest(collection, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    missing = tmp_path / "missing.png"
    names = [str(collection[0]), str(broken), str(missing), *map(str, collection[1:])]
    assert cli.main(["encode", *names, "--shared-palette", "-k", "8"]) == cli.UNREADABLE
    err = capsys.readouterr().err
    assert "broken.png: cannot read image" in err and "missing.png: cannot read" in err
    assert not broken.with_suffix(".kmc").exists() and not missing.with_suffix(".kmc").exists()
    palette = pil_kmc.shared_palette(collection, 8)
    assert all(kpal(p.with_suffix(".kmc")) == palette.tobytes() for p in collection)


def test_map_remaps_to_the_palette_of_a_file(collection, tmp_path):
    first = collection[0]
    assert cli.main(["encode", str(first), "-k", "12"]) == cli.OK
    palette_file = first.with_suffix(".kmc")
    out = tmp_path / "mapped.kmc"
    assert cli.main(["encode", str(collection[1]), "--map", str(palette_file), "-o", str(out)]) == 0
    assert kpal(out) == kpal(palette_file)
    with Image.open(palette_file) as given:
        buffer = io.BytesIO()
        Image.open(collection[1]).save(buffer, "KMC", palette=given)
    assert out.read_bytes() == buffer.getvalue()


def test_map_reads_standard_input(collection, tmp_path):
    gif = tmp_path / "palette.gif"
    Image.open(collection[0]).quantize(5).save(gif)
    done = run("encode", "-", "--map", str(gif), "-o", "-", stdin=collection[2].read_bytes())
    assert done.returncode == 0, done.stderr
    with Image.open(io.BytesIO(done.stdout)) as kmc, Image.open(gif) as given:
        assert kmc.getpalette()[: 3 * 5] == given.getpalette()[: 3 * 5]


def test_bad_maps_and_conflicting_options_fail_with_their_statuses(collection, tmp_path, capsys):
    src = str(collection[0])
    assert cli.main(["encode", src, "--map", src]) == cli.USAGE  # a photo: too many colours
    assert "1 to 256" in capsys.readouterr().err
    assert cli.main(["encode", src, "--map", str(tmp_path / "none.png")]) == cli.UNREADABLE
    assert cli.main(["encode", src, "--map", src, "--quality", "30-40"]) == cli.USAGE
    assert cli.main(["encode", "-", "--shared-palette"]) == cli.USAGE
    assert cli.main(["encode", src, "--shared-palette", "-k", "0"]) == cli.USAGE
    assert not collection[0].with_suffix(".kmc").exists()
    with pytest.raises(SystemExit) as e:  # argparse: one or the other
        cli.main(["encode", src, "--map", src, "--shared-palette"])
    assert e.value.code == cli.USAGE


def test_without_dask_the_local_path_works_and_scheduler_says_what_to_install(collection, tmp_path):
    blocker = tmp_path / "no_dask"
    (blocker / "distributed").mkdir(parents=True)
    (blocker / "distributed" / "__init__.py").write_text("raise ImportError('blocked')\n")
    env = {"PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}"}
    names = [str(p) for p in collection]
    done = run(
        "encode",
        *names,
        "--shared-palette",
        "-k",
        "8",
        "--scheduler",
        "tcp://127.0.0.1:8786",
        env=env,
    )
    assert done.returncode == cli.USAGE
    assert b"pip install 'pil-kmc[dask]'" in done.stderr
    assert not collection[0].with_suffix(".kmc").exists()
    done = run("encode", *names, "--shared-palette", "-k", "8", env=env)
    assert done.returncode == 0, done.stderr
    assert (
        kpal(collection[3].with_suffix(".kmc")) == pil_kmc.shared_palette(collection, 8).tobytes()
    )
