"""Benchmark pil_kmc against the peers, side by side in one run.

    python3 -m pip install ".[bench]"
    sudo apt-get install --no-install-recommends pngquant \
        plasma-workspace-wallpapers mate-backgrounds opencv-doc   # photographs: bench/corpus.py
    python3 bench/run.py                 # full corpus, k in 16 64 256 (about 35 min)
    python3 bench/run.py --quick         # two small images, k in 16 256

Every encoder runs as a whole process (interpreter start-up, imports, file in,
file out), timed on the wall clock, with its peak resident memory taken from
the kernel (``ru_maxrss`` of that child alone). pil_kmc and pngquant, whose
speeds are compared, each take the best of five runs; the others run once.
Quality is PSNR and SSIM of the decoded output against the input, in the
input's colour model. Bytes are the output file's size. pil_kmc is also timed
in-process (``Image.save`` in a running interpreter; best of five up to
4 MP), and its pixels are written as PNG-8 (Pillow, ``optimize=True``) and
WebP lossless (method 6) to compare sizes and decode times for identical
pixels. A peer that is missing is reported as missing.

Outputs: a markdown table on stdout and in ``bench/out/results.md``, raw rows
in ``bench/out/results.json`` and a rate-distortion plot ``bench/out/rd.png``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import corpus  # bench/corpus.py, beside this script
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PY = sys.executable

# pil_kmc and pngquant, whose times are compared, run this many times each and
# keep the fastest: on a shared machine single runs drift by a third.
TIMED_REPEATS = 5

# Encoders as command lines: {src} {dst} {k}. Each is one whole process.
PIL_KMC = (
    "import sys, pil_kmc; from PIL import Image; "
    "Image.open(sys.argv[1]).save(sys.argv[2], clusters=int(sys.argv[3]){extra})"
)
PILLOW_QUANTIZE = (
    "import sys; from PIL import Image; im = Image.open(sys.argv[1]); "
    "im = im.convert('RGBA' if 'A' in im.mode else 'RGB'); "
    "im.quantize(int(sys.argv[3]), method=Image.Quantize.{method}, kmeans={kmeans})"
    ".save(sys.argv[2], optimize=True)"
)
SKLEARN = """
import sys, numpy as np
from PIL import Image
from sklearn.cluster import KMeans
im = Image.open(sys.argv[1]); mode = {"L": "L", "LA": "LA", "RGBA": "RGBA"}.get(im.mode, "RGB")
a = np.asarray(im.convert(mode)); c = 1 if a.ndim == 2 else a.shape[2]
x = a.reshape(-1, c).astype(np.float64)
km = KMeans(int(sys.argv[3]), init="k-means++", n_init=1, random_state=0).fit(x)
pal = np.clip(np.rint(km.cluster_centers_), 0, 255).astype(np.uint8)
out = pal[km.labels_].reshape(a.shape)
Image.fromarray(out, mode).save(sys.argv[2])
"""
# The original project: scikit-learn KMeans, then every pixel assigned in a
# Python loop, centroids truncated to uint8, savez_compressed.
ORIGINAL = """
import sys, numpy as np
from PIL import Image
from sklearn.cluster import KMeans
a = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
x = a.reshape(-1, 3)
km = KMeans(int(sys.argv[3]), n_init=1, random_state=0).fit(x)
centroids = km.cluster_centers_
idx = np.zeros((len(x), 1), np.uint8)
for i in range(len(x)):
    idx[i] = np.argmin(((centroids - x[i]) ** 2).sum(axis=1))
np.savez_compressed(sys.argv[2], array1=idx, array2=centroids.astype(np.uint8),
                    array3=np.array(a.shape))
"""
MEASURE = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
err = r.stderr.decode()[-300:]
print(json.dumps({"wall": wall, "rss_mb": rss, "rc": r.returncode, "err": err}))
"""


def images(quick: bool, big: bool) -> list[tuple[str, Image.Image]]:
    """The corpus (bench/corpus.py): photographs, gray photographs, graphics, and 9.4 MP."""
    chosen = corpus.quick() if quick else corpus.photographs() + corpus.others()
    if big:
        large = corpus.big()
        if large is not None:
            chosen.append(large)
    return chosen


def run(cmd: list[str]) -> dict:
    out = subprocess.run([PY, "-c", MEASURE, *cmd], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def load_as(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert(mode), dtype=np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def ciede2000(a: np.ndarray, b: np.ndarray) -> float | None:
    """Mean CIEDE2000 colour difference (colour images; every 3rd pixel above 1 MP)."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    if a.ndim == 2 or a.shape[2] not in (3, 4):
        return None
    if a.shape[0] * a.shape[1] > 1_000_000:
        a, b = a[::3, ::3], b[::3, ::3]
    return float(deltaE_ciede2000(rgb2lab(a[..., :3] / 255), rgb2lab(b[..., :3] / 255)).mean())


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    if a.ndim == 2:
        return float(structural_similarity(a, b, data_range=255))
    return float(structural_similarity(a, b, data_range=255, channel_axis=2))


def encoders() -> dict[str, dict]:
    """Name -> how to run it; 'missing' says why it cannot run here."""
    pngquant = shutil.which("pngquant")
    has_sklearn = _importable("sklearn")
    table = {
        "pil_kmc": {
            "cmd": [PY, "-c", PIL_KMC.format(extra="")],
            "ext": ".kmc",
            "repeats": TIMED_REPEATS,
        },
        "pil_kmc optimize": {
            "cmd": [PY, "-c", PIL_KMC.format(extra=", optimize=True")],
            "ext": ".kmc",
        },
        "pil_kmc oklab": {
            "cmd": [PY, "-c", PIL_KMC.format(extra=", colorspace='oklab'")],
            "ext": ".kmc",
        },
        "pngquant --speed 1": {
            "cmd": [pngquant, "--nofs", "--speed", "1", "--force", "--output"],
            "ext": ".png",
            "pngquant": True,
            "repeats": TIMED_REPEATS,
        },
        "pngquant --speed 4": {
            "cmd": [pngquant, "--nofs", "--speed", "4", "--force", "--output"],
            "ext": ".png",
            "pngquant": True,
            "repeats": TIMED_REPEATS,
        },
        "Pillow median cut": {
            "cmd": [PY, "-c", PILLOW_QUANTIZE.format(method="MEDIANCUT", kmeans=0)],
            "ext": ".png",
        },
        "Pillow median cut + kmeans": {
            "cmd": [PY, "-c", PILLOW_QUANTIZE.format(method="MEDIANCUT", kmeans=10)],
            "ext": ".png",
        },
        "scikit-learn KMeans": {"cmd": [PY, "-c", SKLEARN], "ext": ".png", "small_only": True},
        "original (.npz)": {"cmd": [PY, "-c", ORIGINAL], "ext": ".npz", "rgb_only": True},
    }
    if not pngquant:
        for name in ("pngquant --speed 1", "pngquant --speed 4"):
            table[name]["missing"] = "pngquant not installed (apt-get install pngquant)"
    if not has_sklearn:
        for name in ("scikit-learn KMeans", "original (.npz)"):
            table[name]["missing"] = "scikit-learn not installed"
    return table


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def command(spec: dict, src: Path, dst: Path, k: int) -> list[str]:
    if spec.get("pngquant"):
        return [*spec["cmd"], str(dst), str(k), str(src)]
    return [*spec["cmd"], str(src), str(dst), str(k)]


def model_mode(im: Image.Image) -> str:
    return {"L": "L", "LA": "LA", "RGBA": "RGBA", "P": "RGB"}.get(im.mode, "RGB")


def bench_image(name, im, ks, table, workdir, original_max_pixels, rows):
    import pil_kmc  # noqa: F401

    mode = model_mode(im)
    src = workdir / f"{name.split()[0]}.png"
    im.save(src)
    ref = np.asarray(im.convert(mode), dtype=np.float64)
    pixels = im.width * im.height
    for k in ks:
        for enc, spec in table.items():
            row = {"image": name, "pixels": pixels, "k": k, "encoder": enc}
            rows.append(row)
            if "missing" in spec:
                row["missing"] = spec["missing"]
                continue
            if spec.get("rgb_only") and (mode != "RGB" or pixels > original_max_pixels):
                row["missing"] = "not run (RGB only; its per-pixel loop takes minutes at 9 MP)"
                continue
            if spec.get("small_only") and pixels > original_max_pixels:
                row["missing"] = "not run at 9 MP (minutes per k); see the small images"
                continue
            dst = workdir / f"out-{len(rows)}{spec['ext']}"
            # The speed comparisons (pil_kmc against pngquant) take the best of
            # a few runs on both sides, which steadies them on a busy machine.
            runs = [run(command(spec, src, dst, k)) for _ in range(spec.get("repeats", 1))]
            m = min(runs, key=lambda r: (r["rc"] != 0, r["wall"]))
            if m["rc"] != 0 or not dst.exists():
                row["missing"] = f"failed (exit {m['rc']}): {m['err'].strip()[-120:]}"
                continue
            out = load_as(dst, mode)
            row.update(
                seconds=m["wall"],
                rss_mb=m["rss_mb"],
                bytes=dst.stat().st_size,
                psnr=psnr(ref, out),
                de2000=ciede2000(ref, out),
                ssim=ssim(ref, out),
            )
            row["bpp"] = 8 * row["bytes"] / pixels
            if enc == "pil_kmc":
                row.update(_pil_kmc_extras(im, dst, k))
            if enc == "pil_kmc optimize":
                row.update(_decode_time(dst))
            dst.unlink()
        print(f"  {name} k={k} done", file=sys.stderr, flush=True)


def _best_of(f, n=3) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def _decode_time(kmc_path: Path) -> dict:
    """Time of ``Image.open(f).convert(...)`` for a .kmc file, and its compression method."""
    from pil_kmc import layout

    data = kmc_path.read_bytes()
    header = layout.read_head(io.BytesIO(data)).header
    with Image.open(io.BytesIO(data)) as probe:
        target = _target_mode(probe)
    return {
        "decode_seconds": _best_of(lambda: Image.open(io.BytesIO(data)).convert(target)),
        "compression": layout.COMPRESSION_NAMES[header.compression],
    }


def _target_mode(im: Image.Image) -> str:
    if im.mode in ("L", "LA"):
        return im.mode
    return "RGBA" if im.mode == "P" and im.palette.mode == "RGBA" else "RGB"


def _pil_kmc_extras(im: Image.Image, kmc_path: Path, k: int) -> dict:
    """In-process encode time and its two stages; PNG-8 and WebP of the same pixels; decoding."""
    from pil_kmc import encoder

    repeats = 1 if im.width * im.height > 4_000_000 else TIMED_REPEATS
    extras = {
        "inprocess_seconds": _best_of(lambda: im.save(io.BytesIO(), "KMC", clusters=k), repeats)
    }
    options = encoder.save_options({"clusters": k})
    result = encoder.quantize_image(im, options)[0]
    extras["quantize_seconds"] = _best_of(lambda: encoder.quantize_image(im, options), repeats)
    extras["coding_seconds"] = _best_of(lambda: encoder.index_coding(result, options), repeats)
    kmc_bytes = kmc_path.read_bytes()
    decoded = Image.open(io.BytesIO(kmc_bytes))
    decoded.load()
    png, webp = io.BytesIO(), io.BytesIO()
    decoded.save(png, "PNG", optimize=True)
    decoded.save(webp, "WEBP", lossless=True, method=6, quality=100)
    target = _target_mode(decoded)
    extras.update(
        png8_bytes=png.tell(),
        webp_bytes=webp.tell(),
        decode_seconds=_best_of(lambda: Image.open(io.BytesIO(kmc_bytes)).convert(target)),
        png8_decode_seconds=_best_of(
            lambda: Image.open(io.BytesIO(png.getvalue())).convert(target)
        ),
        webp_decode_seconds=_best_of(
            lambda: Image.open(io.BytesIO(webp.getvalue())).convert(target)
        ),
    )
    return extras


def startup_times() -> dict:
    def median_start(code):
        times = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run([PY, "-c", code], check=True)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    return {
        "python -c 'import PIL.Image'": median_start("import PIL.Image"),
        "python -c 'import pil_kmc'": median_start("import pil_kmc"),
        "python -c 'import pil_kmc, scipy.cluster.vq'": median_start(
            "import pil_kmc, scipy.cluster.vq"
        ),
    }


def growth(workdir: Path) -> dict:
    """In-process encode times: 4x the pixels, and 16x the clusters."""
    import skimage.data as data

    import pil_kmc  # noqa: F401

    base = Image.fromarray(data.astronaut())
    small, large = (
        base.resize((1024, 1024), Image.LANCZOS),
        base.resize((2048, 2048), Image.LANCZOS),
    )

    def t(im, k):
        return _best_of(lambda: im.save(io.BytesIO(), "KMC", clusters=k), 2)

    return {
        "4x pixels (1024^2 -> 2048^2, k=64)": t(large, 64) / t(small, 64),
        "16x clusters (k=16 -> 256, 512^2)": t(base, 256) / t(base, 16),
    }


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def report(rows, ks, starts, grow) -> str:
    lines = []
    encs = list(dict.fromkeys(r["encoder"] for r in rows))
    lines.append(
        "### Medians over the corpus (whole process: start-up, imports, file in, file out)\n"
    )
    lines.append(
        "| k | encoder | PSNR dB | SSIM | mean CIEDE2000 (colour images) | bits/pixel "
        "| encode s | peak MB |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for k in ks:
        for enc in encs:
            sel = [r for r in rows if r["k"] == k and r["encoder"] == enc and "missing" not in r]
            if not sel:
                why = next((r["missing"] for r in rows if r["k"] == k and r["encoder"] == enc), "")
                lines.append(f"| {k} | {enc} | {why} | | | | | |")
                continue
            lines.append(
                f"| {k} | {enc} | {fmt(median(r['psnr'] for r in sel), '.2f')} | "
                f"{fmt(median(r['ssim'] for r in sel), '.4f')} | "
                f"{fmt(median(r['de2000'] for r in sel), '.3f')} | "
                f"{fmt(median(r['bpp'] for r in sel), '.3f')} | "
                f"{fmt(median(r['seconds'] for r in sel), '.2f')} | "
                f"{fmt(median(r['rss_mb'] for r in sel), '.0f')} |"
            )
    lines.append("\n### Every image\n")
    lines.append("| image | k | encoder | PSNR dB | SSIM | bytes | encode s | peak MB |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "missing" in r:
            lines.append(f"| {r['image']} | {r['k']} | {r['encoder']} | {r['missing']} | | | | |")
        else:
            lines.append(
                f"| {r['image']} | {r['k']} | {r['encoder']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                f"{r['bytes']:,} | {r['seconds']:.2f} | {r['rss_mb']:.0f} |"
            )
    lines.append("\n### Same pixels, other containers (pil_kmc default output re-encoded)\n")
    lines.append(
        "| image | k | .kmc bytes | .kmc optimize bytes | PNG-8 bytes | WebP lossless bytes | "
        ".kmc / PNG-8 | optimize / WebP | .kmc decode ms | optimize decode ms (method) | "
        "PNG-8 decode ms | WebP decode ms | in-process encode s | k-means s | coding s |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["encoder"] != "pil_kmc" or "missing" in r:
            continue
        opt = next(
            (
                o
                for o in rows
                if o["encoder"] == "pil_kmc optimize"
                and o["image"] == r["image"]
                and o["k"] == r["k"]
                and "bytes" in o
            ),
            None,
        )
        ob = opt["bytes"] if opt else None
        od = f"{1000 * opt['decode_seconds']:.1f} ({opt['compression']})" if opt else "–"
        lines.append(
            f"| {r['image']} | {r['k']} | {r['bytes']:,} | {fmt(ob, ',')} | {r['png8_bytes']:,} | "
            f"{r['webp_bytes']:,} | {r['bytes'] / r['png8_bytes']:.3f} | "
            f"{fmt(ob / r['webp_bytes'] if ob else None, '.3f')} | "
            f"{1000 * r['decode_seconds']:.1f} | {od} | {1000 * r['png8_decode_seconds']:.1f} | "
            f"{1000 * r['webp_decode_seconds']:.1f} | {r['inprocess_seconds']:.2f} | "
            f"{r['quantize_seconds']:.3f} | {r['coding_seconds']:.3f} |"
        )
    lines += targets(rows, ks)
    lines.append("\n### Start-up (median of 5)\n")
    lines += [f"- `{k}`: {v:.3f} s" for k, v in starts.items()]
    if grow:
        lines.append("\n### Growth of in-process encode time\n")
        lines += [f"- {k}: {v:.2f}x" for k, v in grow.items()]
    return "\n".join(lines) + "\n"


def targets(rows, ks) -> list[str]:
    """The issues' target figures, each a median of per-image ratios or differences."""

    def get(image, k, enc):
        return next(
            (r for r in rows if (r["image"], r["k"], r["encoder"]) == (image, k, enc)), None
        )

    def per_image(k, f, big=None):
        values = []
        for r in rows:
            if r["encoder"] != "pil_kmc" or k not in (None, r["k"]) or "missing" in r:
                continue
            if big is not None and (r["pixels"] > 4_000_000) != big:
                continue
            v = f(r)
            if v is not None:
                values.append(v)
        return median(values)

    def vs(enc, r, op):
        o = get(r["image"], r["k"], enc)
        return None if o is None or "missing" in o else op(r, o)

    lines = ["\n### Targets (medians of per-image figures)\n"]
    lines.append(
        "| k | PSNR − pngquant -s1 dB | PSNR − sklearn dB | in-process / pngquant -s4 (≤ 1 MP) "
        "| whole process / pngquant -s4 (9.4 MP) | .kmc / PNG-8 | optimize / WebP "
        "| decode / PNG-8 (9.4 MP) | optimize decode / PNG-8 (9.4 MP) "
        "| coding / k-means (≤ 1 MP) | coding / k-means (9.4 MP) |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    s1, s4, sk = "pngquant --speed 1", "pngquant --speed 4", "scikit-learn KMeans"
    opt = "pil_kmc optimize"
    for k in [*ks, None]:  # None: every k together
        cells = [
            per_image(k, lambda r: vs(s1, r, lambda a, b: a["psnr"] - b["psnr"])),
            per_image(k, lambda r: vs(sk, r, lambda a, b: a["psnr"] - b["psnr"])),
            per_image(
                k, lambda r: vs(s4, r, lambda a, b: a["inprocess_seconds"] / b["seconds"]), False
            ),
            per_image(k, lambda r: vs(s4, r, lambda a, b: a["seconds"] / b["seconds"]), True),
            per_image(k, lambda r: r["bytes"] / r["png8_bytes"]),
            per_image(k, lambda r: vs(opt, r, lambda a, b: b["bytes"] / a["webp_bytes"])),
            per_image(k, lambda r: r["decode_seconds"] / r["png8_decode_seconds"], True),
            per_image(
                k,
                lambda r: vs(opt, r, lambda a, b: b["decode_seconds"] / a["png8_decode_seconds"]),
                True,
            ),
            per_image(k, lambda r: r["coding_seconds"] / r["quantize_seconds"], False),
            per_image(k, lambda r: r["coding_seconds"] / r["quantize_seconds"], True),
        ]
        lines.append(
            f"| {k or 'all'} | "
            + " | ".join(fmt(c, "+.2f" if i < 2 else ".3f") for i, c in enumerate(cells))
            + " |"
        )
    return lines


def plot(rows, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for enc in dict.fromkeys(r["encoder"] for r in rows):
        pts = []
        for k in sorted({r["k"] for r in rows}):
            sel = [r for r in rows if r["encoder"] == enc and r["k"] == k and "missing" not in r]
            if sel:
                pts.append((median(r["bpp"] for r in sel), median(r["psnr"] for r in sel)))
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=enc)
    ax.set_xlabel("bits per pixel (median over corpus)")
    ax.set_ylabel("PSNR, dB (median over corpus)")
    ax.set_title("Rate-distortion at k = 16, 64, 256")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two small images, k 16 and 256")
    parser.add_argument("--no-big", action="store_true", help="skip the 9.4 MP image")
    parser.add_argument("--k", type=int, nargs="+", help="cluster counts (default 16 64 256)")
    args = parser.parse_args()
    ks = args.k or ([16, 256] if args.quick else [16, 64, 256])
    OUT.mkdir(parents=True, exist_ok=True)
    table = encoders()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, im in images(args.quick, big=not (args.quick or args.no_big)):
            bench_image(name, im, ks, table, Path(tmp), 1_000_000, rows)
        starts = startup_times()
        grow = None if args.quick else growth(Path(tmp))
    text = report(rows, ks, starts, grow)
    header = (
        f"Machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}; "
        f"command: `python3 bench/run.py{' --quick' if args.quick else ''}`\n\n"
    )
    (OUT / "results.md").write_text(header + text)
    (OUT / "results.json").write_text(json.dumps(rows, indent=1))
    plot(rows, OUT / "rd.png")
    print(header + text)


if __name__ == "__main__":
    main()
