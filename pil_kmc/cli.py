"""The ``kmc`` command line (also ``python -m pil_kmc``).

    kmc encode IN... [-k N | --quality MIN-MAX] [-o OUT | --ext .kmc] [-j JOBS] [--compression M]
                     [--dither] [--skip-if-larger] [--force] [--optimize]
    kmc decode IN.kmc OUT
    kmc info FILE...
    kmc npz IN OUT

Outputs are written atomically (a temporary file in the same folder, then a
rename), so a failed or interrupted run never leaves a partial file and never
destroys an existing one; an existing output is replaced only with
``--force``. ``-`` is standard input or output.

Exit status (pngquant's where they overlap): 0 success; 1 an output could not
be written or another error; 2 bad usage; 3 an input could not be read;
15 an output exists (use --force); 98 skipped, the result was larger than
the input (--skip-if-larger); 99 quality not reached. With several inputs,
each is reported and the others go on; the status is the first failure's.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from . import __version__, layout

OK, FAILED, USAGE, UNREADABLE, EXISTS, LARGER, QUALITY = 0, 1, 2, 3, 15, 98, 99


class CliError(Exception):
    """A failure with its exit status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def write_atomically(path: str, data: bytes, force: bool) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if target.exists() and not force:
        raise CliError(EXISTS, f"{path}: exists (use --force to replace it)")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    try:
        # mkstemp makes the file private; give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_input(path: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as e:
        raise CliError(UNREADABLE, f"{path}: cannot read ({e.strerror or e})") from None


def open_image(path: str) -> Image.Image:
    data = read_input(path)
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise CliError(UNREADABLE, f"{path}: cannot read image ({e})") from None
    return im


@dataclass(frozen=True)
class EncodeJob:
    src: str
    dst: str
    params: dict
    force: bool
    skip_if_larger: bool


def encode_one(job: EncodeJob) -> tuple[int, str]:
    """Encode one file; returns (status, message) instead of raising, for the pool."""
    from .encoder import QualityNotReached

    try:
        im = open_image(job.src)
        buffer = io.BytesIO()
        try:
            im.save(buffer, "KMC", **job.params)
        except QualityNotReached as e:
            raise CliError(QUALITY, f"{job.src}: {e}") from None
        data = buffer.getvalue()
        if job.skip_if_larger and job.src != "-" and len(data) > Path(job.src).stat().st_size:
            raise CliError(LARGER, f"{job.src}: skipped, {len(data):,} bytes is larger than input")
        write_atomically(job.dst, data, job.force)
        k = layout.read(io.BytesIO(data), index=False).header.k
        return OK, f"{job.src} -> {job.dst}: k={k}, {len(data):,} bytes"
    except CliError as e:
        return e.status, str(e)
    except ValueError as e:
        return USAGE, f"{job.src}: {e}"
    except OSError as e:
        return FAILED, f"{job.src}: {e}"


def _quality(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        return (float(low), float(high)) if sep else (0.0, float(low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX in dB, e.g. 30-40: {text!r}") from None


def _output_for(src: str, args) -> str:
    if args.output:
        return args.output
    if src == "-":
        return "-"
    return str(Path(src).with_suffix(args.ext))


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.active = total > 1 and sys.stderr.isatty()

    def step(self) -> None:
        self.done += 1
        if self.active:
            filled = 30 * self.done // self.total
            bar = "#" * filled + "." * (30 - filled)
            print(f"\r[{bar}] {self.done}/{self.total}", end="", file=sys.stderr, flush=True)
            if self.done == self.total:
                print(file=sys.stderr)


def cmd_encode(args) -> int:
    if len(args.inputs) > 1 and args.output:
        raise CliError(USAGE, "-o names one output; use --ext with several inputs")
    if args.inputs.count("-") and len(args.inputs) > 1:
        raise CliError(USAGE, "'-' (standard input) can only be the only input")
    params = {"clusters": args.clusters, "dither": args.dither, "seed": args.seed}
    if args.quality:
        params["quality"] = args.quality
    if args.optimize:
        params["optimize"] = True
    if args.colorspace:
        params["colorspace"] = args.colorspace
    if args.compression:
        params["compression"] = args.compression
    jobs = [
        EncodeJob(src, _output_for(src, args), params, args.force, args.skip_if_larger)
        for src in args.inputs
    ]
    progress = _Progress(len(jobs))
    workers = min(args.jobs or os.cpu_count() or 1, len(jobs))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = []
            for result in pool.map(encode_one, jobs):
                results.append(result)
                progress.step()
    else:
        results = []
        for job in jobs:
            results.append(encode_one(job))
            progress.step()
    for status, message in results:
        if status != OK:
            print(f"kmc: {message}", file=sys.stderr)
        elif args.verbose:
            print(message, file=sys.stderr)
    return next((status for status, _ in results if status != OK), OK)


def cmd_decode(args) -> int:
    im = open_image(args.input)
    if im.format not in ("KMC", "KMCNPZ"):
        raise CliError(UNREADABLE, f"{args.input}: not a .kmc or .npz file ({im.format})")
    if args.output == "-":
        fmt = "PNG"
    else:
        ext = Path(args.output).suffix.lower()
        fmt = Image.registered_extensions().get(ext)
        if fmt is None:
            raise CliError(USAGE, f"{args.output}: unknown image extension {ext!r}")
    buffer = io.BytesIO()
    try:
        try:
            im.save(buffer, fmt)
        except OSError:  # a format without palettes or alpha (JPEG...): plain colour
            alpha = im.mode == "LA" or (im.mode == "P" and im.palette.mode == "RGBA")
            rgb = im.convert("RGBA" if alpha and fmt != "JPEG" else "RGB")
            buffer = io.BytesIO()
            rgb.save(buffer, fmt)
    except (OSError, ValueError, KeyError) as e:
        raise CliError(FAILED, f"{args.output}: cannot write {fmt} ({e})") from None
    write_atomically(args.output, buffer.getvalue(), args.force)
    return OK


def cmd_info(args) -> int:
    status = OK
    for path in args.files:
        try:
            data = read_input(path)
            head = layout.read_head(io.BytesIO(data))
        except CliError as e:
            print(f"kmc: {e}", file=sys.stderr)
            status = status or e.status
            continue
        except (SyntaxError, OSError) as e:
            print(f"kmc: {path}: not a valid .kmc file ({e})", file=sys.stderr)
            status = status or UNREADABLE
            continue
        h = head.header
        bpp = 8 * len(data) / (h.width * h.height)
        extra = ", ".join(t.decode() for t, _ in head.ancillary) or "none"
        print(
            f"{path}: {h.width}x{h.height}, colour model {layout.CHANNEL_NAMES[h.channels]}, "
            f"k={h.k}, {h.bit_depth}-bit indices, "
            f"{layout.COMPRESSION_NAMES[h.compression]} compression, "
            f"version {h.version[0]}.{h.version[1]}, {len(data):,} bytes, {bpp:.3f} bits/pixel, "
            f"metadata: {extra}"
        )
    return status


def cmd_npz(args) -> int:
    from . import npz

    src = io.BytesIO(read_input(args.input))
    out = io.BytesIO()
    to_npz = Path(args.output).suffix.lower() == ".npz"
    try:
        (npz.kmc_to_npz if to_npz else npz.npz_to_kmc)(src, out)
    except (OSError, ValueError) as e:
        raise CliError(UNREADABLE, f"{args.input}: {e}") from None
    write_atomically(args.output, out.getvalue(), args.force)
    return OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kmc", description="k-means colour quantization to .kmc files (a Pillow format)."
    )
    p.add_argument("--version", action="version", version=f"kmc (pil_kmc) {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("encode", help="quantize images to .kmc")
    e.add_argument("inputs", nargs="+", metavar="IN", help="image files, or - for standard input")
    size = e.add_mutually_exclusive_group()
    size.add_argument("-k", "--clusters", type=int, default=256, help="colours (1-256)")
    size.add_argument(
        "--quality",
        type=_quality,
        metavar="MIN-MAX",
        help="PSNR dB: the fewest colours reaching MAX; fail (99) below MIN",
    )
    out = e.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", metavar="OUT", help="output file (one input), - for stdout")
    out.add_argument("--ext", default=".kmc", help="output extension beside each input (.kmc)")
    e.add_argument("-j", "--jobs", type=int, help="processes (default: all cores)")
    e.add_argument("--dither", action="store_true", help="Floyd-Steinberg dithering")
    e.add_argument("--optimize", action="store_true", help="smaller files, slower encoding")
    e.add_argument("--colorspace", choices=("rgb", "oklab"), help="space to cluster in")
    e.add_argument(
        "--compression",
        choices=tuple(layout.COMPRESSION_NAMES.values()),
        help="force one index stream compression (default: the smaller of xz and bzip2)",
    )
    e.add_argument("--seed", type=int, default=0, help="seed of the seeding draws (default 0)")
    e.add_argument("--skip-if-larger", action="store_true", help="keep no output larger than IN")
    e.add_argument("-f", "--force", action="store_true", help="replace existing outputs")
    e.add_argument("-v", "--verbose", action="store_true", help="report every file")
    e.set_defaults(run=cmd_encode)

    d = sub.add_parser("decode", help="write a .kmc (or .npz) as PNG, JPEG, WebP...")
    d.add_argument("input", metavar="IN")
    d.add_argument("output", metavar="OUT", help="format from the extension; - for PNG on stdout")
    d.add_argument("-f", "--force", action="store_true", help="replace an existing output")
    d.set_defaults(run=cmd_decode)

    i = sub.add_parser("info", help="header fields, k, bytes and bits per pixel")
    i.add_argument("files", nargs="+", metavar="FILE")
    i.set_defaults(run=cmd_info)

    n = sub.add_parser("npz", help="convert .kmc <-> the original .npz layout, losslessly")
    n.add_argument("input", metavar="IN")
    n.add_argument("output", metavar="OUT", help="ending in .npz or .kmc")
    n.add_argument("-f", "--force", action="store_true", help="replace an existing output")
    n.set_defaults(run=cmd_npz)
    return p


def main(argv: list[str] | None = None) -> int:
    import pil_kmc  # noqa: F401  (registers the formats in worker processes too)

    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except CliError as e:
        print(f"kmc: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        return 130
