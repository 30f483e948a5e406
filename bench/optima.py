"""How much better than Lloyd's local optimum can a k-means get? (issue 18, on demand)

    python3 bench/optima.py --peers FILE                        # the default images, k = 64 256
    python3 bench/optima.py --peers FILE --images astronaut coffee --k 256

Issue 18 asks for a median PSNR 0.05 dB above scikit-learn
``KMeans(n_init=1)``, a plain converged Lloyd from k-means++. This script
measures, on a photograph's exact colour histogram (each distinct colour
one point weighted by its pixels), what the search around Lloyd's optimum
is worth, without any time limit:

- ``saved``: pil_kmc's palette as it saves it;
- ``lloyd``: that palette, then plain Lloyd steps on the exact colours until
  no centroid moves by 1e-6 (at most ``--iterations``);
- ``hartigan``: then Hartigan's moves until none is left: a colour of
  weight w leaves its cluster a (weight n_a) for cluster b when
  ``w n_b / (n_b + w) |x - c_b|^2 < w n_a / (n_a - w) |x - c_a|^2``, which
  lowers the error although c_a is the nearer centroid. Each pass applies
  the best moves that share no cluster (so their gains add up exactly),
  then Lloyd converges again;
- ``varpart``: a different start, Wu's variance-based partition (the
  box of largest squared error is cut at the error-minimising plane
  across one axis, until there are k boxes), then converged Lloyd.

Every palette is rounded to 8 bits and each colour given its nearest entry,
as for scikit-learn in bench/kmeans.py. Each figure is the PSNR minus
scikit-learn's (from ``--peers``, a ``bench/kmeans.py --json`` file), in dB.
Slow by design (minutes per image at k = 256): it answers a question, it is
not a quantizer.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from pil_kmc import quantize  # noqa: E402

BLOCK = 16384
# The two k = 256 worst of bench/kmeans.py's run on 736d3b4, and two others.
DEFAULT_IMAGES = ("astronaut", "by_the_water", "coffee", "chelsea")


def distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Squared distances (M, k) in float64, block by block."""
    out = np.empty((len(points), len(centroids)))
    squares = (centroids * centroids).sum(axis=1)
    for s in range(0, len(points), BLOCK):
        x = points[s : s + BLOCK]
        out[s : s + BLOCK] = (x * x).sum(axis=1)[:, None] - 2 * x @ centroids.T + squares
    return np.maximum(out, 0, out=out)


def means(points, weights, labels, k, fallback):
    mass = np.bincount(labels, weights, k)
    sums = np.stack([np.bincount(labels, weights * points[:, c], k) for c in range(3)], axis=1)
    return np.where(mass[:, None] > 0, sums / np.maximum(mass, 1e-300)[:, None], fallback), mass


def lloyd(points, weights, centroids, iterations):
    for _ in range(iterations):
        labels = distances(points, centroids).argmin(axis=1)
        new, _ = means(points, weights, labels, len(centroids), centroids)
        if np.abs(new - centroids).max() < 1e-6:
            return new
        centroids = new
    return centroids


def hartigan(points, weights, centroids, iterations):
    """Converged Lloyd, then passes of Hartigan's moves (see the module docstring)."""
    k, rows = len(centroids), np.arange(len(points))
    centroids = lloyd(points, weights, centroids, iterations)
    moves = 0
    while True:
        d = distances(points, centroids)
        labels = d.argmin(axis=1)
        centroids, mass = means(points, weights, labels, k, centroids)
        d = distances(points, centroids)
        own = mass[labels]
        with np.errstate(divide="ignore", invalid="ignore"):
            leave = weights * own / (own - weights) * d[rows, labels]
        leave[own <= weights] = 0  # a cluster's only colour: leaving it gains nothing
        join = weights[:, None] * mass / (mass + weights[:, None]) * d
        join[rows, labels] = np.inf
        target = join.argmin(axis=1)
        gain = leave - join[rows, target]
        candidates = np.flatnonzero(gain > 1e-9 * leave)
        if not len(candidates):
            return centroids, moves
        used = np.zeros(k, bool)
        for i in candidates[np.argsort(-gain[candidates], kind="stable")]:
            a, b = labels[i], target[i]
            if not (used[a] or used[b]):
                used[a] = used[b] = True
                labels[i] = b
                moves += 1
        centroids, _ = means(points, weights, labels, k, centroids)
        centroids = lloyd(points, weights, centroids, iterations)


def _box_error(points, weights):
    total = weights.sum()
    s = weights @ points
    return float(weights @ (points * points).sum(axis=1) - s @ s / total)


def _best_cut(points, weights):
    """The two halves of the best plane cut across one axis (lowest summed error)."""
    best = (np.inf, None, None)
    for axis in range(points.shape[1]):
        order = np.argsort(points[:, axis], kind="stable")
        x, w = points[order], weights[order]
        cw, cs = np.cumsum(w), np.cumsum(w[:, None] * x, axis=0)
        cq = np.cumsum(w * (x * x).sum(axis=1))
        at = np.flatnonzero(x[1:, axis] != x[:-1, axis])  # cut after these positions
        if not len(at):
            continue
        wl, sl, ql = cw[at], cs[at], cq[at]
        wr, sr, qr = cw[-1] - wl, cs[-1] - sl, cq[-1] - ql
        error = ql - (sl * sl).sum(axis=1) / wl + qr - (sr * sr).sum(axis=1) / wr
        j = int(error.argmin())
        if error[j] < best[0]:
            best = (error[j], order[: at[j] + 1], order[at[j] + 1 :])
    return best[1], best[2]


def varpart(points, weights, k):
    """Wu's variance-based partition into k boxes: their weighted means."""
    boxes, heap = [], []

    def add(members):
        boxes.append(members)
        if len(members) > 1:
            heapq.heappush(heap, (-_box_error(points[members], weights[members]), len(boxes) - 1))

    add(np.arange(len(points)))
    split = set()
    while len(boxes) - len(split) < k and heap:
        _, i = heapq.heappop(heap)
        left, right = _best_cut(points[boxes[i]], weights[boxes[i]])
        split.add(i)
        add(boxes[i][left])
        add(boxes[i][right])
    kept = [b for i, b in enumerate(boxes) if i not in split]
    return np.array([weights[b] @ points[b] / weights[b].sum() for b in kept])


def rounded_error(points, weights, centroids):
    palette = np.clip(np.rint(centroids), 0, 255)
    return float(weights @ distances(points, palette).min(axis=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", required=True, help="a bench/kmeans.py --json file")
    parser.add_argument("--images", nargs="+", default=list(DEFAULT_IMAGES))
    parser.add_argument("--k", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--iterations", type=int, default=300, help="Lloyd steps at most, per run")
    args = parser.parse_args()
    import corpus

    rows = json.loads(Path(args.peers).read_text())["rows"]
    peers = {(r["image"], r["k"]): r["sklearn"] for r in rows}
    print("| image | k | colours | saved | lloyd | hartigan (moves) | varpart | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name, im in corpus.select(args.images):
        pixels = np.asarray(im.convert("RGB"))
        colours, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
        points, weights = colours.astype(np.float64), counts.astype(np.float64)
        samples = 3 * pixels.shape[0] * pixels.shape[1]
        for k in args.k:
            start = time.perf_counter()
            sk = peers[(name, k)]
            saved = quantize.quantize(pixels, k).palette.astype(np.float64)
            converged = lloyd(points, weights, saved, args.iterations)
            moved, moves = hartigan(points, weights, saved, args.iterations)
            wu = lloyd(points, weights, varpart(points, weights, k), args.iterations)
            db = [
                10 * np.log10(255**2 * samples / rounded_error(points, weights, c)) - sk
                for c in (saved, converged, moved, wu)
            ]
            seconds = time.perf_counter() - start
            print(
                f"| {name} | {k} | {len(points)} | {db[0]:+.3f} | {db[1]:+.3f} | "
                f"{db[2]:+.3f} ({moves}) | {db[3]:+.3f} | {seconds:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
