"""Coding policy: palette order and index stream method, chosen from a table.

After quantization an image is a palette and an index plane. How that plane
is stored is a choice among *candidates*, each a compression method with
its settings, and among palette orders; the smallest stream wins. Which
candidates are tried is this module's table, :data:`POLICY`, one row per
situation, so the whole policy reads in one place:

- by default, the ``strips`` coder, and bzip2 of the packed rows, which
  now and then wins on noisy graphics; above :data:`LARGE` pixels only
  ``tables``, which decodes about twice as fast as ``strips`` for a few
  percent more bytes: at that size the time to open an image is what
  users notice. Below it ``tables`` is rarely the smaller, and trying it
  costs save time (docs/bench-results.md);
- with ``optimize=True``, the three context coders (``strips`` also in
  one strip, smaller but decoded on one core) and bzip2, each with a
  second palette order; above :data:`LARGE` only the context coders, in
  one order;
- xz, which costs more time than every other candidate together, only
  where bzip2 has beaten the context coders (:attr:`Plan.if_bzip2_wins`):
  block sorting wins where the plane repeats itself at long distances
  (text, user interfaces), and LZMA's matches then usually do better still.
  On photographs bzip2 never wins, and xz is never tried.
- with ``compression=NAME``, that method alone.

The palette order is policy too, and only this module has it
(:func:`palette_order`, :func:`orders`): quantization hands over its
palette in no particular order. Palettes are stored by brightness (alpha,
then luma); from :data:`REORDER_FROM` colours on, by co-occurrence
(entries seen side by side become neighbours, ties in brightness order),
which helps every method, unless ``compression=NAME`` forces one method.
An image's own palette (a ``P`` image stored
index for index, or an ``L`` image's gray levels) is reordered only with
``optimize=True``; a given palette, which other files share, never.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import codec, context, layout, parallel

if TYPE_CHECKING:
    from .quantize import Quantized

#: A palette (k, C) and an index plane (h, w), in one order of the palette.
Indexed = tuple[np.ndarray, np.ndarray]

#: Pixels above which an image is coded for speed (see POLICY).
LARGE = 4_000_000
#: Palettes of this many entries or more are stored in co-occurrence order.
REORDER_FROM = 17


@dataclass(frozen=True)
class Candidate:
    """One way to code an index plane: a compression method and its settings."""

    method: int
    #: Bit depth of the packed rows (methods 0 to 3); 0 is the smallest that holds k.
    depth: int = 0
    #: xz only: slower and smaller.
    extreme: bool = False
    #: strips only: the whole plane in one strip, a little smaller, decoded on one core.
    one_strip: bool = False


@dataclass(frozen=True)
class Plan:
    """The candidates of one situation and the palette orders to try (see :func:`orders`)."""

    candidates: tuple[Candidate, ...]
    #: Try the base order and the co-occurrence order, and keep the smaller.
    both_orders: bool = False
    #: From REORDER_FROM entries on, the co-occurrence order replaces the base order.
    reorder_many: bool = True
    #: Tried too, only where bzip2 was the smallest of the candidates.
    if_bzip2_wins: tuple[Candidate, ...] = ()


_STRIPS, _CONTEXT = Candidate(layout.STRIPS), Candidate(layout.CONTEXT)
_ONE_STRIP = Candidate(layout.STRIPS, one_strip=True)
_BZIP2, _XZ = Candidate(layout.BZIP2), Candidate(layout.XZ)
_TABLES = Candidate(layout.TABLES)
POLICY = {
    "default": Plan((_STRIPS, _BZIP2), if_bzip2_wins=(_XZ,)),
    "default, large": Plan((_TABLES,)),
    # Not xz's extreme setting: a few percent smaller, for five times the time.
    "optimize": Plan(
        (_STRIPS, _ONE_STRIP, _TABLES, _CONTEXT, _BZIP2), both_orders=True, if_bzip2_wins=(_XZ,)
    ),
    "optimize, large": Plan((_STRIPS, _ONE_STRIP, _TABLES, _CONTEXT)),
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
        return Plan((Candidate(compression),), reorder_many=False)
    situation = "optimize" if optimize else "default"
    return POLICY[f"{situation}, large" if pixels > LARGE else situation]


def code(
    result: Quantized,
    *,
    optimize: bool = False,
    compression: int | None = None,
    given: bool = False,
) -> Coded:
    """The smallest coding of ``result`` that the options allow.

    ``given`` marks a palette given by the user (``palette=``), which is
    stored in its order; see :func:`orders` for every other palette.
    """
    chosen = plan(result.indices.size, optimize=optimize, compression=compression)
    best: Coded | None = None
    for palette, indices in orders(result, chosen, optimize=optimize, given=given):
        method, depth, stream = smallest(indices, len(palette), chosen.candidates)
        if method == layout.BZIP2 and chosen.if_bzip2_wins:
            more = smallest(indices, len(palette), chosen.if_bzip2_wins)
            if len(more[2]) < len(stream):
                method, depth, stream = more
        if best is None or len(stream) < len(best.stream):
            best = Coded(palette, indices, method, depth, stream)
    assert best is not None
    return best


def orders(
    result: Quantized, chosen: Plan, *, optimize: bool = False, given: bool = False
) -> list[Indexed]:
    """The palette orders in which to code ``result`` under the plan ``chosen``.

    - a given palette, and an image's own palette (``result.user_order``)
      without ``optimize``: as it is;
    - otherwise the base order is brightness (:func:`palette_order`), or
      the image's own with ``optimize``; from :data:`REORDER_FROM` entries
      on, the co-occurrence order replaces it, unless one method is forced
      (which keeps the base order);
    - a plan that tries both orders gets the base and the co-occurrence
      order (for more than two entries).
    """
    palette, indices, k = result.palette, result.indices, len(result.palette)
    if given or (result.user_order and not optimize):
        return [(palette, indices)]
    base_order = None if result.user_order else palette_order(palette)
    replace_base = chosen.reorder_many and k >= REORDER_FROM
    if replace_base and not chosen.both_orders:
        return [reorder(palette, indices, cooccurrence_order(indices, k, ties=base_order))]
    base = (palette, indices) if base_order is None else reorder(palette, indices, base_order)
    if not (replace_base or (chosen.both_orders and k > 2)):
        return [base]
    return [base, reorder(palette, indices, cooccurrence_order(indices, k, ties=base_order))]


def ordered(result: Quantized, *, given: bool = False) -> Indexed:
    """Palette and indices of ``result`` in the order a default save stores them.

    The first of :func:`orders` under the default plan, for other stores of
    a palette and index plane, such as the ``.npz`` export.
    """
    return orders(result, plan(result.indices.size), given=given)[0]


def palette_order(palette: np.ndarray) -> np.ndarray:
    """The order a save stores ``palette`` in when no index plane is known.

    A palette made for many images (:func:`pil_kmc.palettes.shared_palette`)
    has no index plane to count co-occurrences in, so this is
    the base order of :func:`orders`: by alpha, then luma, then channels
    (a permutation of range(k); equal entries keep their order). Ordering by
    brightness makes neighbouring pixels' indices numerically close, which
    helps the index stream compress.
    """
    p = palette.astype(np.int64)
    channels = palette.shape[1]
    luma = p[:, 0] if channels <= 2 else 299 * p[:, 0] + 587 * p[:, 1] + 114 * p[:, 2]
    alpha = p[:, -1] if channels in (2, 4) else np.zeros(len(p), np.int64)
    return np.lexsort([p[:, c] for c in reversed(range(channels))] + [luma, alpha])


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
            return context.encode_strips(indices, k, rows=indices.shape[0] if c.one_strip else None)
        if c.method == layout.TABLES:
            return context.encode_tables(indices, k)
        return codec.compress(packed[depth], c.method, extreme=c.extreme)

    if len(jobs) == 1:  # the coder may use every core itself
        streams = [run(*jobs[0])]
    else:
        streams = parallel.in_threads([lambda job=job: run(*job) for job in jobs])
    best = min(range(len(jobs)), key=lambda i: (len(streams[i]), i))
    return jobs[best][0].method, jobs[best][1], streams[best]


def cooccurrence_order(indices: np.ndarray, k: int, ties: np.ndarray | None = None) -> np.ndarray:
    """A palette order that puts entries seen side by side next to each other.

    Counts how often each pair of entries touch (horizontally or
    vertically) and grows a chain from the most frequent entry, each step
    appending, at either end, the unused entry that touches that end most.
    Ties go to the entry earlier in ``ties`` (a permutation of range(k);
    by default index order). The policy uses it for palettes of
    :data:`REORDER_FROM` entries or more.
    """
    touch, counts = _touch_counts(indices, k)
    if ties is not None:  # count in the order ``ties`` gives, and map back at the end
        touch, counts = touch[np.ix_(ties, ties)], counts[ties]
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
    order = np.array(chain)
    return order if ties is None else np.asarray(ties)[order]


def reorder(palette: np.ndarray, indices: np.ndarray, order: np.ndarray) -> Indexed:
    """The same image with palette entries in ``order`` (a permutation of range(k)).

    ``palette`` and ``indices`` themselves if the order is the one they have.
    """
    k = len(palette)
    if np.array_equal(order, np.arange(k)):
        return palette, indices
    rank = np.zeros(k, dtype=np.uint8)
    rank[order] = np.arange(k, dtype=np.uint8)
    return palette[order], rank[indices]


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
        inner = block[:rows]
        counts += np.bincount(inner.ravel(), minlength=k)
        touch += np.bincount((inner[:, 1:] * k + inner[:, :-1]).ravel(), minlength=k * k)
        if len(block) > 1:
            touch += np.bincount((block[1:] * k + block[:-1]).ravel(), minlength=k * k)
    touch = touch.reshape(k, k)
    return touch + touch.T, counts
