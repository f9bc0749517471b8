"""Quantisation of the ab plane: k-means palettes (and, later, gamut bins) as batched torch code."""

from __future__ import annotations

import torch
from torch import Tensor


def kmeans(x: Tensor, k: int, iters: int = 30, generator: torch.Generator | None = None) -> Tensor:
    """Lloyd's k-means with k-means++ seeding on points ``x`` (N, D); returns the (k, D) centres.

    Written here rather than taken from scikit-learn to keep it on the training device and avoid a
    dependency for some twenty lines; every step is a batched distance or scatter, never a per-point loop.
    An empty cluster keeps its previous centre.
    """
    if x.ndim != 2 or x.shape[0] < k:
        raise ValueError(f"kmeans needs at least k={k} points of shape (N, D), got {tuple(x.shape)}")
    x = x.float()
    n = x.shape[0]
    first = torch.randint(n, (1,), generator=generator, device=generator.device if generator else "cpu")
    centres = x[first.to(x.device)]
    d2 = torch.cdist(x, centres).squeeze(1).square()
    for _ in range(1, k):  # k-means++: next centre drawn in proportion to squared distance
        probs = (d2 / d2.sum().clamp_min(1e-12)).to(generator.device if generator else "cpu")
        nxt = torch.multinomial(probs, 1, generator=generator).to(x.device)
        centres = torch.cat([centres, x[nxt]])
        d2 = torch.minimum(d2, (x - x[nxt]).square().sum(1))
    for _ in range(iters):
        assign = torch.cdist(x, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        new = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
        if torch.equal(new, centres):
            break
        centres = new
    return centres


def nearest(points: Tensor, centres: Tensor) -> Tensor:
    """Index of the nearest centre for each point along dim 1: (B, D, H, W) x (K, D) -> (B, H, W)."""
    b, d, h, w = points.shape
    flat = points.permute(0, 2, 3, 1).reshape(-1, d).float()
    return torch.cdist(flat, centres.float()).argmin(1).view(b, h, w)
