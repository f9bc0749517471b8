"""Metrics: the interface and registry (:mod:`.base`), the computations on tensors (:mod:`.functional`),
weight-free metrics (:mod:`.pixel`), metrics on pretrained networks (:mod:`.learned`: IS, FID, LPIPS) and
statistics (:mod:`.stats`: bootstrap intervals, paired tests). Importing the package registers every metric.

A plugin metric subclasses :class:`Metric` (or :class:`SetMetric`) and registers through the
``colorbench.metrics`` entry-point group.
"""

from bench.metrics import learned, pixel  # noqa: F401  (they register their metrics on import)
from bench.metrics.base import (
    AB_DATA_RANGE, DEFAULT_METRICS, METRICS, PSNR_CAP, Batch, Metric, MetricOptions, SetMetric, availability,
    build_metrics, parse_metric_names,
)

__all__ = [
    "AB_DATA_RANGE", "DEFAULT_METRICS", "METRICS", "PSNR_CAP", "Batch", "Metric", "MetricOptions", "SetMetric",
    "availability", "build_metrics", "parse_metric_names",
]
