"""Many images: a shared palette's quality and cost, and batch throughput on Dask.

    python3 bench/many.py            # about 5 minutes on 2 cores
    python3 bench/many.py --quick    # a smoke run: fewer images, one round

In one run, on photographs bundled with scikit-image, scikit-learn and
matplotlib, and crops and resizes of them (no download):

1. PSNR of every image saved with one palette shared by the whole
   collection (``pil_kmc.shared_palette``, then ``palette=``) against its
   own k-means palette, at k = 64 and 256; and the same for small
   "sequences" (the crops and resizes of one photo sharing a palette);
2. the time to make the shared palette from merged per-image histograms,
   against pil_kmc's k-means on all pixels concatenated into one image
   (the same palette: the merged histogram is that image's histogram) and
   against scikit-learn's ``KMeans`` on the concatenated pixels;
3. throughput of ``kmc encode`` on 40 photos (fitted into 1024 x 1024):
   ``-j 1`` and ``-j 2`` against ``--scheduler`` on a standing
   ``dask.distributed.LocalCluster`` of 1 and 2 worker processes (one
   thread each). Each is a whole ``kmc`` process,
   timed on the wall clock; the configurations take turns, round after
   round, and each keeps its fastest round. The Dask outputs are checked to
   be byte-identical to ``-j 1``'s.

Writes the tables to stdout and to ``bench/out/many.md``.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pil_kmc  # noqa: E402
from pil_kmc import coding, palettes, quantize  # noqa: E402

OUT = ROOT / "bench" / "out"


def photographs() -> list[tuple[str, Image.Image]]:
    """Colour photographs that ship with the installed packages."""
    import matplotlib.cbook
    import skimage.data as data
    from sklearn.datasets import load_sample_images

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"]
    names += ["hubble_deep_field", "retina", "colorwheel"]
    photos = [(n, Image.fromarray(getattr(data, n)()).convert("RGB")) for n in names]
    sample = load_sample_images()
    photos += [
        (Path(f).stem, Image.fromarray(a))
        for f, a in zip(sample.filenames, sample.images, strict=True)
    ]
    hopper = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    photos.append(("grace_hopper", Image.open(hopper).convert("RGB")))
    return photos


def fit(im: Image.Image, side: int) -> Image.Image:
    scale = side / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.LANCZOS)


def variants(name: str, im: Image.Image, side: int) -> list[tuple[str, Image.Image]]:
    """The photo fitted into side x side, and three crops of it, resized likewise."""
    w, h = im.size
    crops = {
        "centre": (w // 5, h // 5, w - w // 5, h - h // 5),
        "left": (0, 0, w // 2, h),
        "top": (0, 0, w, h // 2),
    }
    out = [(name, fit(im, side))]
    out += [(f"{name}-{part}", fit(im.crop(box), side)) for part, box in crops.items()]
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def kmc_psnr(im: Image.Image, **params) -> float:
    buffer = io.BytesIO()
    im.save(buffer, "KMC", **params)
    with Image.open(buffer) as kmc:
        return psnr(np.asarray(im), np.asarray(kmc.convert("RGB")))


def quality(collection, ks) -> list[str]:
    lines = [
        "| k | collection | images | own palette PSNR dB (median) | shared PSNR dB (median) "
        "| shared − own, median (worst) |",
        "|---|---|---|---|---|---|",
    ]
    groups = {}
    for name, im in collection:
        groups.setdefault(name.split("-")[0], []).append(im)
    for k in ks:
        own = [kmc_psnr(im, clusters=k) for _, im in collection]
        shared_all = pil_kmc.shared_palette([im for _, im in collection], k)
        shared = [kmc_psnr(im, palette=shared_all) for _, im in collection]
        diff = [s - o for s, o in zip(shared, own, strict=True)]
        lines.append(
            f"| {k} | all {len(collection)} photos, one palette | {len(collection)} "
            f"| {statistics.median(own):.2f} | {statistics.median(shared):.2f} "
            f"| {statistics.median(diff):+.2f} ({min(diff):+.2f}) |"
        )
        seq_shared, seq_own = [], []
        for members in groups.values():
            palette = pil_kmc.shared_palette(members, k)
            seq_shared += [kmc_psnr(im, palette=palette) for im in members]
            seq_own += [kmc_psnr(im, clusters=k) for im in members]
        diff = [s - o for s, o in zip(seq_shared, seq_own, strict=True)]
        lines.append(
            f"| {k} | {len(groups)} sequences of 4 (one palette each) | {len(seq_own)} "
            f"| {statistics.median(seq_own):.2f} | {statistics.median(seq_shared):.2f} "
            f"| {statistics.median(diff):+.2f} ({min(diff):+.2f}) |"
        )
    return lines


def best_of(f, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def clustering_time(collection, k: int, sklearn: bool) -> list[str]:
    arrays = [np.asarray(im) for _, im in collection]
    pixels = sum(a.shape[0] * a.shape[1] for a in arrays)
    concatenated = np.concatenate([a.reshape(1, -1, 3) for a in arrays], axis=1)

    def merged():
        hists = [palettes.image_histogram(im) for _, im in collection]
        return palettes.palette_from_histogram(palettes.merge_histograms(hists), k)

    def whole():
        return quantize.quantize(concatenated, k).palette

    # The same histogram, so the same k-means; a shared palette comes in coding's order.
    expected = whole()
    assert np.array_equal(merged(), expected[coding.palette_order(expected)])
    t_merged, t_whole = best_of(merged, 7), best_of(whole, 7)
    palette = merged()

    def collection_psnr(pal):
        ims = [im for _, im in collection]
        return statistics.median(kmc_psnr(im, palette=pal) for im in ims)

    lines = [
        f"{len(collection)} images, {pixels:,} pixels, k = {k}, one palette for all:",
        "",
        "| method | time s | median PSNR dB with its palette |",
        "|---|---|---|",
        f"| merged per-image histograms, one k-means (pil_kmc) | {t_merged:.3f} "
        f"| {collection_psnr(palette):.2f} |",
        f"| pil_kmc k-means on the concatenated pixels (same palette) | {t_whole:.3f} "
        f"| {collection_psnr(palette):.2f} |",
    ]
    if sklearn:
        from sklearn.cluster import KMeans

        x = concatenated.reshape(-1, 3).astype(np.float64)
        start = time.perf_counter()
        km = KMeans(k, init="k-means++", n_init=1, random_state=0).fit(x)
        t_sk = time.perf_counter() - start
        pal = np.clip(np.rint(km.cluster_centers_), 0, 255).astype(np.uint8)
        lines.append(
            f"| scikit-learn KMeans on the concatenated pixels (n_init=1, once) | {t_sk:.3f} "
            f"| {collection_psnr(pal):.2f} |"
        )
    ratio = t_whole / t_merged
    lines += ["", f"Merged histograms take {1 / ratio:.2f}x the time of the concatenated pixels."]
    return lines


def _cpu_seconds() -> float:
    """CPU time of this process's finished children and of its live ones (the clusters)."""
    import resource

    import psutil  # a dependency of dask.distributed

    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = done.ru_utime + done.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # ended meanwhile: counted above once it is waited for
            continue
        total += times.user + times.system
    return total


def throughput(photos, rounds: int, k: int) -> list[str]:
    try:
        from distributed import LocalCluster
    except ImportError:
        return ["Dask is not installed (pip install 'pil-kmc[dask]'): throughput skipped."]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    work = Path(tempfile.mkdtemp(prefix="kmc-many-"))
    sources = []
    for i, (name, im) in enumerate(photos):
        path = work / f"{i:02}-{name}.png"
        im.save(path)
        sources.append(path)
    clusters = {}
    for n in (1, 2):
        clusters[n] = LocalCluster(
            n_workers=n,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    configs = {
        "kmc encode -j 1": ["-j", "1"],
        "kmc encode -j 2": ["-j", "2"],
        "--scheduler, 1 Dask worker": ["--scheduler", clusters[1].scheduler_address],
        "--scheduler, 2 Dask workers": ["--scheduler", clusters[2].scheduler_address],
    }
    best = {name: float("inf") for name in configs}
    cpu = {name: [] for name in configs}
    loads = {name: [] for name in configs}  # other work on the machine skews the walls
    outputs = {}
    try:
        for _ in range(rounds):
            for name, extra in configs.items():
                cmd = [sys.executable, "-m", "pil_kmc", "encode", *map(str, sources)]
                cmd += ["-k", str(k), "-f", *extra]
                loads[name].append(os.getloadavg()[0])
                cpu_before = _cpu_seconds()
                start = time.perf_counter()
                subprocess.run(cmd, check=True, env=env)
                best[name] = min(best[name], time.perf_counter() - start)
                cpu[name].append(_cpu_seconds() - cpu_before)
                outputs[name] = [p.with_suffix(".kmc").read_bytes() for p in sources]
    finally:
        for c in clusters.values():
            c.close()
    same = all(outputs[name] == outputs["kmc encode -j 1"] for name in configs)
    pixels = sum(im.width * im.height for _, im in photos)
    base = best["kmc encode -j 1"]
    lines = [
        f"{len(photos)} photos ({pixels / 1e6:.1f} MP in all), k = {k}, whole `kmc` process, "
        f"best of {rounds} rounds:",
        "",
        "| run | wall s | photos/s | speed-up over -j 1 | CPU s (median) "
        "| 1-min load average before its rounds |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in best.items():
        load = ", ".join(f"{x:.1f}" for x in loads[name])
        used = statistics.median(cpu[name])
        lines.append(
            f"| {name} | {t:.2f} | {len(photos) / t:.2f} | {base / t:.2f}x | {used:.1f} | {load} |"
        )
    lines += [
        "",
        "CPU s: user + system time of the `kmc` process and its pool, and of every",
        "process of both standing clusters (their idle upkeep included), in one run.",
    ]
    lines += ["", f"Dask outputs byte-identical to `-j 1`: {'yes' if same else 'NO'}."]
    for path in sources:
        path.unlink()
        path.with_suffix(".kmc").unlink()
    work.rmdir()
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer images, one round")
    p.add_argument(
        "--only", choices=("quality", "time", "throughput"), help="run one part of the three"
    )
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds (default 3)")
    args = p.parse_args()
    photos = photographs()
    if args.quick:
        photos = photos[:4]
    collection = [v for name, im in photos for v in variants(name, im, 320)]
    command = " ".join(["python3 bench/many.py", *sys.argv[1:]])
    report = ["# Many images (bench/many.py)", "", f"`{command}`", ""]
    if args.only in (None, "quality"):
        report += ["## Shared against per-image palettes", ""]
        report += quality(collection, (64, 256))
    if args.only in (None, "time"):
        report += ["", "## Making the shared palette", ""]
        report += clustering_time(collection, 64, sklearn=True)
    if args.only in (None, "throughput"):
        big = [v for name, im in photos for v in variants(name, im, 1024)]
        batch = big[:40] if not args.quick else big[:8]
        report += ["", "## Batch throughput", ""]
        report += throughput(batch, 1 if args.quick else args.rounds, 256)
    text = "\n".join(report) + "\n"
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"many{'-' + args.only if args.only else ''}.md").write_text(text)


if __name__ == "__main__":
    main()
