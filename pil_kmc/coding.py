"""Coding policy: palette order and index stream method, chosen from a table.

After quantization an image is a palette and an index plane. How that plane
is stored is a choice among *candidates*, each a compression method with
its settings, and among palette orders; the smallest stream wins. Which
candidates are tried is this module's table, :data:`POLICY`, one row per
situation, so the whole policy reads in one place:

- by default, the ``strips`` coder, and bzip2 of the packed rows, which now
  and then wins on noisy graphics; above :data:`LARGE` pixels only
  ``strips``, which decodes on every core;
- with ``optimize=True``, both context coders and bzip2, each with a second
  palette order; above :data:`LARGE` only the two context coders, in one
  order. (xz, even in its extreme setting, costs more time than every other
  candidate together and wins on almost no image.)
- with ``compression=NAME``, that method alone.

From 17 colours on, palettes are ordered by co-occurrence (entries seen side
by side become neighbours), which helps every method; with fewer colours
the brightness order that quantization gives is kept. An image whose own
palette must be kept index for index is never reordered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import codec, context, layout, parallel

if TYPE_CHECKING:
    from .quantize import Quantized

#: Pixels above which an image is coded for speed (see POLICY).
LARGE = 4_000_000
#: Palettes of more entries than this are ordered by co-occurrence.
REORDER_FROM = 17


@dataclass(frozen=True)
class Candidate:
    """One way to code an index plane: a compression method and its settings."""

    method: int
    #: Bit depth of the packed rows (methods 0 to 3); 0 is the smallest that holds k.
    depth: int = 0
    #: xz only: slower and smaller.
    extreme: bool = False


@dataclass(frozen=True)
class Plan:
    """The candidates of one situation, and whether to try both palette orders."""

    candidates: tuple[Candidate, ...]
    both_orders: bool = False


_STRIPS, _CONTEXT = Candidate(layout.STRIPS), Candidate(layout.CONTEXT)
POLICY = {
    "default": Plan((_STRIPS, Candidate(layout.BZIP2))),
    "default, large": Plan((_STRIPS,)),
    "optimize": Plan((_STRIPS, _CONTEXT, Candidate(layout.BZIP2)), both_orders=True),
    "optimize, large": Plan((_STRIPS, _CONTEXT)),
}


@dataclass(frozen=True)
class Coded:
    """An image ready for the container: palette, index plane and its stream."""

    palette: np.ndarray
    indices: np.ndarray
    method: int
    bit_depth: int
    stream: bytes

    @property
    def k(self) -> int:
        return len(self.palette)


def plan(pixels: int, *, optimize: bool = False, compression: int | None = None) -> Plan:
    """The candidates for an image of ``pixels`` pixels and these save options."""
    if compression is not None:
        return Plan((Candidate(compression),))
    situation = "optimize" if optimize else "default"
    return POLICY[f"{situation}, large" if pixels > LARGE else situation]


def code(
    result: Quantized,
    *,
    optimize: bool = False,
    compression: int | None = None,
    keep_order: bool = False,
) -> Coded:
    """The smallest coding of ``result`` that the options allow.

    ``keep_order`` keeps the palette order as it is (an image whose indices
    mean something to its user).
    """
    chosen = plan(result.indices.size, optimize=optimize, compression=compression)
    orders = [result]
    if not keep_order and compression is None and result.k >= REORDER_FROM:
        reordered = reorder(result, cooccurrence_order(result))
        orders = [result, reordered] if chosen.both_orders else [reordered]
    elif not keep_order and chosen.both_orders and result.k > 2:
        orders.append(reorder(result, cooccurrence_order(result)))
    best: Coded | None = None
    for candidate_result in orders:
        method, depth, stream = smallest(
            candidate_result.indices, candidate_result.k, chosen.candidates
        )
        if best is None or len(stream) < len(best.stream):
            best = Coded(candidate_result.palette, candidate_result.indices, method, depth, stream)
    assert best is not None
    return best


def smallest(
    indices: np.ndarray, k: int, candidates: tuple[Candidate, ...]
) -> tuple[int, int, bytes]:
    """Code ``indices`` by every candidate; (method, bit depth, stream) of the smallest.

    The candidates run in parallel threads (every coder releases the GIL).
    Ties go to the earlier candidate, so the choice is deterministic.
    """
    packed: dict[int, bytes] = {}
    jobs = []
    for c in candidates:
        depth = c.depth or layout.bit_depth_for(k)
        if c.method not in layout.PLANE_METHODS and depth not in packed:
            packed[depth] = codec.pack_rows(indices, depth)
        jobs.append((c, depth))

    def run(c: Candidate, depth: int) -> bytes:
        if c.method == layout.CONTEXT:
            return context.encode(indices, k)
        if c.method == layout.STRIPS:
            return context.encode_strips(indices, k)
        return codec.compress(packed[depth], c.method, extreme=c.extreme)

    if len(jobs) == 1:  # the coder may use every core itself
        streams = [run(*jobs[0])]
    else:
        streams = parallel.in_threads([lambda job=job: run(*job) for job in jobs])
    best = min(range(len(jobs)), key=lambda i: (len(streams[i]), i))
    return jobs[best][0].method, jobs[best][1], streams[best]


def cooccurrence_order(result: Quantized) -> np.ndarray:
    """A palette order that puts entries seen side by side next to each other.

    Counts how often each pair of entries touch (horizontally or
    vertically) and grows a chain from the most frequent entry, each step
    appending, at either end, the unused entry that touches that end most.
    The policy uses it for palettes of :data:`REORDER_FROM` entries or more.
    """
    k = result.k
    touch, counts = _touch_counts(result.indices, k)
    np.fill_diagonal(touch, -1)
    start = int(np.argmax(counts))
    touch[:, start] = -2  # an entry in the chain is never appended again
    chain = [start]
    for _ in range(k - 1):
        right, left = touch[chain[-1]], touch[chain[0]]
        at_right, at_left = int(right.argmax()), int(left.argmax())
        if right[at_right] >= left[at_left]:
            entry = at_right
            chain.append(entry)
        else:
            entry = at_left
            chain.insert(0, entry)
        touch[:, entry] = -2
    return np.array(chain)


def reorder(result: Quantized, order: np.ndarray) -> Quantized:
    """The same image with palette entries in ``order`` (a permutation of range(k))."""
    from .quantize import Quantized

    rank = np.zeros(result.k, dtype=np.uint8)
    rank[order] = np.arange(len(order), dtype=np.uint8)
    return Quantized(result.palette[order], rank[result.indices])


# Rows per block of the touch counts: the pair codes of a block are wide
# integers, so blocks keep them small whatever the image's size.
_TOUCH_BLOCK_PIXELS = 1 << 20


def _touch_counts(indices: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """How often entries i and j touch (symmetric k x k), and how often each occurs."""
    height, width = indices.shape
    rows = max(1, _TOUCH_BLOCK_PIXELS // max(1, width))
    touch = np.zeros(k * k, dtype=np.int64)
    counts = np.zeros(k, dtype=np.int64)
    for top in range(0, height, rows):
        # The block and the row below it, so that vertical pairs across blocks count once.
        block = indices[top : top + rows + 1].astype(np.intp)
        inner = block[: rows]
        counts += np.bincount(inner.ravel(), minlength=k)
        touch += np.bincount((inner[:, 1:] * k + inner[:, :-1]).ravel(), minlength=k * k)
        if len(block) > 1:
            touch += np.bincount((block[1:] * k + block[:-1]).ravel(), minlength=k * k)
    touch = touch.reshape(k, k)
    return touch + touch.T, counts
