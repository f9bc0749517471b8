"""Quantisation of the ab plane as batched torch code: k-means palettes, and the in-gamut grid bins of
Zhang et al. 2016 with their nearest-bin and soft encodings."""

from __future__ import annotations

import functools
import hashlib
import math
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from bench.color import AB_RANGE, rgb_to_lab
from bench.store import atomic_path


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
        # every point already a centre (fewer distinct colours than k): duplicate centres, drawn uniformly
        probs = (d2 / d2.sum() if d2.sum() > 0 else torch.ones_like(d2)).to(generator.device if generator else "cpu")
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


# --------------------------------------------------------------------------------------------------
# Gamut bins (Zhang et al. 2016): a grid of ``grid`` ab units restricted to the colours sRGB can show

AB_GRID: float = 10.0
#: How the in-gamut bins are chosen (see :func:`compute_gamut_tables`): Q = 322 and 261 on the grid of 10.
GAMUT_RULES = ("soft5", "nearest")
_GAMUT_ALGO_VERSION = "1"  # bump when the computation changes, so stale cache files are not reused
# The 8 neighbours of a grid point, in grid units.
_NEIGHBOURS = torch.tensor([[-1, -1], [-1, 0], [-1, 1], [0, -1], [0, 1], [1, -1], [1, 0], [1, 1]])


class BinTableError(ValueError):
    """A bin table file that cannot be used; the message names the file and what is wrong."""


def cache_root() -> Path:
    """Where derived data that is slow to compute is kept: ``$BENCH_CACHE`` or ``~/.cache/colorbench``."""
    return Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "colorbench")).expanduser()


def srgb_ab(reds_per_chunk: int = 16) -> Iterator[Tensor]:
    """The ab of every one of the 256**3 sRGB colours, as float32 (N, 2) chunks (``bench.color.rgb_to_lab``).

    float32 because that is the precision the harness converts training and evaluation images in.
    """
    v = torch.arange(256, dtype=torch.uint8)
    for r in range(0, 256, reds_per_chunk):
        reds = v[r : r + reds_per_chunk]
        rgb = torch.stack(torch.meshgrid(reds, v, v, indexing="ij")).reshape(3, len(reds) * 256, 256)
        yield rgb_to_lab(rgb)[1:].reshape(2, -1).T


def compute_gamut_tables(grid: float = AB_GRID) -> dict[str, Tensor]:
    """The in-gamut bin table of every rule in :data:`GAMUT_RULES`, from one pass over all sRGB colours.

    Each table holds the ab grid points (multiples of ``grid``) that the sRGB gamut uses, as (Q, 2)
    float32 sorted by (a, b). ``"nearest"``: grid points that are the nearest grid point of at least one
    sRGB colour (Q = 261 on the grid of 10). ``"soft5"``: grid points among the 5 nearest grid points of
    at least one sRGB colour, i.e. the support of Zhang's 5-nearest-neighbour soft encoding over the
    whole gamut (Q = 322): with this table, soft-encoding any sRGB colour gives the same 5 bins as
    against the unbounded grid. Zhang's published table has 313 bins; neither rule reproduces it.

    Cost: one pass over all 16.7M colours (about 8 s of CPU on 2 cores); :func:`gamut_bins` caches it.
    Ties between equally distant 5th neighbours (a set of measure zero) are broken arbitrarily.
    """
    n = int(math.ceil(AB_RANGE / grid)) + 2  # grid index offset: every sRGB ab lies well inside
    side = 2 * n + 1
    nb = _NEIGHBOURS
    nb_sq = nb.square().sum(1).float()
    nearest_hit = torch.zeros(side * side, dtype=torch.bool)
    # neighbour_hit[cell, j]: neighbour j of grid point `cell` is among the 5 nearest of some colour
    neighbour_hit = torch.zeros(side * side, len(nb), dtype=torch.bool)
    for ab in srgb_ab():
        x = ab / grid
        cell = torch.round(x)
        lin = (cell[:, 0].long() + n) * side + cell[:, 1].long() + n
        nearest_hit[lin] = True
        # The nearest grid point is the rounded one; the other 4 of the 5 nearest are always among its
        # 8 neighbours (any other grid point is >= 1.5 cells away, the 5th nearest of these 9 is at
        # most sqrt(2.5) ~ 1.58, with equality only at ties). Ranking the neighbours by
        # |x - c - o|^2 - |x - c|^2 = |o|^2 - 2 (x - c).o is one small matmul per chunk.
        rank = nb_sq - 2.0 * (x - cell) @ nb.T.float()
        picked = rank.topk(4, dim=1, largest=False, sorted=False).indices
        neighbour_hit[lin.unsqueeze(1), picked] = True
    soft_hit = nearest_hit.clone()
    cells, j = neighbour_hit.nonzero(as_tuple=True)
    soft_hit[cells + nb[j, 0] * side + nb[j, 1]] = True

    def table(hit: Tensor) -> Tensor:
        idx = hit.nonzero().squeeze(1)
        return torch.stack([idx // side - n, idx % side - n], 1).float() * grid  # row-major: sorted by (a, b)

    return {"nearest": table(nearest_hit), "soft5": table(soft_hit)}


def compute_gamut_bins(rule: str = "soft5", grid: float = AB_GRID) -> Tensor:
    """The bin table of one rule (see :func:`compute_gamut_tables`), computed now, without the cache."""
    if rule not in GAMUT_RULES:
        raise ValueError(f"unknown gamut rule {rule!r}; choices: {', '.join(GAMUT_RULES)}")
    return compute_gamut_tables(grid)[rule]


def _cache_file(rule: str, grid: float) -> Path:
    color_src = (Path(__file__).parent / "color.py").read_bytes()  # a change in the conversion invalidates
    key = hashlib.sha256(color_src + f"|{rule}|{grid}|{_GAMUT_ALGO_VERSION}".encode()).hexdigest()[:16]
    return cache_root() / "gamut" / f"ab-bins-{rule}-grid{grid:g}-{key}.npy"


@functools.lru_cache(maxsize=8)
def _gamut_bins_cached(rule: str, grid: float, root: str) -> Tensor:
    path = _cache_file(rule, grid)
    if path.exists():
        try:
            return load_bin_table(path)
        except BinTableError:
            pass  # a damaged cache file is recomputed and replaced
    tables = compute_gamut_tables(grid)
    for name, bins in tables.items():  # one pass gives every rule: keep them all
        with atomic_path(_cache_file(name, grid)) as tmp, open(tmp, "wb") as fh:
            np.save(fh, bins.numpy())
    return tables[rule]


def gamut_bins(rule: str = "soft5", grid: float = AB_GRID) -> Tensor:
    """:func:`compute_gamut_tables`, computed once per machine and cached under :func:`cache_root` ``/gamut``."""
    if rule not in GAMUT_RULES:
        raise ValueError(f"unknown gamut rule {rule!r}; choices: {', '.join(GAMUT_RULES)}")
    return _gamut_bins_cached(rule, float(grid), str(cache_root())).clone()


def grid_bins(bin_size: float = 12.0, lo: float = -110.0, hi: float = 118.0) -> Tensor:
    """The centres of a plain square grid of ab bins, (Q, 2) sorted by (a, b): cells of ``bin_size`` tiling
    [lo, hi) on both a and b, Q = n^2 with n = (hi - lo) / bin_size a whole number. Cells of 12 over
    [-110, 118] give n = 19, Q = 361. Unlike :func:`gamut_bins` nothing is dropped: cells the sRGB gamut
    never reaches stay (they are simply never a target)."""
    n = (hi - lo) / bin_size
    if not bin_size > 0 or n < 1 or abs(n - round(n)) > 1e-9:
        raise ValueError(f"the grid [{lo:g}, {hi:g}] is not a whole number of cells of {bin_size:g} "
                         f"((hi - lo) / bin_size = {n:g}); choose bin_size and the range so that it is")
    centres = lo + bin_size * (torch.arange(round(n), dtype=torch.float64) + 0.5)
    a, b = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([a.reshape(-1), b.reshape(-1)], 1).float()


def load_bin_table(path: str | os.PathLike) -> Tensor:
    """A bin table from a ``.npy`` file of shape (Q, 2) (ab centres, e.g. Zhang's ``pts_in_hull.npy``)."""
    path = Path(path).expanduser()
    what = "expected a .npy array of shape (Q, 2) holding ab bin centres"
    if not path.is_file():
        raise BinTableError(f"{path}: no such bin table file ({what})")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise BinTableError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc}); {what}") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 2:
        raise BinTableError(f"{path}: shape {getattr(arr, 'shape', None)}; {what} with Q >= 2")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise BinTableError(f"{path}: dtype {arr.dtype}; {what} (numbers)")
    if not np.isfinite(arr).all():
        raise BinTableError(f"{path}: contains NaN or inf; {what}")
    if np.abs(arr).max() > 128:
        raise BinTableError(f"{path}: values up to {np.abs(arr).max():g}, outside the ab range [-128, 128]; {what}")
    if len(np.unique(arr, axis=0)) != len(arr):
        raise BinTableError(f"{path}: has repeated bin centres; {what} with distinct rows")
    return torch.from_numpy(arr.astype(np.float32))


# --------------------------------------------------------------------------------------------------
# Encoding ab against a bin table (flat layout: ab (N, 2), bins (Q, 2))


def nearest_bin(ab: Tensor, bins: Tensor, chunk: int = 1 << 18) -> Tensor:
    """Index of the nearest bin of each ab point: (N, 2) x (Q, 2) -> (N,) long, in chunks of bounded memory."""
    bins = bins.to(ab.device, torch.float32)
    out = torch.empty(len(ab), dtype=torch.long, device=ab.device)
    for start in range(0, len(ab), chunk):
        out[start : start + chunk] = torch.cdist(ab[start : start + chunk].float(), bins).argmin(1)
    return out


def soft_encode(ab: Tensor, bins: Tensor, k: int = 5, sigma: float = 5.0) -> tuple[Tensor, Tensor]:
    """Zhang's soft encoding: the ``k`` nearest bins of each point, weighted by a Gaussian of the distance.

    Returns (indices (N, k) long, weights (N, k) summing to 1), nearest bin first.
    """
    d = torch.cdist(ab.float(), bins.to(ab.device, torch.float32))
    dist, idx = d.topk(k, dim=1, largest=False, sorted=True)
    # softmax(-d^2 / 2 sigma^2) = exp(-d^2 / 2 sigma^2) / sum, computed stably
    return idx, torch.softmax(-dist.square() / (2.0 * sigma * sigma), dim=1)
