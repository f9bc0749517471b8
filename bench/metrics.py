"""The metric registry. Every metric states its convention, written into every result file.

Per-image metrics map a batch of (pred, target) uint8 RGB images (B, 3, H, W) on the evaluation device
to (B,) scores; the aggregate is the mean of per-image values (never a pooled MSE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

from torch import Tensor

from bench.registry import Registry


class Metric:
    """Base class: name, direction, convention; ``score`` for per-image metrics."""

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    convention: ClassVar[str] = ""
    per_image: ClassVar[bool] = True
    unit: ClassVar[str] = ""

    def available(self) -> tuple[bool, str]:
        """Whether this machine can compute the metric, and if not, why (e.g. missing weights)."""
        return True, ""

    def score(self, pred: Tensor, target: Tensor) -> Tensor:
        raise TypeError(f"{type(self).__name__} is not a per-image metric: it defines no score()")

    def describe(self) -> dict:
        return {"higher_is_better": self.higher_is_better, "convention": self.convention, "per_image": self.per_image, "unit": self.unit}


METRICS: Registry[type[Metric]] = Registry("metric", "colorbench.metrics", base=Metric)

PSNR_CAP = 100.0


@METRICS.register("psnr", "PSNR in dB, RGB, data range 255, no border crop, mean of per-image values")
class PSNR(Metric):
    name = "psnr"
    unit = "dB"
    convention = f"RGB uint8 output vs ground truth; data_range=255; no border crop; mean of per-image PSNR; identical images capped at {PSNR_CAP:g} dB"

    def score(self, pred: Tensor, target: Tensor) -> Tensor:
        from bench.metrics_core import psnr

        return psnr(pred, target, data_range=255.0, cap=PSNR_CAP)


@METRICS.register("ssim", "SSIM, RGB, Gaussian 11x11 sigma 1.5, data range 255, mean of per-image values")
class SSIM(Metric):
    name = "ssim"
    convention = (
        "RGB uint8 output vs ground truth; Gaussian window 11x11 sigma 1.5, K1=0.01 K2=0.03, population covariance, "
        "data_range=255, 5 px border of the SSIM map excluded (as skimage), channel mean, mean of per-image SSIM"
    )

    def score(self, pred: Tensor, target: Tensor) -> Tensor:
        from bench.metrics_core import ssim

        return ssim(pred, target, data_range=255.0)


DEFAULT_METRICS = ("psnr", "ssim")


def build_metrics(names: tuple[str, ...] | list[str]) -> dict[str, Metric]:
    return {n: METRICS.get(n)() for n in names}
