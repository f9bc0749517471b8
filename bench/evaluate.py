"""Colourise a split and score it: L -> predict ab -> Lab -> sRGB uint8 (what a user saves) -> metrics.

Per-image rows go to a CSV beside the result JSON; the JSON holds aggregates, conventions, identity,
environment and timings. A few outputs are kept as PNGs for the comparison grids of the reports.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import torch
import torch.nn.functional as F
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


@torch.no_grad()
def colorize_full(method: Method, rgb: Tensor, work_size: int | None) -> Tensor:
    """(B, 3, H, W) uint8 RGB of any size -> colourised uint8 RGB of the same size.

    As Zhang et al.'s demo: ab is predicted on the L channel resized to the model's working scale (shorter
    side ``work_size``, aspect kept; the demo squashes to 256x256), upsampled bilinearly to H x W and
    joined to the original full-resolution L. ``None``: predict at full resolution.
    """
    lab = rgb_to_lab(rgb)
    L = lab[:, :1]
    h, w = L.shape[-2:]
    small = L
    if work_size is not None and min(h, w) != work_size:
        s = work_size / min(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        small = F.interpolate(L, size=size, mode="bilinear", align_corners=False, antialias=s < 1)
    ab = method.predict_ab(small).to(L.dtype)
    if ab.shape != (L.shape[0], 2, *small.shape[2:]):
        raise RuntimeError(f"predict_ab returned shape {tuple(ab.shape)}, expected {(L.shape[0], 2, *small.shape[2:])}")
    if ab.shape[-2:] != (h, w):
        ab = F.interpolate(ab, size=(h, w), mode="bilinear", align_corners=False, antialias=small.shape[-2] > h)
    return lab_to_rgb_uint8(torch.cat([L, ab], 1))


def work_size_for(train_image_size: int, card_extra: Mapping[str, Any]) -> int:
    """The scale a model was trained at: crops were cut from images whose shorter side is the card's
    ``train_resize_short`` when it sets one; otherwise the recipe's crop size is the best guess."""
    return int(card_extra.get("train_resize_short") or train_image_size)


def evaluate(
    method: Method,
    view: EvalView,
    metrics: dict[str, Metric],
    *,
    device: torch.device,
    batch_size: int = 16,
    n_samples: int = 8,
    progress: bool | None = None,
    work_size: int | None = None,
) -> Evaluation:
    """Score ``method`` on ``view``; full-size views (mode "full") go through :func:`colorize_full` at
    ``work_size``, fixed-size views are colourised as they are."""
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
        pred = colorize(method, rgb) if view.fixed_size else colorize_full(method, rgb, work_size)
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
