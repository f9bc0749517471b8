"""The metric interface and registry. Every metric states its convention, written into every result file.

A metric sees one :class:`Batch` at a time: the uint8 sRGB outputs and ground truths (B, 3, H, W) on the
evaluation device, with derived views (Lab, BT.601 Y, Inception features) computed once per batch and
shared by the metrics that need them.

* Per-image metrics return (B,) values; the dataset score is the mean of per-image values (never a
  pooled MSE), and every per-image value is kept (the CSV beside the result).
* Set-level metrics (IS, FID, rebalanced AuC) accumulate compact per-image features (logits, feature
  vectors, per-bin sums), never images, so memory stays flat; their state is handed out in chunks so an
  interrupted evaluation can resume (see :mod:`bench.evaluate`).

Metrics that need pretrained weights say which file and where it goes; when it is missing they are
reported as unavailable (never 0, never a crash). See README "Metrics" for every convention.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from torch import Tensor

from bench.registry import Registry

PSNR_CAP = 100.0
AB_DATA_RANGE = 255.0  # ab PSNR/SSIM peak: the scale of OpenCV's 8-bit Lab (a + 128, b + 128), unrounded

# What `bench run` scores when --metrics is not given: the NTIRE pair, the weight-based scores (reported as
# unavailable when their weights are absent), the weight-free colour metrics and the lightness check.
DEFAULT_METRICS = (
    "psnr", "ssim", "is", "fid", "lpips", "ciede2000", "auc", "auc_rebalanced", "colorfulness", "colorfulness_gt",
    "psnr_l",
)


@dataclass(frozen=True)
class MetricOptions:
    """Run-wide settings of the metrics.

    ``inception_weights``: torch-fidelity's Inception file (else ``$BENCH_INCEPTION_WEIGHTS``, else the
    torch hub cache). ``seed``: the IS split shuffle. ``inception``: a stand-in feature extractor for tests
    (uint8 (B, 3, H, W) -> (pool features (B, D), logits (B, K))).
    """

    inception_weights: str | None = None
    seed: int = 0
    is_splits: int = 10
    inception: Callable[[Tensor], tuple[Tensor, Tensor]] | None = field(default=None, compare=False)

    def inception_path(self) -> str | None:
        return self.inception_weights or os.environ.get("BENCH_INCEPTION_WEIGHTS") or None


class Batch:
    """Outputs and ground truths of one batch, with derived views computed at most once."""

    def __init__(self, pred: Tensor, target: Tensor):
        if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 3:
            raise ValueError(f"expected pred and target as (B, 3, H, W) of one shape; got {tuple(pred.shape)} and {tuple(target.shape)}")
        self.pred, self.target = pred, target
        self._cache: dict[Any, Any] = {}

    def __len__(self) -> int:
        return self.pred.shape[0]

    def image(self, which: str) -> Tensor:
        return self.pred if which == "pred" else self.target

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def lab(self, which: str) -> Tensor:
        """CIELAB (D65, skimage's constants) of the uint8 sRGB image, float32 (B, 3, H, W).

        float32 is 2x faster than float64 here and moves the Lab-based metrics by < 1e-5 from skimage's
        float64 numbers (measured on photo and random pairs: CIEDE2000 5e-6, ab PSNR 4e-6, AuC 2e-6).
        """
        from bench.color import rgb_to_lab

        return self.cached(("lab", which), lambda: rgb_to_lab(self.image(which)))

    def y(self, which: str) -> Tensor:
        from bench.metrics.functional import rgb_to_y_bt601

        return self.cached(("y", which), lambda: rgb_to_y_bt601(self.image(which)))


class Metric:
    """Base class: name, direction, convention, per-image or set-level, weights needed.

    Per-image metrics define ``score(pred, target) -> (B,)`` (or ``score_batch`` to use the shared views of
    a :class:`Batch`). Set-level metrics subclass :class:`SetMetric`.
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool | None] = True  # None: no better direction (colourfulness)
    convention: ClassVar[str] = ""
    per_image: ClassVar[bool] = True
    unit: ClassVar[str] = ""
    needs_weights: ClassVar[str | None] = None  # which pretrained weights, in words; None: weight-free

    def __init__(self, options: MetricOptions | None = None):
        self.options = options or MetricOptions()

    def available(self) -> tuple[bool, str]:
        """Whether this machine can compute the metric, and if not, why (e.g. missing weights)."""
        return True, ""

    def score(self, pred: Tensor, target: Tensor) -> Tensor:
        raise TypeError(f"{type(self).__name__} is not a per-image metric: it defines no score()")

    def score_batch(self, batch: Batch) -> Tensor:
        return self.score(batch.pred, batch.target)

    def reset(self) -> None:
        """Forget accumulated state (set-level metrics)."""

    def weights_info(self) -> dict[str, Any]:
        """Which weights file the metric ran on, its SHA-256 and whether it is the standard one (weight-free: {})."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {
            "higher_is_better": self.higher_is_better, "convention": self.convention, "per_image": self.per_image,
            "unit": self.unit, "needs_weights": self.needs_weights is not None,
        }


class SetMetric(Metric):
    """A metric of the whole set, accumulated batch by batch from compact per-image features.

    ``update`` adds a batch; ``take_chunk`` hands over (and absorbs) what was added since the last call,
    as tensors the evaluator saves; ``replay`` absorbs a saved chunk again on resume; ``compute`` gives
    the aggregate entry (``mean``, ``n``, ``ci95`` and any extra fields).
    """

    per_image: ClassVar[bool] = False

    def update(self, batch: Batch) -> None:
        raise TypeError(f"{type(self).__name__} defines no update()")

    def take_chunk(self) -> dict[str, Any]:
        raise TypeError(f"{type(self).__name__} defines no take_chunk()")

    def replay(self, chunk: dict[str, Any]) -> None:
        raise TypeError(f"{type(self).__name__} defines no replay()")

    def compute(self, stats: Any, clusters: Any = None) -> dict[str, Any]:
        """``stats``: the Bootstrap settings; ``clusters``: the source-photo index of each image in update
        order (tiles), for intervals over images; None when every image is its own photo."""
        raise TypeError(f"{type(self).__name__} defines no compute()")


METRICS: Registry[type[Metric]] = Registry("metric", "colorbench.metrics", base=Metric)


# --------------------------------------------------------------------------------------------------
# The registry's helpers


def parse_metric_names(text: str | None) -> list[str]:
    """``"psnr,ssim"`` -> names; ``"all"`` -> every registered metric; ``"default"`` -> DEFAULT_METRICS."""
    names: list[str] = []
    for part in (text or "").split(","):
        part = part.strip()
        if part == "all":
            names += METRICS.names()
        elif part == "default":
            names += DEFAULT_METRICS
        elif part:
            names.append(part)
    return list(dict.fromkeys(names))


def build_metrics(names: tuple[str, ...] | list[str], options: MetricOptions | None = None) -> dict[str, Metric]:
    """Instances of the named metrics (available or not: the evaluator reports the unavailable ones)."""
    return {n: METRICS.get(n)(options) for n in names}


def availability(metrics: dict[str, Metric]) -> dict[str, str]:
    """name -> why it cannot run here, for each unavailable metric."""
    out = {}
    for name, metric in metrics.items():
        ok, why = metric.available()
        if not ok:
            out[name] = why
    return out

