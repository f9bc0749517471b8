"""Colourise a split and score it: L -> predict ab -> Lab -> sRGB uint8 (what a user saves) -> metrics.

Per-image rows go to a CSV beside the result JSON; the JSON holds aggregates, conventions, identity,
environment and timings. A few outputs are kept as PNGs for the comparison grids of the reports.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from bench.color import lab_to_rgb_uint8, rgb_to_lab
from bench.datasets.views import EvalView
from bench.methods import Method
from bench.metrics import Metric


@dataclass
class Evaluation:
    rows: pd.DataFrame  # one row per evaluated image: id, then one column per per-image metric
    aggregates: dict[str, dict[str, Any]]
    seconds: float
    samples: list[tuple[str, Tensor, Tensor]] = field(default_factory=list)  # (id, prediction, ground truth)


@torch.no_grad()
def colorize(method: Method, rgb: Tensor) -> Tensor:
    """(B, 3, H, W) uint8 RGB (or its gray version) on the method's device -> colourised uint8 RGB."""
    lab = rgb_to_lab(rgb)
    L = lab[:, :1]
    ab = method.predict_ab(L).to(L.dtype)
    if ab.shape != (L.shape[0], 2, *L.shape[2:]):
        raise RuntimeError(f"predict_ab returned shape {tuple(ab.shape)}, expected {(L.shape[0], 2, *L.shape[2:])}")
    return lab_to_rgb_uint8(torch.cat([L, ab], 1))


def evaluate(
    method: Method,
    view: EvalView,
    metrics: dict[str, Metric],
    *,
    device: torch.device,
    batch_size: int = 16,
    n_samples: int = 8,
    progress: bool | None = None,
) -> Evaluation:
    method.eval()
    loader = DataLoader(view, batch_size=batch_size if view.fixed_size else 1, shuffle=False, num_workers=0)
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(view), desc="evaluate", unit="img", dynamic_ncols=True, mininterval=0.5)
    ids: list[str] = []
    scores: dict[str, list[Tensor]] = {m: [] for m in metrics}
    samples: list[tuple[str, Tensor, Tensor]] = []
    t0 = time.perf_counter()
    for rgb, idx in loader:
        rgb = rgb.to(device, non_blocking=True)
        pred = colorize(method, rgb)
        for name, metric in metrics.items():
            scores[name].append(metric.score(pred, rgb).double().cpu())
        batch_ids = [view.item_id(int(k)) for k in idx]
        ids.extend(batch_ids)
        for j in range(min(len(batch_ids), n_samples - len(samples))):
            samples.append((batch_ids[j], pred[j].cpu(), rgb[j].cpu()))
        if bar is not None:
            bar.update(len(batch_ids))
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    rows = pd.DataFrame({"id": ids, **{m: torch.cat(v).numpy() if v else [] for m, v in scores.items()}})
    aggregates = {
        name: {"mean": float(rows[name].mean()) if len(rows) else None, "n": int(len(rows)), **metric.describe()}
        for name, metric in metrics.items()
    }
    return Evaluation(rows, aggregates, seconds, samples)
