"""The benchmarks' shared input: random crops of scikit-image's colour photos."""

from __future__ import annotations

import numpy as np
from skimage import data


def photo_crops(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(n, size, size, 3) uint8 crops drawn with ``rng`` (which callers may go on drawing from)."""
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    out = []
    for i in range(n):
        im = photos[i % len(photos)]
        y, x = rng.integers(0, im.shape[0] - size), rng.integers(0, im.shape[1] - size)
        out.append(im[y : y + size, x : x + size])
    return np.stack(out)
