"""The squared distance the palette lookup minimises, in plain numpy integers."""

from __future__ import annotations

import numpy as np


def seen(colours: np.ndarray) -> np.ndarray:
    """With alpha (2 or 4 channels), each colour channel times alpha and alpha times 255."""
    c = colours.astype(np.int64)
    if c.shape[1] in (2, 4):
        c = np.hstack([c[:, :-1] * c[:, -1:], 255 * c[:, -1:]])
    return c


def squared_distances(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(n, k) squared distances, colours with alpha compared as seen (premultiplied)."""
    d = seen(colours)[:, None, :] - seen(palette)[None, :, :]
    return (d * d).sum(axis=2)
