"""Benchmark pil_kmc against the peers, side by side in one run.

    python3 -m pip install ".[bench]"      # scikit-image, scikit-learn, matplotlib,
                                           # mahotas, imagecodecs (JPEG XL)
    sudo apt-get install --no-install-recommends pngquant \
        plasma-workspace-wallpapers mate-backgrounds opencv-doc   # photographs: bench/corpus.py
    python3 bench/run.py                 # the whole corpus and 9.4 MP, k in 16 64 256 (long)
    python3 bench/run.py --quick         # two small images, k in 16 256
    python3 bench/run.py --list          # image names and encoder ids
    python3 bench/run.py --images kite big --encoders pil_kmc pngquant-s4 --k 256

The corpus (``bench/corpus.py``) is 35 colour photographs (people and skin,
sky, landscapes, food, texture, night), 3 gray photographs, 8 RGBA
graphics and 2 screenshots, each at most 768 pixels a side (the screenshots
as they are, up to 1140), plus the astronaut resampled to
3072 x 3072 (9.4 MP); an image whose package is not installed is skipped.

Every encoder runs as a whole process (interpreter start-up, imports, file in,
file out), timed on the wall clock, with its peak resident memory taken from
the kernel (``ru_maxrss`` of that child alone). pil_kmc and pngquant
``--speed 4``, whose speeds are compared, each take the best of five runs;
``optimize=True`` the best of three up to 4 MP; the others run once. Quality
is PSNR and SSIM of the decoded output against the input, in the input's
colour model. Bytes are the output file's size. A peer that is missing is
reported as missing.

pil_kmc is also timed in-process (``Image.save`` in a running interpreter;
best of three up to 4 MP), and its decoded pixels are written as PNG-8
(Pillow, ``optimize=True``), WebP lossless (Pillow, method 6, quality 100) and
JPEG XL lossless (imagecodecs, effort 7 and 9) to compare sizes for identical
pixels. Decoding is timed in one process, interleaved (.kmc, PNG-8, WebP,
JPEG XL, then again, seven rounds, median kept): ``Image.open(f).load()`` for
.kmc and PNG-8 (both load in P mode; the table shows the modes) and WebP, and
``imagecodecs.jpegxl_decode`` with every core for JPEG XL.

To keep the run short, the 9.4 MP case leaves out what no target needs:
scikit-learn (minutes per k), ``colorspace='oklab'``, Pillow's median cut +
kmeans and JPEG XL effort 9 (its decode time is taken on effort 7 there).
The original project's encoder (per-pixel Python loop) runs only when named:
``--encoders original``.

Outputs: a markdown table on stdout and in ``bench/out/results.md``, raw rows
in ``bench/out/results.json`` and a rate-distortion plot ``bench/out/rd.png``.
The "Targets" table gives the figures of issues 14 and 18.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
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
# Measure the pil_kmc of this checkout, in this process and in every child.
sys.path.insert(0, str(ROOT))
CHILD_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
}
OUT = ROOT / "bench" / "out"
PY = sys.executable
BIG = "big"  # the --images name of the 9.4 MP case

# pil_kmc and pngquant, whose times are compared, run this many times each and
# keep the fastest: on a shared machine single runs drift by a third.
TIMED_REPEATS = 5
# In-process saves and the decode race, whose figures are ratios within one process.
INPROCESS_REPEATS = 3
DECODE_ROUNDS = 7
SMALL_PIXELS = 1_000_000
BIG_PIXELS = 4_000_000
# libjxl runs on one thread unless told; give it every core, as pil_kmc may use them.
THREADS = os.cpu_count() or 1

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
    out = subprocess.run(
        [PY, "-c", MEASURE, *cmd], capture_output=True, text=True, check=True, env=CHILD_ENV
    )
    return json.loads(out.stdout)


def load_as(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as im:
        return seen(np.asarray(im.convert(mode), dtype=np.float64))


def seen(a: np.ndarray) -> np.ndarray:
    """Pixels as seen: with alpha, each colour channel premultiplied by alpha.

    That is the colour composited over black, and alpha as it is: the error
    of a faint pixel counts as much as a viewer can see of it, and the
    colour of a fully transparent pixel (which encoders may store as they
    like) not at all. pngquant weighs colours by alpha the same way.
    """
    if a.ndim == 3 and a.shape[2] in (2, 4):
        a = a.copy()
        a[..., :-1] *= a[..., -1:] / 255
    return a


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
    """Display name -> how to run it; 'missing' says why it cannot run here.

    ``id`` names it on the command line; ``repeats`` is how many runs (the
    fastest is kept) up to 4 MP and ``big_repeats`` above; ``big=False`` peers
    are not run at 9.4 MP, ``small_only`` ones not above 1 MP, and ``opt_in``
    ones only when ``--encoders`` names them.
    """
    pngquant = shutil.which("pngquant")
    has_sklearn = _importable("sklearn")
    table = {
        "pil_kmc": {
            "id": "pil_kmc",
            "cmd": [PY, "-c", PIL_KMC.format(extra="")],
            "ext": ".kmc",
            "repeats": TIMED_REPEATS,
            "big_repeats": TIMED_REPEATS,
        },
        "pil_kmc optimize": {
            "id": "optimize",
            "cmd": [PY, "-c", PIL_KMC.format(extra=", optimize=True")],
            "ext": ".kmc",
            "repeats": 3,
        },
        "pil_kmc oklab": {
            "id": "oklab",
            "cmd": [PY, "-c", PIL_KMC.format(extra=", colorspace='oklab'")],
            "ext": ".kmc",
            "big": False,
        },
        "pngquant --speed 1": {
            "id": "pngquant-s1",
            "cmd": [pngquant, "--nofs", "--speed", "1", "--force", "--output"],
            "ext": ".png",
            "pngquant": True,
        },
        "pngquant --speed 4": {
            "id": "pngquant-s4",
            "cmd": [pngquant, "--nofs", "--speed", "4", "--force", "--output"],
            "ext": ".png",
            "pngquant": True,
            "repeats": TIMED_REPEATS,
            "big_repeats": TIMED_REPEATS,
        },
        "Pillow median cut": {
            "id": "pillow-mediancut",
            "cmd": [PY, "-c", PILLOW_QUANTIZE.format(method="MEDIANCUT", kmeans=0)],
            "ext": ".png",
        },
        "Pillow median cut + kmeans": {
            "id": "pillow-kmeans",
            "cmd": [PY, "-c", PILLOW_QUANTIZE.format(method="MEDIANCUT", kmeans=10)],
            "ext": ".png",
            "big": False,
        },
        "scikit-learn KMeans": {
            "id": "sklearn",
            "cmd": [PY, "-c", SKLEARN],
            "ext": ".png",
            "small_only": True,
        },
        "original (.npz)": {
            "id": "original",
            "cmd": [PY, "-c", ORIGINAL],
            "ext": ".npz",
            "rgb_only": True,
            "small_only": True,
            "opt_in": True,
        },
    }
    if not pngquant:
        for name in ("pngquant --speed 1", "pngquant --speed 4"):
            table[name]["missing"] = "pngquant not installed (apt-get install pngquant)"
    if not has_sklearn:
        for name in ("scikit-learn KMeans", "original (.npz)"):
            table[name]["missing"] = "scikit-learn not installed"
    return table


def choose_encoders(table: dict[str, dict], wanted: list[str] | None) -> dict[str, dict]:
    """The encoders named by id or display name, or every one that is not opt-in."""
    if wanted is None:
        return {name: spec for name, spec in table.items() if not spec.get("opt_in")}
    by_id = {spec["id"]: name for name, spec in table.items()}
    unknown = [w for w in wanted if w not in by_id and w not in table]
    if unknown:
        raise SystemExit(f"unknown encoders: {', '.join(unknown)}; known: {', '.join(by_id)}")
    names = {by_id.get(w, w) for w in wanted}
    return {name: spec for name, spec in table.items() if name in names}


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


def bench_image(name, im, ks, table, workdir, rows):
    import pil_kmc  # noqa: F401

    mode = model_mode(im)
    src = workdir / f"{name.split()[0]}.png"
    im.save(src)
    ref = seen(np.asarray(im.convert(mode), dtype=np.float64))
    pixels = im.width * im.height
    big = pixels > BIG_PIXELS
    kind = corpus.kind_of(name)
    for k in ks:
        for enc, spec in table.items():
            row = {"image": name, "kind": kind, "pixels": pixels, "k": k, "encoder": enc}
            rows.append(row)
            if "missing" in spec:
                row["missing"] = spec["missing"]
                continue
            if spec.get("rgb_only") and mode != "RGB":
                row["missing"] = "not run (RGB only)"
                continue
            if spec.get("small_only") and pixels > SMALL_PIXELS:
                row["missing"] = "not run above 1 MP (minutes per k); see the small images"
                continue
            if big and not spec.get("big", True):
                row["missing"] = "not run at 9.4 MP (not needed by a target; keeps the run short)"
                continue
            dst = workdir / f"out-{len(rows)}{spec['ext']}"
            # The speed comparisons (pil_kmc against pngquant) take the best of
            # a few runs on both sides, which steadies them on a busy machine.
            repeats = spec.get("big_repeats", 1) if big else spec.get("repeats", 1)
            runs = [run(command(spec, src, dst, k)) for _ in range(repeats)]
            m = min(runs, key=lambda r: (r["rc"] != 0, r["wall"]))
            if m["rc"] != 0 or not dst.exists():
                row["missing"] = f"failed (exit {m['rc']}): {m['err'].strip()[-120:]}"
                continue
            out = load_as(dst, mode)
            row.update(
                seconds=m["wall"],
                runs=len(runs),
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


def _load(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as im:
        im.load()


def _open_mode(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as im:
        return im.mode


def decode_race(decoders: dict[str, tuple], rounds: int = DECODE_ROUNDS) -> dict[str, dict]:
    """Interleaved decode timing: every round runs each decoder once, in turn.

    ``decoders`` maps a name to (function, data). Interleaving puts the
    machine's slow spells on every side alike; each side keeps its best and
    median over the rounds.
    """
    times: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(rounds):
        for name, (f, data) in decoders.items():
            t = time.perf_counter()
            f(data)
            times[name].append(time.perf_counter() - t)
    return {n: {"best": min(v), "median": statistics.median(v)} for n, v in times.items()}


def _decode_time(kmc_path: Path) -> dict:
    """Time of ``Image.open(f).load()`` for a .kmc file, and its compression method."""
    from pil_kmc import layout

    data = kmc_path.read_bytes()
    header = layout.read(io.BytesIO(data), index=False).header
    return {
        "decode_seconds": _best_of(lambda: _load(data)),
        "compression": layout.COMPRESSION_NAMES[header.compression],
    }


def _target_mode(im: Image.Image) -> str:
    if im.mode in ("L", "LA"):
        return im.mode
    return "RGBA" if im.mode == "P" and im.palette.mode == "RGBA" else "RGB"


def _jpegxl():
    """imagecodecs when it can encode JPEG XL here, else None."""
    try:
        import imagecodecs
    except ImportError:
        return None
    return imagecodecs if imagecodecs.JPEGXL.available else None


def _coding_stage(encoder, result, options):
    """The index-coding stage of a save, as a call (it moved to pil_kmc.coding)."""
    if hasattr(encoder, "index_coding"):
        return lambda: encoder.index_coding(result, options)
    from pil_kmc import coding

    return lambda: coding.code(result, optimize=False, compression=None)


def _pil_kmc_extras(im: Image.Image, kmc_path: Path, k: int) -> dict:
    """In-process encode time and its two stages; the same pixels as PNG-8, WebP, JPEG XL."""
    from pil_kmc import encoder

    big = im.width * im.height > BIG_PIXELS
    repeats = 1 if big else INPROCESS_REPEATS
    extras = {
        "inprocess_seconds": _best_of(lambda: im.save(io.BytesIO(), "KMC", clusters=k), repeats)
    }
    options = encoder.save_options({"clusters": k})
    result = encoder.quantize_image(im, options)[0]
    extras["quantize_seconds"] = _best_of(lambda: encoder.quantize_image(im, options), repeats)
    extras["coding_seconds"] = _best_of(_coding_stage(encoder, result, options), repeats)
    kmc_bytes = kmc_path.read_bytes()
    decoded = Image.open(io.BytesIO(kmc_bytes))
    decoded.load()
    png, webp = io.BytesIO(), io.BytesIO()
    decoded.save(png, "PNG", optimize=True)
    decoded.save(webp, "WEBP", lossless=True, method=6, quality=100)
    extras.update(
        png8_bytes=png.tell(),
        webp_bytes=webp.tell(),
        kmc_mode=decoded.mode,
        png8_mode=_open_mode(png.getvalue()),
    )
    decoders = {
        "kmc": (_load, kmc_bytes),
        "png8": (_load, png.getvalue()),
        "webp": (_load, webp.getvalue()),
    }
    jxl = _jpegxl()
    if jxl is not None:
        pixels = np.ascontiguousarray(np.asarray(decoded.convert(_target_mode(decoded))))
        # Effort 9 takes tens of seconds a k at 9.4 MP, and the byte targets are
        # taken on the photographs, so the large case has effort 7 only.
        for effort in (7,) if big else (7, 9):
            data = jxl.jpegxl_encode(pixels, lossless=True, effort=effort, numthreads=THREADS)
            if not np.array_equal(jxl.jpegxl_decode(data), pixels):
                raise AssertionError("JPEG XL lossless did not give back the same pixels")
            extras[f"jxl_e{effort}_bytes"] = len(data)
            jxl_data = data
        decoders["jxl"] = (lambda b: jxl.jpegxl_decode(b, numthreads=THREADS), jxl_data)
        extras["jxl_decoded_effort"] = 7 if big else 9
    for name, t in decode_race(decoders).items():
        prefix = "" if name == "kmc" else f"{name}_"
        extras[f"{prefix}decode_seconds"] = t["median"]
        extras[f"{prefix}decode_best_seconds"] = t["best"]
    return extras


def startup_times() -> dict:
    def median_start(code):
        times = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run([PY, "-c", code], check=True, env=CHILD_ENV)
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
    import pil_kmc  # noqa: F401

    found = corpus.select(["astronaut"], quiet=True)
    if not found:
        return {}
    base = found[0][1]
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
    lines += _same_pixels(rows)
    lines += targets(rows, ks)
    lines.append("\n### Start-up (median of 5)\n")
    lines += [f"- `{k}`: {v:.3f} s" for k, v in starts.items()]
    if grow:
        lines.append("\n### Growth of in-process encode time\n")
        lines += [f"- {k}: {v:.2f}x" for k, v in grow.items()]
    return "\n".join(lines) + "\n"


def _same_pixels(rows) -> list[str]:
    lines = ["\n### Same pixels, other containers (pil_kmc default output re-encoded)\n"]
    lines.append(
        "Decode: median of interleaved runs in this process (`Image.open(f).load()` for "
        ".kmc, PNG-8 and WebP; `imagecodecs.jpegxl_decode` for JPEG XL, effort 9, or 7 at "
        "9.4 MP). Modes: .kmc as loaded / PNG-8 as loaded.\n"
    )
    lines.append(
        "| image | k | .kmc bytes | optimize bytes | PNG-8 bytes | WebP bytes | JXL e7 bytes "
        "| JXL e9 bytes | .kmc / WebP | .kmc / JXL e9 | modes | .kmc decode ms "
        "| optimize decode ms (method) | PNG-8 ms | WebP ms | JXL ms | in-process s "
        "| k-means s | coding s |"
    )
    lines.append("|---" * 19 + "|")
    for r in rows:
        if r["encoder"] != "pil_kmc" or "missing" in r:
            continue
        opt = _get(rows, r["image"], r["k"], "pil_kmc optimize")
        ob = opt["bytes"] if opt else None
        od = f"{1000 * opt['decode_seconds']:.1f} ({opt['compression']})" if opt else "—"
        e7, e9 = r.get("jxl_e7_bytes"), r.get("jxl_e9_bytes")
        jd = r.get("jxl_decode_seconds")
        lines.append(
            f"| {r['image']} | {r['k']} | {r['bytes']:,} | {fmt(ob, ',')} | {r['png8_bytes']:,} "
            f"| {r['webp_bytes']:,} | {fmt(e7, ',')} | {fmt(e9, ',')} "
            f"| {r['bytes'] / r['webp_bytes']:.3f} | {fmt(e9 and r['bytes'] / e9, '.3f')} "
            f"| {r['kmc_mode']} / {r['png8_mode']} | {1000 * r['decode_seconds']:.1f} | {od} "
            f"| {1000 * r['png8_decode_seconds']:.1f} | {1000 * r['webp_decode_seconds']:.1f} "
            f"| {fmt(jd and 1000 * jd, '.1f')} | {r['inprocess_seconds']:.2f} "
            f"| {r['quantize_seconds']:.3f} | {r['coding_seconds']:.3f} |"
        )
    return lines


def _get(rows, image, k, enc):
    """The measured row of this encoder on this image and k, or None."""
    return next(
        (
            r
            for r in rows
            if (r["image"], r["k"], r["encoder"]) == (image, k, enc) and "missing" not in r
        ),
        None,
    )


def targets(rows, ks) -> list[str]:
    """The issues' target figures (14 and 18), each over per-image ratios or differences."""
    s1, s4, sk = "pngquant --speed 1", "pngquant --speed 4", "scikit-learn KMeans"
    opt = "pil_kmc optimize"

    def photo(r):
        return r["kind"] == "photo" and r["pixels"] <= SMALL_PIXELS

    def small(r):
        return r["pixels"] <= SMALL_PIXELS

    def big(r):
        return r["pixels"] > BIG_PIXELS

    def vs(enc, f):
        def g(r):
            o = _get(rows, r["image"], r["k"], enc)
            return None if o is None else f(r, o)

        return g

    def field(name, over):
        return lambda r: None if r.get(name) is None else r[name] / r[over]

    def spread(values):
        if not values:
            return "—"
        return f"{min(values):+.2f} / {statistics.median(values):+.2f} / {max(values):+.2f}"

    def med(spec):
        return lambda values: fmt(median(values), spec)

    # (figure, per-image function on the pil_kmc row, which images, summary, target)
    figures = [
        (
            "PSNR − pngquant -s1, dB (min / median / max)",
            vs(s1, lambda a, b: a["psnr"] - b["psnr"]),
            lambda r: True,
            spread,
            "issue 18: median lead",
        ),
        (
            "PSNR − scikit-learn KMeans, dB (min / median / max, ≤ 1 MP)",
            vs(sk, lambda a, b: a["psnr"] - b["psnr"]),
            small,
            spread,
            "min ≥ −0.02, median ≥ +0.05",
        ),
        (
            ".kmc bytes ÷ WebP lossless (median, photographs)",
            field("bytes", "webp_bytes"),
            photo,
            med(".3f"),
            "≤ 0.90",
        ),
        (
            ".kmc bytes ÷ JPEG XL e9 (median, photographs)",
            lambda r: r["bytes"] / r["jxl_e9_bytes"] if r.get("jxl_e9_bytes") else None,
            photo,
            med(".3f"),
            "aim ≤ 1.00",
        ),
        (
            ".kmc bytes ÷ PNG-8 (median, every image)",
            field("bytes", "png8_bytes"),
            lambda r: True,
            med(".3f"),
            "",
        ),
        (
            "optimize bytes ÷ WebP lossless (median, photographs)",
            vs(opt, lambda a, b: b["bytes"] / a["webp_bytes"]),
            photo,
            med(".3f"),
            "",
        ),
        (
            ".kmc decode ÷ PNG-8 decode (9.4 MP)",
            field("decode_seconds", "png8_decode_seconds"),
            big,
            med(".2f"),
            "≤ 1.5 at k = 256 (aim 1.0)",
        ),
        (
            "WebP lossless decode ÷ PNG-8 decode (9.4 MP)",
            field("webp_decode_seconds", "png8_decode_seconds"),
            big,
            med(".2f"),
            "beside",
        ),
        (
            "JPEG XL decode ÷ PNG-8 decode (9.4 MP)",
            field("jxl_decode_seconds", "png8_decode_seconds"),
            big,
            med(".2f"),
            "beside",
        ),
        (
            ".kmc decode ÷ PNG-8 decode (median, ≤ 1 MP)",
            field("decode_seconds", "png8_decode_seconds"),
            small,
            med(".2f"),
            "",
        ),
        (
            "in-process save ÷ pngquant -s4 whole process (median, photographs ≤ 1 MP)",
            vs(s4, lambda a, b: a["inprocess_seconds"] / b["seconds"]),
            photo,
            med(".3f"),
            "≤ 1.0",
        ),
        (
            "whole-process save ÷ pngquant -s4 (9.4 MP)",
            vs(s4, lambda a, b: a["seconds"] / b["seconds"]),
            big,
            med(".3f"),
            "≤ 0.8",
        ),
        (
            "optimize=True save ÷ default save, whole process (median, photographs ≤ 1 MP)",
            vs(opt, lambda a, b: b["seconds"] / a["seconds"]),
            photo,
            med(".2f"),
            "≤ 3",
        ),
        (
            "optimize=True save ÷ default save, whole process (9.4 MP)",
            vs(opt, lambda a, b: b["seconds"] / a["seconds"]),
            big,
            med(".2f"),
            "≤ 3",
        ),
        (
            "peak RSS ÷ pngquant -s4's (9.4 MP)",
            vs(s4, lambda a, b: a["rss_mb"] / b["rss_mb"]),
            big,
            med(".2f"),
            "≤ 2 (issue 18)",
        ),
        (
            "coding ÷ k-means, in process (median, ≤ 1 MP)",
            field("coding_seconds", "quantize_seconds"),
            small,
            med(".3f"),
            "",
        ),
        (
            "coding ÷ k-means, in process (9.4 MP)",
            field("coding_seconds", "quantize_seconds"),
            big,
            med(".3f"),
            "",
        ),
    ]
    mine = [r for r in rows if r["encoder"] == "pil_kmc" and "missing" not in r]
    lines = ["\n### Targets (per-image figures; photographs are the corpus's colour photos)\n"]
    lines.append("| figure | " + " | ".join(f"k = {k}" for k in ks) + " | all k | target |")
    lines.append("|---" * (len(ks) + 3) + "|")
    for label, f, which, summary, goal in figures:
        cells = []
        for k in [*ks, None]:
            values = [f(r) for r in mine if which(r) and k in (None, r["k"])]
            cells.append(summary([v for v in values if v is not None]))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {goal} |")
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
    parser.add_argument(
        "--images",
        nargs="+",
        metavar="NAME",
        help=f"only these corpus images ('{BIG}' is the 9.4 MP case); see --list",
    )
    parser.add_argument(
        "--encoders", nargs="+", metavar="ID", help="only these encoders (ids, see --list)"
    )
    parser.add_argument("--list", action="store_true", help="list image names and encoder ids")
    args = parser.parse_args()
    table = encoders()
    if args.list:
        print("images:", " ".join(e.name for e in corpus.CATALOGUE), BIG)
        print(
            "encoders:",
            " ".join(
                spec["id"] + (" (opt-in)" if spec.get("opt_in") else "") for spec in table.values()
            ),
        )
        return
    ks = args.k or ([16, 256] if args.quick else [16, 64, 256])
    chosen = choose_encoders(table, args.encoders)
    targeted = args.images is not None or args.encoders is not None
    if args.images is not None:
        wanted = [n for n in args.images if n != BIG]
        try:
            todo = corpus.select(wanted) if wanted else []
        except ValueError as exc:
            raise SystemExit(f"{exc}; see --list") from None
        if BIG in args.images:
            todo.append(corpus.big())
        todo = [t for t in todo if t is not None]
    else:
        todo = images(args.quick, big=not (args.quick or args.no_big))
    OUT.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, im in todo:
            bench_image(name, im, ks, chosen, Path(tmp), rows)
        starts = startup_times()
        grow = None if (args.quick or targeted) else growth(Path(tmp))
    text = report(rows, ks, starts, grow)
    cmd = " ".join(shlex.quote(a) for a in ["python3", "bench/run.py", *sys.argv[1:]])
    import pil_kmc

    header = (
        f"Machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}; "
        f"pil_kmc {pil_kmc.__version__} from {Path(pil_kmc.__file__).parent}; "
        f"command: `{cmd}`\n\n"
    )
    (OUT / "results.md").write_text(header + text)
    (OUT / "results.json").write_text(json.dumps(rows, indent=1))
    plot(rows, OUT / "rd.png")
    print(header + text)


if __name__ == "__main__":
    main()
