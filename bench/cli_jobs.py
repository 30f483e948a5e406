"""``kmc encode -j 1`` against ``-j 2`` on 20 photos of 512 x 512, whole processes.

    python3 bench/cli_jobs.py [--rounds 5]
    python3 bench/cli_jobs.py --share    # CPU that 1 and 2 busy processes get in 4 s

The photos are scikit-image's colour and gray samples, each resized whole
and as a crop of its top-left 3/4. The two settings run alternately, round
by round, so that both see the same load; the wall and CPU times of every
run are printed, then the best and median ratio. The load average is printed
too: on a machine that other sessions keep busy, Linux's autogroup
scheduling gives this session one share of the cores however many
processes it runs, and -j cannot help.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
           "immunohistochemistry", "retina", "colorwheel", "coins", "camera")  # fmt: skip


def make_photos(folder: Path) -> list[str]:
    from skimage import data

    names = []
    for name in SAMPLES:
        im = Image.fromarray(getattr(data, name)()).convert("RGB")
        w, h = im.size
        for j, box in enumerate([(0, 0, w, h), (0, 0, w * 3 // 4, h * 3 // 4)]):
            path = folder / f"{name}-{j}.png"
            im.crop(box).resize((512, 512), Image.LANCZOS).save(path)
            names.append(str(path))
    return names


def run(photos: list[str], jobs: int) -> tuple[float, float]:
    """Wall and CPU seconds (all processes) of one ``kmc encode`` run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pil_kmc", "encode", *photos, "-j", str(jobs), "-f"],
        check=True,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _spin(queue) -> None:
    end = time.monotonic() + 4
    while time.monotonic() < end:
        pass
    queue.put(time.process_time())


def share() -> None:
    """CPU seconds that 1 and then 2 busy processes of this session get in 4 s, twice."""
    import multiprocessing

    for n in (1, 2, 1, 2):
        queue = multiprocessing.Queue()
        procs = [multiprocessing.Process(target=_spin, args=(queue,)) for _ in range(n)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        cpu = sum(queue.get() for _ in procs)
        print(f"{n} busy process(es): {cpu:.2f} CPU s in 4 s; load {os.getloadavg()[0]:.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--share", action="store_true", help="only the scheduler's share test")
    args = p.parse_args()
    if args.share:
        share()
        return
    with tempfile.TemporaryDirectory() as tmp:
        photos = make_photos(Path(tmp))
        print(f"load average at start: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores")
        walls: dict[int, list[float]] = {1: [], 2: []}
        for r in range(args.rounds):
            for jobs in (1, 2):
                wall, cpu = run(photos, jobs)
                walls[jobs].append(wall)
                print(f"round {r + 1}, -j {jobs}: wall {wall:.2f} s, CPU {cpu:.2f} s", flush=True)
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
        best = min(walls[1]) / min(walls[2])
        median = statistics.median(walls[1]) / statistics.median(walls[2])
        print(f"-j 2 speed-up: {best:.2f}x best against best, {median:.2f}x median against median")


if __name__ == "__main__":
    main()
