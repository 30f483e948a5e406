"""The k-means against its anchors, side by side in one run: quality, time, memory.

    python3 bench/kmeans.py                  # every image, k = 16 64 256 (about 5 min)
    python3 bench/kmeans.py --quick          # three photographs, no 9.4 MP runs
    python3 bench/kmeans.py --peers FILE     # reuse scikit-learn / pngquant PSNRs from a
                                             # previous --json FILE (while developing)
    python3 bench/kmeans.py --peers FILE --split tune --seeds 3 --no-timing \
        --set MOMENTUM=0                     # tuning: a half of the photographs, seeds
                                             # 0-2 averaged, a k-means constant changed

Tuning: ``--split tune`` takes the photographs at even positions in
bench/corpus.py's catalogue order, ``--split hold`` those at odd positions,
held out to check what the tune half chose. ``--seeds N`` saves each image
with seeds 0 to N - 1 and reports the mean PSNR (a seed alone moves a
k = 256 result by a few hundredths of a dB), plus how many single runs fell
more than 0.02 dB below scikit-learn. ``--set NAME=VALUE`` overrides a
constant of pil_kmc.kmeans (VALUE a Python literal) for the run.

Quality: per image and k, the PSNR of pil_kmc's default save against
scikit-learn ``KMeans(n_init=1, random_state=0)`` on the same pixels (its
centroids rounded to 8 bits, every pixel then given its nearest rounded
entry, which is never worse than its own labels) and against pngquant 2.17
``--speed 1 --nofs``; then min, median and max of the differences per k.

Time, measured before the quality runs (scikit-learn's leave threads
behind that take the cores for a while): the in-process save (``Image.save``
into memory) and its quantize stage (``encoder.quantize_image``) of a
512 x 512 photograph at k = 256, against pngquant ``--speed 4 --nofs``'s
whole process, the three interleaved, best of five each;
and at 9.4 MP, pil_kmc's whole process against pngquant's, with the peak RSS
of each (``ru_maxrss`` of that child alone).

The images: bench/corpus.py's photographs and others (gray and RGBA) when it
is there, else scikit-image's and scikit-learn's bundled photographs plus a gray and an
RGBA image.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's pil_kmc, not an installed one
sys.path.insert(0, str(ROOT / "bench"))
import run  # noqa: E402  (bench/run.py: the peers' measurement)

_PATH = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(_PATH)}
PY = sys.executable
REPEATS = 5
KS = (16, 64, 256)

SAVE = (
    "import sys, pil_kmc; from PIL import Image; "
    "Image.open(sys.argv[1]).save(sys.argv[2], 'KMC', clusters=int(sys.argv[3]))"
)


def images(quick: bool) -> list[tuple[str, Image.Image]]:
    """(name, image) pairs: the bench corpus if present, else the bundled photographs."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import corpus  # bench/corpus.py, from the bench branch
    except ImportError:
        corpus = None
    if corpus is not None and hasattr(corpus, "photographs"):
        if quick:
            return list(corpus.photographs())[:3]
        return [*corpus.photographs(), *corpus.others()]
    import skimage.data as data
    from sklearn.datasets import load_sample_images

    samples = load_sample_images()
    named = dict(zip(("china", "flower"), samples.images, strict=True))
    photos = (
        ["astronaut", "coffee", "china"]
        if quick
        else [
            "astronaut",
            "coffee",
            "chelsea",
            "rocket",
            "immunohistochemistry",
            "hubble_deep_field",
            "china",
            "flower",
            "motorcycle",
            "camera",
            "logo",
        ]
    )
    out = []
    for name in photos:
        if name in named:
            a = named[name]
        elif name == "motorcycle":
            a = data.stereo_motorcycle()[0]
        else:
            a = getattr(data, name)()
        out.append((name, Image.fromarray(a)))
    return out


def _photographs() -> list:
    """The colour photographs of the corpus (or the bundled ones), in catalogue order."""
    try:
        import corpus
    except ImportError:
        return images(quick=False)
    return corpus.photographs()


def model(im: Image.Image, like: Image.Image | None = None) -> np.ndarray:
    """The pixels as (N, C) float64, in the colour model pil_kmc stores ``like`` (or im) in."""
    mode = {"L": "L", "LA": "LA", "RGBA": "RGBA"}.get((like or im).mode, "RGB")
    a = np.asarray(im.convert(mode), dtype=np.float64)
    a = a.reshape(-1, 1 if a.ndim == 2 else a.shape[2])
    if mode in ("LA", "RGBA"):  # as seen: premultiplied by alpha (bench/run.py's seen())
        a[:, :-1] *= a[:, -1:] / 255
    return a


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def pil_kmc_psnr(im: Image.Image, k: int, seed: int = 0) -> float:
    import pil_kmc  # noqa: F401

    buffer = io.BytesIO()
    im.save(buffer, "KMC", clusters=k, seed=seed)
    buffer.seek(0)
    with Image.open(buffer) as back:
        return psnr(model(im), model(back, im))


def sklearn_psnr(im: Image.Image, k: int) -> float:
    from scipy.spatial import cKDTree
    from sklearn.cluster import KMeans

    x = model(im)
    km = KMeans(k, init="k-means++", n_init=1, random_state=0).fit(x)
    palette = np.clip(np.rint(km.cluster_centers_), 0, 255)
    return psnr(x, palette[cKDTree(palette).query(x)[1]])


def pngquant(src: Path, dst: Path, k: int, speed: int) -> dict:
    cmd = ["pngquant", "--nofs", "--speed", str(speed), "--force", "--output", str(dst), str(k)]
    return measure([*cmd, str(src)])


# The same whole-process measurement as bench/run.py's.
MEASURE = run.MEASURE


def measure(cmd: list[str]) -> dict:
    """Wall time and peak RSS of ``cmd`` as a process of its own."""
    out = subprocess.run(
        [PY, "-c", MEASURE, *cmd], capture_output=True, text=True, check=True, env=CHILD_ENV
    )
    result = json.loads(out.stdout)
    if result["rc"] != 0:
        raise RuntimeError(f"{cmd[0]} failed: {result['err']}")
    return result


def best(f, n: int = REPEATS) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def quality(pictures, ks, work: Path, peers: dict, log: Path | None, seeds: int = 1) -> list[dict]:
    rows = []
    for name, im in pictures:
        src = work / "src.png"
        im.save(src)
        for k in ks:
            key = f"{name}/{k}"
            runs = [pil_kmc_psnr(im, k, seed) for seed in range(seeds)]
            row = {"image": name, "k": k, "pil_kmc": statistics.fmean(runs), "runs": runs}
            if key in peers:
                row.update(sklearn=peers[key]["sklearn"], pngquant=peers[key]["pngquant"])
            else:
                pngquant(src, work / "pq.png", k, 1)
                with Image.open(work / "pq.png") as out:
                    row["pngquant"] = psnr(model(im), model(out, im))
                row["sklearn"] = sklearn_psnr(im, k)
            rows.append(row)
            if log:  # as it goes, so that an interrupted run's peers can be reused
                log.write_text(json.dumps({"rows": rows}, indent=1))
            print(
                f"  {name:22s} k={k:3d}  pil_kmc {row['pil_kmc']:.3f}  sklearn {row['sklearn']:.3f}"
                f"  pngquant {row['pngquant']:.3f}",
                file=sys.stderr,
                flush=True,
            )
    return rows


def timing(work: Path, big: bool) -> dict:
    import skimage.data as data

    import pil_kmc  # noqa: F401
    from pil_kmc import encoder

    photo = Image.fromarray(data.astronaut())
    src = work / "photo.png"
    photo.save(src)
    options = encoder.save_options({"clusters": 256})
    # Interleaved, so that a busy moment of a shared machine falls on both sides.
    runs: dict[str, list[float]] = {"save": [], "quantize": [], "pngquant": []}
    for _ in range(REPEATS):
        runs["save"].append(best(lambda: photo.save(io.BytesIO(), "KMC", clusters=256), 1))
        runs["quantize"].append(best(lambda: encoder.quantize_image(photo, options), 1))
        runs["pngquant"].append(pngquant(src, work / "pq.png", 256, 4)["wall"])
    out = {name: min(values) for name, values in runs.items()}
    if big:
        large = photo.resize((3072, 3072), Image.LANCZOS)
        src = work / "large.png"
        large.save(src)
        runs = [measure([PY, "-c", SAVE, str(src), str(work / "l.kmc"), "256"]) for _ in range(3)]
        pq = [pngquant(src, work / "pq.png", 256, 4) for _ in range(3)]
        out.update(
            big_save=min(r["wall"] for r in runs),
            big_rss=max(r["rss_mb"] for r in runs),
            big_pngquant=min(r["wall"] for r in pq),
            big_pngquant_rss=max(r["rss_mb"] for r in pq),
        )
    return out


def lookups() -> str:
    """Nearest-entry lookup times: the exact product, vq and a k-d tree (see the README)."""
    import skimage.data as data
    from scipy.cluster.vq import vq
    from scipy.spatial import cKDTree

    from pil_kmc import exact, quantize

    hist = quantize.histogram(data.astronaut())
    colours = quantize.key_colours(hist.unique, 3)
    lab = quantize.to_oklab(colours)
    rng = np.random.default_rng(0)
    lines = [
        f"Lookup of the {len(colours):,} distinct colours of astronaut, ms (best of {REPEATS}):",
        "",
        "| k | RGB: exact product | RGB: vq | Oklab: vq | Oklab: k-d tree |",
        "|---|---|---|---|---|",
    ]
    x, x32 = exact.with_ones(colours.astype(np.float32)), colours.astype(np.float32)
    for k in KS:
        palette = colours[rng.choice(len(colours), k, replace=False)]
        p, pl = palette.astype(np.float32), quantize.to_oklab(palette)
        calls = (
            (exact.closest, x, p),
            (lambda a, b: vq(a, b, check_finite=False), x32, p),
            (lambda a, b: vq(a, b, check_finite=False), lab, pl),
            (lambda a, b: cKDTree(b).query(a, workers=1), lab, pl),
        )
        times = [1e3 * best(partial(f, a, b)) for f, a, b in calls]
        lines.append(f"| {k} | " + " | ".join(f"{t:.1f}" for t in times) + " |")
    return "\n".join(lines)


def report(rows: list[dict], times: dict, ks) -> str:
    lines = [
        "| image | k | pil_kmc dB | scikit-learn dB | pngquant -s1 dB | − sklearn | − pngquant |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['image']} | {r['k']} | {r['pil_kmc']:.2f} | {r['sklearn']:.2f} | "
            f"{r['pngquant']:.2f} | {r['pil_kmc'] - r['sklearn']:+.3f} | "
            f"{r['pil_kmc'] - r['pngquant']:+.3f} |"
        )
    try:
        from corpus import kind_of
    except ImportError:  # the bundled photographs: all of them are
        kind_of = None
    lines += [
        "",
        "| k | images | − sklearn min / median / max | − pngquant -s1 min / median / max |",
    ]
    lines.append("|---|---|---|---|")
    for images in ("every image", "photographs"):
        for k in [*ks, "all"]:
            # Lossless cases (every peer exact: infinite PSNR) have no difference to rank.
            sel = [r for r in rows if (k == "all" or r["k"] == k) and np.isfinite(r["sklearn"])]
            if images == "photographs" and kind_of is not None:
                sel = [r for r in sel if kind_of(r["image"]) == "photo"]
            if not sel:
                continue

            def spread(peer, sel=sel):
                d = sorted(r["pil_kmc"] - r[peer] for r in sel)
                return f"{d[0]:+.3f} / {statistics.median(d):+.3f} / {d[-1]:+.3f} dB"

            lines.append(
                f"| {k} | {images} ({len(sel)}) | {spread('sklearn')} | {spread('pngquant')} |"
            )
    runs = [(r, x) for r in rows if np.isfinite(r["sklearn"]) for x in r.get("runs", [])]
    if any(len(r.get("runs", [])) > 1 for r in rows):
        lines += ["", "| k | single runs more than 0.02 dB below scikit-learn |", "|---|---|"]
        for k in ks:
            mine = [(r, x) for r, x in runs if r["k"] == k]
            low = sum(x < r["sklearn"] - 0.02 for r, x in mine)
            lines.append(f"| {k} | {low} of {len(mine)} |")
    t = times
    if not t:  # --no-timing
        return "\n".join(lines)
    lines += [
        "",
        "| measure | pil_kmc | pngquant --speed 4 | ratio |",
        "|---|---|---|---|",
        f"| 512x512 k=256: in-process save vs whole process | {t['save']:.3f} s | "
        f"{t['pngquant']:.3f} s | {t['save'] / t['pngquant']:.2f} |",
        f"| 512x512 k=256: quantize stage alone | {t['quantize']:.3f} s | "
        f"{t['pngquant']:.3f} s | {t['quantize'] / t['pngquant']:.2f} |",
    ]
    if "big_save" in t:
        lines += [
            f"| 9.4 MP k=256: whole process | {t['big_save']:.2f} s | "
            f"{t['big_pngquant']:.2f} s | {t['big_save'] / t['big_pngquant']:.2f} |",
            f"| 9.4 MP k=256: peak RSS | {t['big_rss']:.0f} MB | "
            f"{t['big_pngquant_rss']:.0f} MB | {t['big_rss'] / t['big_pngquant_rss']:.2f} |",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three photographs, no 9.4 MP run")
    parser.add_argument("--k", type=int, nargs="*", default=list(KS))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--peers", type=Path, help="reuse the peers' PSNRs from this --json file")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--split", choices=("all", "tune", "hold"), default="all")
    parser.add_argument("--seeds", type=int, default=1, help="average seeds 0 .. N-1")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    if args.set:
        import ast

        from pil_kmc import kmeans

        for item in args.set:
            name, value = item.split("=", 1)
            if not hasattr(kmeans, name):
                sys.exit(f"pil_kmc.kmeans has no {name}")
            setattr(kmeans, name, ast.literal_eval(value.replace("_", "")))
    if not shutil.which("pngquant"):
        sys.exit("pngquant is needed: apt-get install pngquant")
    peers = {}
    if args.peers:
        peers = {f"{r['image']}/{r['k']}": r for r in json.loads(args.peers.read_text())["rows"]}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.split == "all":
            pictures = images(args.quick)
        else:
            photos = _photographs()
            pictures = photos[0::2] if args.split == "tune" else photos[1::2]
        # Timed first: scikit-learn's runs leave BLAS and OpenMP threads behind
        # that take the cores for a while.
        times = {} if args.no_timing else timing(work, big=not args.quick)
        table = lookups() if times else ""
        rows = quality(pictures, args.k, work, peers, args.json, args.seeds)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "times": times}, indent=1))
    if times:
        print(report(rows, times, args.k))
        print()
        print(table)
    else:
        print(report(rows, {}, args.k))
    import pil_kmc

    print(f"pil_kmc from {Path(pil_kmc.__file__).parent}")
    print(
        f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB"
    )


if __name__ == "__main__":
    main()
