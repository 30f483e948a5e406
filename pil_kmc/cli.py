"""The ``kmc`` command line (also ``python -m pil_kmc``).

    kmc encode IN... [-k N] [--quality MIN-MAX | --psnr MIN-MAX] [-o OUT | --ext EXT]
                     [-j JOBS] [--strip] [--first-frame] [--skip-if-larger] [-f] [-v] ...
    kmc decode IN.kmc OUT [--background COLOUR] [-f]
    kmc info FILE...
    kmc npz IN OUT [-f]

Outputs are written atomically (a temporary file in the same folder, then a
rename), so a failed or interrupted run (Ctrl-C, SIGTERM, SIGHUP) never
leaves a partial or temporary file, never destroys an existing one, and
starts no output after the interrupt. An existing output, or a symbolic
link in its place, is replaced only with ``--force``. ``-`` is standard
input or output. Every failure is one line on standard error.

Exit status (pngquant's where they overlap): 0 success; 1 an output could not
be written or another error; 2 bad usage; 3 an input could not be read;
15 an output exists (use --force); 98 skipped, the result was larger than
the input (--skip-if-larger); 99 quality not reached; 128 + N killed by
signal N (130 for Ctrl-C). With several inputs, each is reported as it
finishes and the others go on; the status is that of the first failing
input in command-line order.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import signal
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from PIL import Image, ImageColor, UnidentifiedImageError

from . import __version__, layout, parallel

if TYPE_CHECKING:
    from distributed import Client

OK, FAILED, USAGE, UNREADABLE, EXISTS, LARGER, QUALITY = 0, 1, 2, 3, 15, 98, 99

#: ``kmc info`` reads at most this much of a file: a header, its palette and metadata.
INFO_LIMIT = 64 << 20


class CliError(Exception):
    """A failure with its exit status; the message names the user's path."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- signals ---------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived; unwinding removes temporary files."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class _Interrupts:
    """The first signal received, and how deep we are in sections that must finish."""

    pending: int | None = None
    depth = 0


def _on_signal(signum: int, frame) -> None:
    if _Interrupts.pending is not None:
        return  # already unwinding: a second Ctrl-C must not cut the cleanup short
    _Interrupts.pending = signum
    if _Interrupts.depth == 0:
        raise Interrupted(signum)


@contextlib.contextmanager
def _handling_signals() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`Interrupted` for the duration."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Interrupts.pending, _Interrupts.depth = None, 0
    previous = {s: signal.signal(s, _on_signal) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """A section that a signal does not cut; the next :func:`_check_interrupt` raises it."""
    _Interrupts.depth += 1
    try:
        yield
    finally:
        _Interrupts.depth -= 1


def _check_interrupt() -> None:
    """Raise a signal held back by :func:`_uninterrupted`, at a point where that is safe."""
    if _Interrupts.pending is not None:
        raise Interrupted(_Interrupts.pending)


# --- files -------------------------------------------------------------------


def _reason(e: BaseException) -> str:
    """The OS's words for an error, without the file names it carries (often ours)."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


_STREAM_REPR = re.compile(
    r"<_io\.\w+ (?:object|name=[^>]*) at 0x[0-9a-fA-F]+>|<_io\.\w+ name=[^>]*>"
)


def _clean(text: str, path: str) -> str:
    """``text`` with Python's file-object reprs replaced by the user's path."""
    return _STREAM_REPR.sub(repr(path), text)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _identity(path: str) -> tuple[int, int] | None:
    """Device and inode of an existing file (links followed), or None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _path_key(path: str) -> str:
    """Where ``path`` lands: its folder resolved (links and ``..``), its own name kept."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(os.path.realpath(folder), name)


def check_output(path: str, force: bool) -> None:
    """Refuse before any work: an existing output or link without ``force``, a missing folder."""
    if path == "-":
        return
    if os.path.lexists(path):
        if os.path.isdir(path):
            raise CliError(FAILED, f"{path}: is a folder")
        if not force:
            what = "is a symbolic link" if os.path.islink(path) else "exists"
            raise CliError(EXISTS, f"{path}: {what} (use --force to replace it)")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise CliError(FAILED, f"{path}: cannot write: folder {folder} does not exist")


def write_atomically(path: str, data: bytes, force: bool) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    A signal during the write is held until the rename is done, so there is
    either the whole new file or the old state, and never a temporary file.
    A symbolic link at ``path`` is replaced (not followed), and only with
    ``force``, like an existing file.
    """
    if path == "-":
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise CliError(FAILED, "standard output: closed before the image was written") from None
        return
    _check_interrupt()  # no new output once interrupted
    check_output(path, force)
    folder = os.path.dirname(path) or "."
    with _uninterrupted():
        try:
            # A short fixed name, so that outputs up to the file system's limit work.
            fd, tmp = tempfile.mkstemp(prefix=".kmc-", suffix=".tmp", dir=folder)
        except OSError as e:
            raise CliError(FAILED, f"{path}: cannot write: {_reason(e)}") from None
        try:
            try:
                old = os.lstat(path)
                keep = stat.S_ISREG(old.st_mode)
            except OSError:
                keep = False
            # mkstemp makes the file private; give it the mode a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, stat.S_IMODE(old.st_mode) if keep else 0o666 & ~umask)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(e, OSError):
                raise CliError(FAILED, f"{path}: cannot write: {_reason(e)}") from None
            raise


def read_input(path: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as e:
        raise CliError(UNREADABLE, f"{path}: cannot read: {_reason(e)}") from None


def open_image(path: str, data: bytes) -> Image.Image:
    """The decoded image in ``data`` (read from ``path``), or a one-line error."""
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except UnidentifiedImageError:
        raise CliError(UNREADABLE, f"{path}: not an image file that Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise CliError(UNREADABLE, f"{path}: cannot read image: {_clean(str(e), path)}") from None
    return im


def _refuse_same(src: str, dst: str) -> None:
    if src == "-" or dst == "-":
        return
    if _path_key(src).casefold() == _path_key(dst).casefold() or _same_file(src, dst):
        raise CliError(USAGE, f"{dst}: is the input itself; choose another output")


# --- encode ------------------------------------------------------------------


@dataclass(frozen=True)
class EncodeJob:
    """One input to encode: what the worker needs (it writes nothing itself)."""

    src: str
    dst: str
    params: dict
    skip_if_larger: bool = False
    first_frame: bool = False
    strip: bool = False


@dataclass(frozen=True)
class Encoded:
    """What a worker sends back: a status, a message, and the file's bytes on success.

    On success the message holds notes (one a line): warnings of the save.
    """

    status: int
    message: str
    data: bytes = b""
    size_in: int = 0


# What a save keeps only when passed; the ICC profile and text it takes from the image's info.
_METADATA = ("exif", "xmp", "dpi")


def _metadata_params(im: Image.Image, strip: bool) -> tuple[dict, list[str]]:
    """Metadata to pass to the save, and notes on what could not be kept.

    EXIF, XMP and DPI are passed explicitly, as a save keeps them only then;
    the ICC profile and text come from the image's ``info``, where the save
    drops what it cannot store (a profile of another colour space, text over
    a chunk's size) with a warning rather than failing. With ``--strip``,
    none but the ICC profile: the colours mean something else without it.
    """
    if strip:
        return {"exif": None, "xmp": None, "dpi": None, "text": {}}, []
    from . import metadata

    params, notes = {}, []
    for key in _METADATA:
        value = im.info.get(key)
        if not value:
            continue
        if key == "dpi" and not all(isinstance(v, (int, float)) and v > 0 for v in value):
            continue  # a zero or malformed resolution is no resolution
        try:
            metadata.to_chunks({key: value}, {})
        except ValueError as e:
            notes.append(f"{key} not kept: {e}")
            continue
        params[key] = value
    return params, notes


def encode_one(job: EncodeJob, data: bytes | None = None) -> Encoded:
    """Encode one file in memory; returns the outcome instead of raising, for the pool.

    ``data`` is the input's bytes when the caller read them (--scheduler).
    """
    try:
        if threading.current_thread() is not threading.main_thread():
            # catch_warnings changes the whole process's settings: not in the
            # threads a Dask worker runs tasks in (their warnings go to its log).
            return _encode_one(job, data, [])
        with warnings.catch_warnings(record=True) as caught:  # one line each, with the name
            warnings.simplefilter("always")
            return _encode_one(job, data, caught)
    except CliError as e:
        return Encoded(e.status, str(e))
    except ValueError as e:
        return Encoded(USAGE, f"{job.src}: {_clean(str(e), job.src)}")
    except MemoryError:
        return Encoded(FAILED, f"{job.src}: out of memory")
    except Exception as e:  # one line per file, whatever went wrong
        return Encoded(FAILED, f"{job.src}: {type(e).__name__}: {_clean(str(e), job.src)}")


def _encode_one(job: EncodeJob, data: bytes | None, caught: list) -> Encoded:
    """:func:`encode_one`'s work; ``caught`` collects the warnings, reported as notes."""
    from .encoder import QualityNotReached

    data = read_input(job.src) if data is None else data
    im = open_image(job.src, data)
    # MPO's further frames (a camera's previews, stereo views) are no animation.
    frames = getattr(im, "n_frames", 1) if im.format != "MPO" else 1
    if frames > 1 and not job.first_frame:
        raise CliError(
            USAGE,
            f"{job.src}: has {frames} frames and a .kmc file holds one image "
            "(--first-frame keeps the first)",
        )
    if job.strip:
        from PIL import ImageOps

        im = ImageOps.exif_transpose(im)  # the orientation goes: apply it to the pixels
    kept, notes = _metadata_params(im, job.strip)
    params = {**kept, **job.params}
    buffer = io.BytesIO()
    try:
        im.save(buffer, "KMC", **params)
    except QualityNotReached as e:
        raise CliError(QUALITY, f"{job.src}: {e}") from None
    except OSError as e:
        if "cannot write mode" in str(e):  # 32-bit I and F: no fixed range
            raise CliError(
                FAILED,
                f"{job.src}: {im.mode} images have no fixed range; "
                "scale them to 8 or 16 bits first",
            ) from None
        raise
    notes += [str(w.message) for w in caught]
    out = buffer.getvalue()
    if job.skip_if_larger and len(out) > len(data):
        raise CliError(
            LARGER, f"{job.src}: skipped, {len(out):,} bytes would be larger than the input"
        )
    return Encoded(OK, "\n".join(f"{job.src}: {note}" for note in notes), out, len(data))


def _range(text: str, what: str, single) -> tuple[float, float]:
    """pngquant's range forms: ``MIN-MAX``, ``MIN-`` (to 100), ``-MAX`` (from 0), ``N``."""
    number = r"\d+(?:\.\d*)?"
    m = re.fullmatch(rf"({number})?(-)?({number})?", text.strip())
    if not m or not (m[1] or m[3]) or (m[1] and m[3] and not m[2]):
        raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}")
    low, dash, high = m[1], m[2], m[3]
    if not dash:
        return single(float(low))
    return float(low or 0), float(high or 100)


def _strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a strength from 0 to 1, e.g. 0.5: {text!r}")
    return value


def _quality_range(text: str) -> tuple[float, float]:
    # pngquant: "N" aims at N and accepts down to 90% of it.
    low, high = _range(text, "MIN-MAX from 0 to 100, e.g. 65-80", lambda n: (n * 9 // 10, n))
    if not 0 <= low <= high <= 100:
        raise argparse.ArgumentTypeError(f"expected 0 <= MIN <= MAX <= 100, not {text!r}")
    return low, high


def _psnr_range(text: str) -> tuple[float, float]:
    low, high = _range(text, "MIN-MAX in dB, e.g. 35-40", lambda n: (0.0, n))
    if not 0 <= low <= high <= 100:
        raise argparse.ArgumentTypeError(f"expected 0 <= MIN <= MAX <= 100 dB, not {text!r}")
    return low, high


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes, 1 or more, not {text!r}")
    return n


def _extension(text: str) -> str:
    """pngquant's ``--ext`` forms: ``-fs8.kmc`` and ``.kmc`` as given, a bare ``kmc`` gets a dot."""
    if not text or "/" in text or os.sep in text:
        raise argparse.ArgumentTypeError(
            f"expected a suffix such as .kmc or -small.kmc, not {text!r}"
        )
    return text if text[0] in ".-_" else "." + text


def save_params(args: argparse.Namespace) -> dict:
    """The save parameters that the options ask for: the one place options become them."""
    params = {"clusters": args.clusters, "dither": args.dither, "seed": args.seed}
    if args.quality:
        params["quality"] = args.quality
    if args.psnr:
        params["psnr"] = args.psnr
    if args.optimize:
        params["optimize"] = True
    if args.colorspace:
        params["colorspace"] = args.colorspace
    if args.compression:
        params["compression"] = args.compression
    return params


def _output_for(src: str, args: argparse.Namespace) -> str:
    if args.output:
        return args.output
    if src == "-":
        return "-"
    # As pngquant: the input's extension gives way to the suffix.
    return str(Path(src).with_suffix("")) + args.ext


def plan_jobs(args: argparse.Namespace, params: dict) -> list[EncodeJob]:
    """One job per input, after refusing colliding outputs (exit 2) before any work.

    Outputs collide when two inputs would write one file, when one would
    overwrite any input, or when two differ only in letter case (one file on
    case-insensitive file systems, so refused everywhere).
    """
    if args.output == "":
        raise CliError(USAGE, "-o needs a file name (or - for standard output)")
    if len(args.inputs) > 1 and args.output:
        raise CliError(USAGE, "-o names one output; use --ext with several inputs")
    if "-" in args.inputs and len(args.inputs) > 1:
        raise CliError(USAGE, "'-' (standard input) can only be the only input")
    jobs = [
        EncodeJob(
            src, _output_for(src, args), params, args.skip_if_larger, args.first_frame, args.strip
        )
        for src in args.inputs
    ]
    # Inputs by name (letter case aside) and by file (hard and symbolic links).
    by_name = {_path_key(job.src).casefold(): job.src for job in jobs if job.src != "-"}
    by_file = {_identity(job.src): job.src for job in jobs if job.src != "-"}
    by_file.pop(None, None)
    seen: dict[str, EncodeJob] = {}
    for job in jobs:
        if job.dst == "-":
            continue
        key = _path_key(job.dst).casefold()
        source = by_name.get(key) or by_file.get(_identity(job.dst))
        if source is not None:
            raise CliError(
                USAGE,
                f"{job.dst}: output of {job.src} would overwrite the input "
                f"{source}; choose another --ext or -o",
            )
        other = seen.get(key)
        if other is not None:
            raise CliError(
                USAGE,
                f"{other.src} and {job.src} would both be written to "
                f"{job.dst}; encode them separately or with -o",
            )
        seen[key] = job
    return jobs


def _single_threaded_blas() -> None:
    # The workers already share the cores between them: BLAS thread pools
    # could only oversubscribe them. (It acts only before numpy is imported.)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _worker_start(threads: int) -> None:
    _single_threaded_blas()
    parallel.limit(threads)
    # The main process handles signals and stops the workers; a worker owns no
    # file, so dying on SIGTERM or SIGHUP loses nothing.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for s in _SIGNALS:
        if s != signal.SIGINT:
            signal.signal(s, signal.SIG_DFL)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Stop at once: cancel what has not started and end the processes that run."""
    if hasattr(pool, "terminate_workers"):  # Python 3.14: it shuts the pool down too
        pool.terminate_workers()
        return
    processes = list(getattr(pool, "_processes", None) or {})  # no public way before 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for pid in processes:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)


def _size(job: EncodeJob) -> int:
    try:
        return os.stat(job.src).st_size
    except (OSError, ValueError):
        return 0


def run_jobs(
    jobs: list[EncodeJob], workers: int, done: Callable[[EncodeJob, Encoded], None]
) -> None:
    """Run ``jobs`` in ``workers`` processes, calling ``done`` in this process as each finishes."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            _check_interrupt()
            done(job, encode_one(job))
        _check_interrupt()
        return
    import multiprocessing

    if multiprocessing.get_start_method() == "fork" and "numpy" not in sys.modules:
        # Import the encoder's numpy and scipy once, here: forked workers share
        # it instead of each importing it again.
        _single_threaded_blas()
        from . import codec, pixels, quantize  # noqa: F401
    # The workers share the cores: each gets its share for pil_kmc's own threads.
    threads = max(1, parallel.cores() // workers)
    pool = ProcessPoolExecutor(workers, initializer=_worker_start, initargs=(threads,))
    finished = False
    try:
        # Largest first, so that no big file starts last while the other workers idle.
        largest_first = sorted(jobs, key=_size, reverse=True)
        futures = {pool.submit(encode_one, job): job for job in largest_first}
        for future in as_completed(futures):
            job = futures[future]
            try:
                result = future.result()
            except Exception as e:  # the worker died (killed, out of memory) or could not start
                result = Encoded(FAILED, f"{job.src}: the worker process failed ({_reason(e)})")
            done(job, result)
            _check_interrupt()
        finished = True
    finally:
        if finished:
            pool.shutdown()
        else:
            _stop_workers(pool)


@dataclass
class _Batch:
    """Reports each file as it finishes, a progress bar on a terminal, and the summary."""

    jobs: list[EncodeJob]
    force: bool
    verbose: bool
    statuses: dict[int, int] = field(default_factory=dict)
    written: int = 0
    skipped: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def __post_init__(self) -> None:
        self.order = {id(job): i for i, job in enumerate(self.jobs)}
        self.bar = len(self.jobs) > 1 and sys.stderr.isatty()
        self.completed = 0

    def say(self, text: str) -> None:
        if self.bar:
            print("\r\033[K", end="", file=sys.stderr)
        print(text, file=sys.stderr, flush=True)
        self._draw()

    def _draw(self) -> None:
        if self.bar and self.completed < len(self.jobs):
            total = len(self.jobs)
            filled = 30 * self.completed // total
            bar = "#" * filled + "." * (30 - filled)
            print(f"\r[{bar}] {self.completed}/{total}", end="", file=sys.stderr, flush=True)

    def fail(self, job: EncodeJob, status: int, message: str) -> None:
        self.statuses[self.order[id(job)]] = status
        self.skipped += status == LARGER
        self.completed += 1
        self.say(f"kmc: {message}")

    def done(self, job: EncodeJob, result: Encoded) -> None:
        """A finished job: write its output here, in the main process, and report it."""
        if result.status != OK:
            self.fail(job, result.status, result.message)
            return
        try:
            write_atomically(job.dst, result.data, self.force)
        except CliError as e:
            self.fail(job, e.status, str(e))
            return
        self.statuses[self.order[id(job)]] = OK
        for note in filter(None, result.message.splitlines()):  # what was not kept, say
            self.say(f"kmc: {note}")
        self.written += 1
        self.completed += 1
        self.bytes_in += result.size_in
        self.bytes_out += len(result.data)
        if self.verbose:
            k = layout.read(io.BytesIO(result.data), index=False).header.k
            share = len(result.data) / result.size_in if result.size_in else 0
            self.say(
                f"{job.src} -> {job.dst}: {k} colours, {result.size_in:,} -> "
                f"{len(result.data):,} bytes ({share:.1%})"
            )
        else:
            self._draw()

    def summary(self) -> None:
        if self.bar:
            print("\r\033[K", end="", file=sys.stderr)
        if len(self.jobs) < 2:
            return
        failed = sum(s not in (OK, LARGER) for s in self.statuses.values())
        parts = [f"{self.written} written"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped as larger")
        parts.append(f"{failed} failed")
        if self.completed < len(self.jobs):
            parts.append(f"{len(self.jobs) - self.completed} not done (interrupted)")
        share = f" ({self.bytes_out / self.bytes_in:.1%} of the input)" if self.bytes_in else ""
        print(
            f"{len(self.jobs)} files: {', '.join(parts)}; {self.bytes_in:,} bytes in, "
            f"{self.bytes_out:,} bytes out{share}",
            file=sys.stderr,
            flush=True,
        )

    def status(self) -> int:
        return next((self.statuses[i] for i in sorted(self.statuses) if self.statuses[i]), OK)


def cmd_encode(args: argparse.Namespace) -> int:
    from . import encoder

    params = save_params(args)
    try:  # every option checked once, before any file is read
        encoder.save_options(params)
    except ValueError as e:
        raise CliError(USAGE, str(e)) from None
    jobs = plan_jobs(args, params)
    batch = _Batch(jobs, args.force, args.verbose)
    todo = []
    for job in jobs:  # outputs that exist are reported now, and cost no encoding
        try:
            check_output(job.dst, args.force)
            todo.append(job)
        except CliError as e:
            batch.fail(job, e.status, str(e))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(args.jobs or cores or 1, len(todo))
    client = None
    if args.map or args.shared_palette or args.scheduler:  # many images: see below
        client, todo = palette_params(args, params, jobs, todo, batch, workers)
    try:
        if client is not None:
            run_on_cluster(client, todo, batch.done)
        else:
            run_jobs(todo, workers, batch.done)
    finally:
        batch.summary()
        if client is not None:
            client.close()
    return batch.status()


# --- many images: --shared-palette, --map, --scheduler -------------------------
# The work is in pil_kmc.palettes and pil_kmc.distributed; cmd_encode calls
# palette_params and run_on_cluster, parser() calls add_many_options.


def add_many_options(e: argparse.ArgumentParser) -> None:
    """The encode options for collections of images."""
    palette = e.add_mutually_exclusive_group()
    palette.add_argument(
        "--shared-palette",
        action="store_true",
        help="one palette (-k colours) for all inputs, from their merged histogram",
    )
    palette.add_argument(
        "--map", metavar="FILE", help="remap to the palette of FILE (an image of <= 256 colours)"
    )
    e.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="encode on this dask.distributed scheduler (needs the pil-kmc[dask] extra)",
    )


def palette_params(
    args: argparse.Namespace,
    params: dict,
    jobs: list[EncodeJob],
    todo: list[EncodeJob],
    batch: _Batch,
    workers: int,
) -> tuple[Client | None, list[EncodeJob]]:
    """Put the --map or --shared-palette palette into ``params`` (which the jobs share).

    Connects to --scheduler if given. A shared palette comes from every
    input, ``jobs``, also those whose output exists and is kept, so that the
    same command gives the same palette whatever is already written. Inputs
    it cannot read are reported to ``batch`` (unless reported already) and
    left out. Returns the client (or None) and the jobs of ``todo`` left to
    encode.
    """
    shared = args.shared_palette
    if (args.quality or args.psnr) and (args.map or shared):
        raise CliError(
            USAGE, "--quality and --psnr choose the colours; --map and --shared-palette give them"
        )
    if "-" in args.inputs and (shared or args.scheduler):
        raise CliError(USAGE, "'-' (standard input) cannot go with --shared-palette or --scheduler")
    if args.map:
        from .palettes import as_palette

        try:
            params["palette"] = as_palette(open_image(args.map, read_input(args.map)))
        except ValueError as e:
            raise CliError(USAGE, f"{args.map}: {e}") from None
    client = _connect(args.scheduler) if args.scheduler else None
    if not shared or not todo:
        return client, todo
    from . import distributed

    try:
        part = distributed.merged_histogram([job.src for job in jobs], client, workers)
        failed = {id(jobs[f.index]): f.message for f in part.failures}
        if part.histogram is None:
            for job in todo:
                batch.fail(job, UNREADABLE, failed[id(job)])
            return client, []
        make, options = distributed.palette_from_histogram, {"seed": args.seed}
        options["colorspace"] = args.colorspace or "rgb"
        if client is not None:  # the one k-means runs on a worker too
            future = client.submit(make, part.histogram, args.clusters, **options)
            params["palette"] = future.result()
        else:
            params["palette"] = make(part.histogram, args.clusters, **options)
    except BaseException:
        if client is not None:
            client.close()
        raise
    for job in todo:
        if id(job) in failed:
            batch.fail(job, UNREADABLE, failed[id(job)])
    return client, [job for job in todo if id(job) not in failed]


def _connect(address: str) -> Client:
    from . import distributed

    try:
        return distributed.connect(address)
    except ImportError as e:
        raise CliError(USAGE, f"--scheduler: {e}") from None
    except (OSError, ValueError) as e:
        raise CliError(FAILED, f"cannot reach the scheduler {address}: {_reason(e)}") from None


def run_on_cluster(
    client: Client, jobs: list[EncodeJob], done: Callable[[EncodeJob, Encoded], None]
) -> None:
    """As :func:`run_jobs`, on a Dask cluster: this process reads the inputs and writes here."""
    from .distributed import windowed

    def tasks():
        for job in jobs:
            _check_interrupt()
            try:
                data = read_input(job.src)
            except CliError as e:
                done(job, Encoded(e.status, str(e)))
                continue
            yield job, (job, data)

    for job, result, error in windowed(client, encode_one, tasks()):
        if error is not None:
            reason = " ".join(f"{type(error).__name__}: {error}".split())
            result = Encoded(FAILED, f"{job.src}: failed on the cluster ({reason})")
        done(job, result)
        _check_interrupt()


# --- decode ------------------------------------------------------------------

# Formats that Pillow writes with full alpha; GIF keeps only fully transparent pixels.
_ALPHA_FORMATS = {
    "PNG", "WEBP", "TIFF", "ICO", "TGA", "JPEG2000", "AVIF", "QOI", "SGI", "DDS", "BLP", "ICNS"
}  # fmt: skip


def _background(text: str) -> tuple[int, int, int]:
    try:
        return ImageColor.getrgb(text)[:3]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a colour (white, #ffffff...), not {text!r}"
        ) from None


def _binary_alpha_palette(rgba: Image.Image) -> Image.Image:
    """RGBA with alpha 0 or 255 only, as P with one transparent entry (at most 256 colours)."""
    import numpy as np

    a = np.asarray(rgba).copy()
    a[a[:, :, 3] == 0] = 0
    keys = a.view("<u4").reshape(a.shape[:2])
    colours, indices = np.unique(keys, return_inverse=True)
    if len(colours) > 256:
        raise CliError(FAILED, "more than 256 colours do not fit a GIF palette")
    entries = colours.astype("<u4").view(np.uint8).reshape(-1, 4)
    p = Image.fromarray(indices.reshape(a.shape[:2]).astype(np.uint8), "P")
    p.putpalette(entries[:, :3].tobytes(), "RGB")
    transparent = np.flatnonzero(entries[:, 3] == 0)
    if len(transparent):
        p.info["transparency"] = int(transparent[0])
    return p


def _without_alpha(im: Image.Image) -> Image.Image:
    """An opaque image (every alpha 255) without its alpha channel or transparency."""
    if im.mode == "P":
        out = im.copy()
        out.putpalette(im.getpalette("RGB"), "RGB")
        out.info.pop("transparency", None)
        return out
    return im.convert("L" if im.mode in ("L", "LA") else "RGB")


def _text_chunks(data: bytes) -> dict[str, str]:
    """The ``tEXt`` chunks of a ``.kmc`` file, for the outputs that hold text."""
    try:
        head = layout.read(io.BytesIO(data), index=False)
    except (SyntaxError, OSError):
        return {}
    text = {}
    for kind, chunk in head.ancillary:
        if kind == b"tEXt":
            keyword, _, value = chunk.partition(b"\0")
            with contextlib.suppress(UnicodeDecodeError):
                text[keyword.decode()] = value.decode()
    return text


def _save_arguments(im: Image.Image, fmt: str, text: dict[str, str]) -> dict:
    """ICC profile, EXIF (orientation included), XMP and DPI in each format's own words."""
    kwargs = {key: im.info[key] for key in ("icc_profile", *_METADATA) if im.info.get(key)}
    if fmt == "PNG":  # Pillow writes XMP and text into PNG only through pnginfo
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        for keyword, value in text.items():
            info.add_text(keyword, value)
        if "xmp" in kwargs:
            xmp = kwargs.pop("xmp")
            info.add_itxt("XML:com.adobe.xmp", xmp.decode() if isinstance(xmp, bytes) else xmp)
        kwargs["pnginfo"] = info
    elif fmt == "WEBP":
        kwargs["lossless"] = True
    elif fmt == "ICO" and max(im.size) <= 256:
        kwargs["sizes"] = [im.size]  # the image itself, not Pillow's default icon sizes
    elif fmt == "TIFF" and ("exif" in kwargs or "xmp" in kwargs):
        exif = Image.Exif()
        if "exif" in kwargs:
            exif.load(kwargs.pop("exif"))
        if "xmp" in kwargs:
            xmp = kwargs.pop("xmp")
            exif[700] = xmp.encode() if isinstance(xmp, str) else xmp  # TIFF's XMP tag
        kwargs["exif"] = exif
    return kwargs


def _for_format(im: Image.Image, fmt: str, background, output: str) -> Image.Image:
    """The image as ``fmt`` can hold it, refusing to drop transparency silently."""
    rgba = im.convert("RGBA") if im.has_transparency_data else None
    counts = rgba.getchannel("A").histogram() if rgba is not None else [0] * 255 + [1]
    transparent = sum(counts[:255]) > 0
    if transparent and background is not None:
        flat = Image.new("RGBA", im.size, (*background, 255))
        flat.alpha_composite(rgba)
        gray = im.mode in ("L", "LA") and len(set(background)) == 1
        im, transparent = flat.convert("L" if gray else "RGB"), False
    if not transparent:
        im = _without_alpha(im) if im.has_transparency_data else im
        return im.convert("RGB") if fmt == "JPEG" and im.mode == "P" else im
    if fmt == "PNG":
        return im  # P with alpha in its palette (tRNS), or LA
    if fmt == "GIF" and not any(counts[1:255]):
        return _binary_alpha_palette(rgba)
    if fmt in _ALPHA_FORMATS:
        return rgba
    partly = " (GIF keeps only fully transparent pixels)" if fmt == "GIF" else ""
    raise CliError(
        USAGE,
        f"{output}: {fmt} cannot hold this image's transparency{partly}; "
        "write PNG or WebP, or give --background COLOUR",
    )


def cmd_decode(args: argparse.Namespace) -> int:
    if args.output == "-":
        fmt = "PNG"
    else:
        ext = Path(args.output).suffix.lower()
        fmt = Image.registered_extensions().get(ext)
        if fmt is None or fmt not in Image.SAVE:
            raise CliError(USAGE, f"{args.output}: unknown image extension {ext!r}")
    _refuse_same(args.input, args.output)
    check_output(args.output, args.force)  # before decoding anything
    data = read_input(args.input)
    im = open_image(args.input, data)
    if im.format not in ("KMC", "KMCNPZ"):
        raise CliError(UNREADABLE, f"{args.input}: not a .kmc or .npz file ({im.format})")
    out = _for_format(im, fmt, args.background, args.output)
    kwargs = _save_arguments(im, fmt, _text_chunks(data) if im.format == "KMC" else {})
    buffer = io.BytesIO()
    try:
        try:
            out.save(buffer, fmt, **kwargs)
        except OSError:  # a mode this format cannot write (P for some): plain colour
            buffer = io.BytesIO()
            plain = "RGBA" if out.has_transparency_data else "RGB"
            out.convert(plain).save(buffer, fmt, **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as e:
        message = f"{args.output}: cannot write {fmt}: {_clean(str(e), args.output)}"
        raise CliError(FAILED, message) from None
    write_atomically(args.output, buffer.getvalue(), args.force)
    return OK


# --- info --------------------------------------------------------------------

_MODELS = {layout.GRAY: "gray", layout.GRAY_ALPHA: "gray + alpha", layout.RGB: "RGB",
           layout.RGBA: "RGB + alpha"}  # fmt: skip


class _Bounded(io.RawIOBase):
    """A read-only view of a file that refuses to read more than ``limit`` bytes in all."""

    def __init__(self, f, limit: int, path: str) -> None:
        self.f, self.left, self.path = f, limit, path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self.f.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def readinto(self, buffer) -> int:
        if self.left <= 0:
            raise CliError(
                UNREADABLE,
                f"{self.path}: more than {INFO_LIMIT:,} bytes of "
                "header and metadata; not inspected further",
            )
        n = self.f.readinto(memoryview(buffer)[: self.left])
        self.left -= n or 0
        return n


@contextlib.contextmanager
def _opened_for_info(path: str) -> Iterator[tuple[io.BufferedReader, int | None]]:
    """A bounded binary view of ``path`` (or standard input) and its size, if known."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(INFO_LIMIT + 1)
            size = len(data) if len(data) <= INFO_LIMIT else None
            yield io.BufferedReader(_Bounded(io.BytesIO(data), INFO_LIMIT, path)), size
            return
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode):
                yield io.BufferedReader(_Bounded(f, INFO_LIMIT, path), 1 << 16), st.st_size
            else:  # a device or pipe: read what a header could need, no more
                head = f.read(len(layout.SIGNATURE))
                if head == layout.SIGNATURE or head.startswith(b"PK\x03\x04"):
                    head += f.read(INFO_LIMIT - len(head))
                yield io.BufferedReader(_Bounded(io.BytesIO(head), INFO_LIMIT, path)), None
    except OSError as e:
        raise CliError(UNREADABLE, f"{path}: cannot read: {_reason(e)}") from None


def _size_text(size: int | None, pixels: int) -> str:
    if size is None:
        return ""
    return f", {size:,} bytes ({8 * size / pixels:.3f} bits/pixel)"


def _describe_kmc(path: str, fp, size: int | None) -> str:
    from . import metadata

    head = layout.read(fp, index=False)
    h = head.header
    info = metadata.from_chunks(head.ancillary)
    extras = []
    if "icc_profile" in info:
        extras.append(f"ICC profile, {len(info['icc_profile']):,} bytes")
    if "exif" in info:
        extras.append(f"EXIF, {len(info['exif']) - 6:,} bytes")
    if "xmp" in info:
        extras.append(f"XMP, {len(info['xmp']):,} bytes")
    if "dpi" in info:
        # Stored per metre, so 72 dpi comes back as 72.009: say 72.
        x, y = (round(v) if abs(v - round(v)) < 0.02 else round(v, 2) for v in info["dpi"])
        extras.append(f"{x:g} x {y:g} dpi")
    known = {b"iCCP", b"eXIf", b"xMPp", b"pHYs", b"tEXt"}
    texts = [
        d.partition(b"\0")[0].decode(errors="replace") for t, d in head.ancillary if t == b"tEXt"
    ]
    if texts:
        extras.append("text: " + ", ".join(texts))
    extras += [f"{t.decode()} chunk" for t in head.skipped if t not in known]
    colours = "1 colour" if h.k == 1 else f"{h.k} colours"
    return (
        f"{path}: KMC {h.version[0]}.{h.version[1]}, {h.width} x {h.height}, "
        f"{_MODELS[h.channels]}, {colours} ({h.bit_depth}-bit indices), "
        f"{layout.COMPRESSION_NAMES[h.compression]} compression"
        f"{_size_text(size, h.width * h.height)}; "
        f"metadata: {'; '.join(extras) or 'none'}"
    )


def _describe_npz(path: str, fp, size: int | None) -> str:
    from . import npz

    head = npz.read_header(fp)
    k = len(head.palette)
    return (
        f"{path}: .npz (the original k-means layout), {head.width} x {head.height}, "
        f"{_MODELS.get(head.channels, f'{head.channels} channels')}, "
        f"{'1 colour' if k == 1 else f'{k} colours'}{_size_text(size, head.width * head.height)}"
    )


def describe(path: str) -> str:
    """One plain line about a ``.kmc`` or ``.npz`` file, from a bounded read."""
    with _opened_for_info(path) as (fp, size):
        start = fp.peek(8)[:8]
        try:
            if start.startswith(layout.SIGNATURE):
                return _describe_kmc(path, fp, size)
            if start.startswith(b"PK\x03\x04"):
                return _describe_npz(path, fp, size)
        except (SyntaxError, OSError, ValueError) as e:
            raise CliError(UNREADABLE, f"{path}: broken file: {_clean(str(e), path)}") from None
        raise CliError(UNREADABLE, f"{path}: not a .kmc or .npz file")


def cmd_info(args: argparse.Namespace) -> int:
    status = OK
    for path in args.files:
        try:
            print(describe(path), flush=True)
        except CliError as e:
            print(f"kmc: {e}", file=sys.stderr, flush=True)
            status = status or e.status
    return status


# --- npz ---------------------------------------------------------------------


def cmd_npz(args: argparse.Namespace) -> int:
    from . import npz

    ext = Path(args.output).suffix.lower()
    if ext not in (".npz", ".kmc"):
        raise CliError(
            USAGE, f"{args.output}: the output must end in .npz or .kmc, not {ext or 'nothing'!r}"
        )
    _refuse_same(args.input, args.output)
    check_output(args.output, args.force)
    src = io.BytesIO(read_input(args.input))
    out = io.BytesIO()
    try:
        (npz.kmc_to_npz if ext == ".npz" else npz.npz_to_kmc)(src, out)
    except (OSError, ValueError) as e:
        raise CliError(UNREADABLE, f"{args.input}: {_clean(str(e), args.input)}") from None
    write_atomically(args.output, out.getvalue(), args.force)
    return OK


# --- the parser and main -----------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"kmc: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="kmc", description="k-means colour quantization to .kmc files (a Pillow format)."
    )
    p.add_argument("--version", action="version", version=f"kmc (pil_kmc) {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    e = sub.add_parser("encode", help="quantize images to .kmc")
    e.add_argument("inputs", nargs="+", metavar="IN", help="image files, or - for standard input")
    e.add_argument(
        "-k",
        "--clusters",
        type=int,
        default=256,
        help="colours, 1-256 (default 256); with --quality or --psnr, the most",
    )
    target = e.add_mutually_exclusive_group()
    target.add_argument(
        "--quality",
        type=_quality_range,
        metavar="MIN-MAX",
        help="pngquant's 0-100 scale: the fewest colours reaching MAX; below MIN, exit 99 "
        "(N alone means 90%% of N to N)",
    )
    target.add_argument(
        "--psnr", type=_psnr_range, metavar="MIN-MAX", help="as --quality, in dB of PSNR"
    )
    out = e.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", metavar="OUT", help="output file (one input), - for stdout")
    out.add_argument(
        "--ext",
        type=_extension,
        default=".kmc",
        help="replaces each input's extension, e.g. .kmc (default) or --ext=-q.kmc",
    )
    e.add_argument("-j", "--jobs", type=_jobs, help="processes (default: all cores)")
    e.add_argument(
        "--strip",
        action="store_true",
        help="store no EXIF (GPS included; orientation applied), XMP, text or DPI",
    )
    e.add_argument(
        "--first-frame",
        action="store_true",
        help="of an animation, keep the first frame (otherwise refused)",
    )
    e.add_argument(
        "--dither",
        dest="dither",
        action="store_const",
        const=1.0,
        default=0.0,
        help="Floyd-Steinberg dithering (alpha included), as --floyd=1",
    )
    e.add_argument(
        "--floyd",
        dest="dither",
        type=_strength,
        nargs="?",
        const=1.0,
        metavar="F",
        help="dithering of strength F, 0 to 1 (pngquant's --floyd; 1 without F)",
    )
    e.add_argument(
        "--nofs",
        dest="dither",
        action="store_const",
        const=0.0,
        help="no dithering (the default; pngquant's --nofs)",
    )
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
    add_many_options(e)
    e.set_defaults(run=cmd_encode)

    d = sub.add_parser("decode", help="write a .kmc (or .npz) as PNG, JPEG, WebP...")
    d.add_argument("input", metavar="IN")
    d.add_argument("output", metavar="OUT", help="format from the extension; - for PNG on stdout")
    d.add_argument(
        "--background",
        type=_background,
        metavar="COLOUR",
        help="flatten transparency onto this colour (for JPEG, BMP...)",
    )
    d.add_argument("-f", "--force", action="store_true", help="replace an existing output")
    d.set_defaults(run=cmd_decode)

    i = sub.add_parser("info", help="size, colour model, colours, bytes and metadata")
    i.add_argument("files", nargs="+", metavar="FILE", help=".kmc or .npz files")
    i.set_defaults(run=cmd_info)

    n = sub.add_parser("npz", help="convert .kmc <-> the original .npz layout, losslessly")
    n.add_argument("input", metavar="IN")
    n.add_argument("output", metavar="OUT", help="ending in .npz or .kmc")
    n.add_argument("-f", "--force", action="store_true", help="replace an existing output")
    n.set_defaults(run=cmd_npz)
    p.commands = {"encode": e, "decode": d, "info": i, "npz": n}
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """Options and file names in any order, as pngquant takes them (``kmc encode *.png -k 16``).

    As in pngquant: ``--`` ends the options, so that the words after it are
    file names even if they start with a dash; ``--ext`` and ``-o`` take the
    next word whatever it starts with; ``--floyd`` takes a strength only as
    ``--floyd=F``.
    """
    p = parser()
    if argv and argv[0] in p.commands:
        command = p.commands[argv[0]]
        rest = list(argv[1:])
        for i in range(len(rest) - 2, -1, -1):  # before --: they take even that
            option, word = rest[i], rest[i + 1]
            if option == "--ext" and word.startswith("-"):
                rest[i : i + 2] = [f"--ext={word}"]
            elif option in ("-o", "--output") and word.startswith("-") and word != "-":
                rest[i : i + 2] = [f"--output={word}"]
        names: list[str] = []
        if "--" in rest:  # argparse mixes up -- and intermixed names: keep them apart
            names = rest[rest.index("--") + 1 :]
            rest = rest[: rest.index("--")]
            action = command._option_string_actions.get(rest[-1]) if rest else None
            if action is not None and action.nargs != 0 and rest[-1] != "--floyd":
                command.error(f"{rest[-1]} needs a value before --")
        rest = ["--floyd=1" if word == "--floyd" else word for word in rest]
        # The names after -- stand in as words argparse cannot take for options.
        stand_ins = {f"\0{i}": name for i, name in enumerate(names)}
        args = command.parse_intermixed_args(rest + list(stand_ins))
        for key, value in vars(args).items():
            if isinstance(value, list):
                setattr(args, key, [stand_ins.get(v, v) for v in value])
            elif isinstance(value, str) and value in stand_ins:
                setattr(args, key, stand_ins[value])
        return args
    return p.parse_args(argv)  # --help, --version and mistakes


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"kmc: warning: {message}", file=sys.stderr if file is None else file)


def entry() -> NoReturn:
    """The ``kmc`` command: :func:`main`, then exit with its status.

    After a signal, the outputs are done or removed and the workers stopped,
    so it exits at once: joining the process pool's threads at interpreter
    exit could wait forever on a worker that died halfway through sending a
    result (a signal to the whole process group kills the workers too).
    """
    warnings.showwarning = _one_line_warning  # the command's own: one line each
    status = main()
    if _Interrupts.pending is not None:
        for s in _SIGNALS:  # a second Ctrl-C must not print a traceback now
            signal.signal(s, signal.SIG_IGN)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(status)
    sys.exit(status)


def main(argv: list[str] | None = None) -> int:
    import pil_kmc  # noqa: F401  (registers the formats in worker processes too)

    with _handling_signals():
        try:
            args = parse(sys.argv[1:] if argv is None else argv)
            status = args.run(args)
            _check_interrupt()  # a signal held back during the last write
            return status
        except CliError as e:
            print(f"kmc: {e}", file=sys.stderr)
            return e.status
        except Interrupted as e:
            return 128 + e.signum
        except KeyboardInterrupt:
            return 128 + signal.SIGINT
        except BrokenPipeError:  # e.g. `kmc info *.kmc | head -1`
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return FAILED
        except MemoryError:
            print("kmc: out of memory", file=sys.stderr)
            return FAILED
        except Exception as e:  # one line, never a traceback
            print(f"kmc: {type(e).__name__}: {e}", file=sys.stderr)
            return FAILED
