"""kmc encode in batches and under signals: reports as files finish, no debris, no late output.

Slow steps are simulated in a child process (a slow disk, a slow encoder),
so that a signal lands exactly where it used to do damage.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pil_kmc import cli

ROOT = Path(__file__).resolve().parent.parent

SLOW = textwrap.dedent(
    """
    import os, sys, time
    from pil_kmc import cli
    what, delay = sys.argv[1], float(sys.argv[2])
    if what == "disk":  # every fsync takes a while, as on a slow or busy disk
        real_fsync = os.fsync
        def fsync(fd):
            time.sleep(delay)
            real_fsync(fd)
        os.fsync = fsync
    else:  # every encode takes a while (workers are forked, so they inherit this)
        real_encode = cli.encode_one
        def encode_one(job):
            time.sleep(delay)
            return real_encode(job)
        cli.encode_one = encode_one
    sys.exit(cli.main(sys.argv[3:]))
    """
)


def start(tmp_path: Path, what: str, delay: float, *args: str) -> subprocess.Popen:
    script = tmp_path / "slow.py"
    script.write_text(SLOW)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(script), what, str(delay), *args],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell job has
    )


def wait_for(pattern: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not glob.glob(pattern):
        assert time.monotonic() < end, f"nothing matched {pattern}"
        time.sleep(0.01)


def small_images(folder: Path, n: int) -> list[str]:
    names = []
    for i in range(n):
        path = folder / f"in{i}.png"
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(path)
        names.append(path.name)
    return names


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_during_a_write_leaves_no_temporary_file(tmp_path, signame):
    (name,) = small_images(tmp_path, 1)
    proc = start(tmp_path, "disk", 0.5, "encode", name, "-k", "2")
    wait_for(str(tmp_path / ".kmc-*.tmp"))
    sig = getattr(signal, signame)
    proc.send_signal(sig)
    assert proc.wait(30) == 128 + sig
    assert proc.stderr.read() == ""
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # The write under way was finished, not cut: the output is whole.
    assert Image.open(tmp_path / "in0.kmc").size == (8, 8)


@pytest.mark.skipif(
    multiprocessing.get_start_method() != "fork", reason="the slow encoder reaches workers by fork"
)
def test_after_ctrl_c_no_new_output_is_started(tmp_path):
    names = small_images(tmp_path, 6)
    proc = start(tmp_path, "encode", 1.0, "encode", *names, "-j", "2", "-k", "2")
    wait_for(str(tmp_path / "in*.kmc"))
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    assert proc.wait(30) == 130
    assert "not done (interrupted)" in proc.stderr.read()
    written = sorted(glob.glob(str(tmp_path / "in*.kmc")))
    time.sleep(2.5)  # the remaining encodes would have finished by now
    assert sorted(glob.glob(str(tmp_path / "in*.kmc"))) == written
    assert len(written) < 6
    with pytest.raises(ProcessLookupError):  # no worker outlives the command
        os.killpg(proc.pid, 0)


def test_sigterm_to_the_main_process_stops_the_workers_too(tmp_path):
    names = small_images(tmp_path, 6)
    proc = start(tmp_path, "encode", 1.0, "encode", *names, "-j", "2", "-k", "2")
    wait_for(str(tmp_path / "in*.kmc"))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 128 + signal.SIGTERM
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)


def test_reports_come_as_files_finish_and_a_summary_ends_the_batch(tmp_path):
    big = tmp_path / "big.png"  # slow to encode, so it finishes last
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    Image.fromarray(noise).save(big)
    names = ["big.png", *small_images(tmp_path, 3), "missing.png"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "pil_kmc", "encode", *names, "-j", "2", "-v"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = run.stderr.splitlines()
    assert run.returncode == cli.UNREADABLE
    order = [line.removeprefix("kmc: ").split(":")[0].split(" ->")[0] for line in lines[:-1]]
    assert sorted(order) == sorted(names)
    assert order.index("missing.png") < order.index("big.png")  # not held back to the end
    assert order[-1] == "big.png"
    total_in = sum((tmp_path / n).stat().st_size for n in names[:-1])
    total_out = sum((tmp_path / n).with_suffix(".kmc").stat().st_size for n in names[:-1])
    assert lines[-1] == (
        f"5 files: 4 written, 1 failed; {total_in:,} bytes in, {total_out:,} bytes out "
        f"({total_out / total_in:.1%} of the input)"
    )


def test_the_progress_bar_counts_finished_files(tmp_path, monkeypatch, capsys):
    names = ["missing.png", *small_images(tmp_path, 2)]
    inputs = [str(tmp_path / n) for n in names]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert cli.main(["encode", *inputs, "-k", "3", "-j", "1"]) == cli.UNREADABLE
    err = capsys.readouterr().err
    # Each finished file moves the bar on; messages and the summary clear it first.
    assert "\r\033[Kkmc: " in err and "\r\033[K3 files: 2 written, 1 failed" in err
    steps = [err.index(text) for text in ("cannot read", "] 1/3", "] 2/3", "3 files")]
    assert steps == sorted(steps)


def test_jobs_do_not_change_the_bytes(tmp_path):
    names = small_images(tmp_path, 4)
    for jobs in ("1", "2"):
        assert cli.main(["encode", *[str(tmp_path / n) for n in names], "-k", "3", "-j", jobs,
                         f"--ext=-{jobs}.kmc"]) == cli.OK  # fmt: skip
    for n in names:
        stem = tmp_path / Path(n).stem
        assert Path(f"{stem}-1.kmc").read_bytes() == Path(f"{stem}-2.kmc").read_bytes()
