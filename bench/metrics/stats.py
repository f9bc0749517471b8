"""Confidence intervals and paired tests for metric values.

Every aggregate carries a 95% percentile-bootstrap interval over images (resampling images with
replacement, a fixed seed, ``resamples`` configurable). Paired comparisons of two methods on the same
images use a paired bootstrap of the mean difference (the verdict) and the Wilcoxon signed-rank test
(scipy) as a second opinion. Written with numpy on per-image values (small: one float per image and
metric), resampling in blocks so memory stays bounded for large sets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

__all__ = ["Bootstrap", "bootstrap_ci", "mean_ci", "rebalanced_auc", "rebalanced_auc_ci", "inception_split_scores", "source_images", "paired_comparison", "PairedResult"]

_BLOCK_ELEMENTS = 4_000_000  # resamples x images drawn at once (32 MB of int64)


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are computed: ``resamples`` (0 disables them), the seed, the level."""

    resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def describe(self, clustered: bool = False) -> dict:
        over = "source images (the tiles of one photo resampled together)" if clustered else "images"
        return {"ci": f"{self.level:.0%} percentile bootstrap over {over}", "resamples": self.resamples, "seed": self.seed}


def resample_indices(n: int, boot: Bootstrap, per_row: int = 1) -> Iterator[np.ndarray]:
    """Blocks of (r, n) image indices drawn with replacement; the same seed gives the same draws."""
    rng = np.random.default_rng(boot.seed)
    block = max(1, _BLOCK_ELEMENTS // max(1, n * per_row))
    done = 0
    while done < boot.resamples:
        r = min(block, boot.resamples - done)
        yield rng.integers(0, n, size=(r, n))
        done += r


def bootstrap_ci(n: int, statistic: Callable[[np.ndarray], np.ndarray], boot: Bootstrap, per_row: int = 1) -> list[float] | None:
    """Percentile interval of ``statistic`` (a function of an (r, n) index block -> (r,) values)."""
    if n == 0 or boot.resamples <= 0:
        return None
    stats = np.concatenate([statistic(idx) for idx in resample_indices(n, boot, per_row)])
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return None
    tail = (1 - boot.level) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return [float(lo), float(hi)]


def source_images(ids: Sequence[str]) -> np.ndarray:
    """Cluster index of each evaluated item: tiles of one photo (ids ``photo#r1c2``, as EvalView names them)
    share one; any other id is its own."""
    _, index = np.unique([str(i).split("#", 1)[0] for i in ids], return_inverse=True)
    return index.reshape(-1)


def _cluster_sums(clusters: np.ndarray | None, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-cluster sums of each column (the columns themselves when ``clusters`` is None or all distinct)."""
    if clusters is None or len(np.unique(clusters)) == len(clusters):
        return columns
    clusters = np.asarray(clusters)
    return tuple(np.bincount(clusters, weights=c) for c in columns)


def mean_ci(values: np.ndarray, boot: Bootstrap, clusters: np.ndarray | None = None) -> list[float] | None:
    """Bootstrap interval of the mean of per-image ``values``.

    With ``clusters`` (one index per value, e.g. :func:`source_images`) whole clusters are resampled: the
    tiles of one photo are not independent draws, and resampling them one by one gives intervals too narrow
    by about sqrt(tiles per photo) when tiles of a photo score alike. The statistic stays the mean over
    tiles (a ratio of the resampled clusters' sums and counts).
    """
    values = np.asarray(values, dtype=np.float64)
    sums, counts = _cluster_sums(clusters, values, np.ones_like(values))
    if sums is values:  # one value per cluster: the plain bootstrap of the mean
        return bootstrap_ci(len(values), lambda idx: values[idx].mean(axis=1), boot)
    return bootstrap_ci(len(sums), lambda idx: sums[idx].sum(axis=1) / counts[idx].sum(axis=1), boot, per_row=2)


def rebalanced_auc(C: np.ndarray, S: np.ndarray) -> float:
    """Class-rebalanced AuC from the set's per-bin pixel counts C_q and sums S_q of per-pixel AuC, (Q,) each.

    With weights w_q = 1 / p_q and p_q = C_q / sum(C), the weighted mean sum_q w_q S_q / sum_q w_q C_q
    equals the mean over occupied bins of S_q / C_q.
    """
    occupied = C > 0
    return float((S[occupied] / C[occupied]).mean())


def rebalanced_auc_ci(a: np.ndarray, b: np.ndarray, boot: Bootstrap, clusters: np.ndarray | None = None) -> list[float] | None:
    """Bootstrap over images with the bin weights w_q = 1 / C_q of the whole set held fixed.

    With fixed w_q the estimate is a ratio of per-image sums, sum_i a_i / sum_i b_i (a_i = sum_q w_q s_iq,
    b_i = sum_q w_q c_iq: the caller's per-image weighted sums, (N,) each). Re-estimating p in each
    resample instead would drop rare bins from resamples and shift the whole interval away from the estimate.
    ``clusters``: resample source images, as :func:`mean_ci`.
    """
    a, b = _cluster_sums(clusters, np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return bootstrap_ci(len(a), lambda idx: a[idx].sum(axis=1) / b[idx].sum(axis=1), boot)


def inception_split_scores(log_probs: np.ndarray, splits: int) -> np.ndarray:
    """Per-split Inception Scores of per-image log p(y|x) (N, K), split in the given order as torchmetrics
    does (``chunk``: ceil(N / splits) images per split): exp(mean_i KL(p_i || mean of the split's p))."""
    n = log_probs.shape[0]
    size = math.ceil(n / splits)
    out = []
    for start in range(0, n, size):
        lp = log_probs[start : start + size]
        p = np.exp(lp)
        log_m = np.log(p.mean(axis=0))
        out.append(float(np.exp((p * (lp - log_m)).sum(axis=1).mean())))
    return np.asarray(out)


@dataclass(frozen=True)
class PairedResult:
    metric: str
    n: int
    mean_a: float
    mean_b: float
    diff: float  # mean of (a - b)
    ci95: list[float] | None  # paired bootstrap interval of the mean difference
    wilcoxon_p: float | None
    significant: bool  # the interval excludes 0
    better: str | None  # "a", "b" or None, using the metric's direction (None also when it has none)


def paired_comparison(metric: str, a: np.ndarray, b: np.ndarray, higher_is_better: bool | None, boot: Bootstrap,
                      clusters: np.ndarray | None = None) -> PairedResult:
    """Paired test of two methods' per-image values on the same images (same order).

    Verdict: the mean difference is significant when its paired-bootstrap interval excludes 0 (resampling
    ``clusters`` -- the source photos of tiles -- whole when given). The
    Wilcoxon signed-rank p-value (two-sided, zero differences dropped; on per-cluster mean differences when
    clustered) is reported beside it; when every
    difference is 0 the methods are identical on these images and p is 1.
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two 1-D arrays of one length; got {a.shape} and {b.shape}")
    d = a - b
    ci = mean_ci(d, boot, clusters)
    sums, counts = _cluster_sums(clusters, d, np.ones_like(d))
    d_units = sums / counts  # Wilcoxon on independent units: per source photo when tiles are clustered
    if not np.any(d != 0):
        p: float | None = 1.0
    elif len(d_units) < 2:
        p = None
    else:
        p = float(stats.wilcoxon(d_units, zero_method="wilcox", alternative="two-sided").pvalue)
    significant = ci is not None and (ci[0] > 0 or ci[1] < 0)
    better = None
    if significant and higher_is_better is not None:
        a_higher = d.mean() > 0
        better = "a" if a_higher == higher_is_better else "b"
    return PairedResult(metric, len(d), float(a.mean()), float(b.mean()), float(d.mean()), ci, p, significant, better)
