"""Colourise a split and score it: L -> predict ab -> Lab -> sRGB uint8 (what a user saves) -> metrics.

Streaming: images go through in batches and are dropped once scored. What is kept grows by a few numbers
per image: one float per per-image metric, and the compact features of set-level metrics (IS logits,
FID pool features are folded into running sums, per-bin sums of the rebalanced AuC) -- never images.

Resumable: with a ``work_dir``, every ``chunk_images`` images the finished per-image values, the set-level
features of that chunk and the sample outputs are saved as one ``chunk-NNNNN.pt`` (atomically), then
``progress.json`` (the number of chunks and images done, and a hash of what is being evaluated). A new
call with the same identity replays the chunks and carries on from the first unscored image, so an
interrupted evaluation ends with the same per-image rows and aggregates as an uninterrupted one. A
different identity (another checkpoint, recipe, dataset content, metric list or batch size) starts over.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from bench import distributed
from bench.color import lab_to_rgb_uint8, rgb_to_lab
from bench.methods import Method
from bench.metrics import Batch, Metric, SetMetric
from bench.metrics.stats import Bootstrap, mean_ci, source_images
from bench.store import atomic_path, short_hash, write_json_atomic

PROGRESS = "progress.json"
JOURNAL_FORMAT = 2  # 2: sparse per-bin rows of auc_rebalanced


@dataclass
class Evaluation:
    rows: pd.DataFrame  # one row per evaluated image: id, then one column per per-image metric
    aggregates: dict[str, dict[str, Any]]  # every requested metric, in request order (unavailable ones say why)
    seconds: float
    samples: list[tuple[str, Tensor, Tensor]] = field(default_factory=list)  # (id, prediction, ground truth)
    resumed_from: int = 0  # images already scored by an interrupted run and replayed
    statistics: dict[str, Any] = field(default_factory=dict)  # how the intervals were computed


@torch.no_grad()
def colorize(method: Method, rgb: Tensor) -> Tensor:
    """(B, 3, H, W) uint8 RGB (or its gray version) on the method's device -> colourised uint8 RGB."""
    lab = rgb_to_lab(rgb)
    L = lab[:, :1]
    out = method.predict_lab(L).to(L.dtype)
    if out.shape != (L.shape[0], 3, *L.shape[2:]):
        raise RuntimeError(f"predict_lab returned shape {tuple(out.shape)}, expected {(L.shape[0], 3, *L.shape[2:])}")
    return lab_to_rgb_uint8(out)


@torch.no_grad()
def colorize_full(method: Method, rgb: Tensor, work_size: int | None) -> Tensor:
    """(B, 3, H, W) uint8 RGB of any size -> colourised uint8 RGB of the same size.

    As Zhang et al.'s demo: ab is predicted on the L channel resized to the model's working scale (shorter
    side ``work_size``, aspect kept; the demo squashes to 256x256), upsampled bilinearly to H x W and
    joined to the original full-resolution L (a method that predicts its own lightness keeps its own L,
    upsampled with ab). ``None``: predict at full resolution.
    """
    lab = rgb_to_lab(rgb)
    L = lab[:, :1]
    h, w = L.shape[-2:]
    small = L
    if work_size is not None and min(h, w) != work_size:
        s = work_size / min(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        small = F.interpolate(L, size=size, mode="bilinear", align_corners=False, antialias=s < 1)
    out = method.predict_lab(small).to(L.dtype)
    if out.shape != (L.shape[0], 3, *small.shape[2:]):
        raise RuntimeError(f"predict_lab returned shape {tuple(out.shape)}, expected {(L.shape[0], 3, *small.shape[2:])}")
    if out.shape[-2:] != (h, w):
        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False, antialias=small.shape[-2] > h)
    # The full-resolution L of the input, unless the method's own lightness is what it outputs.
    return lab_to_rgb_uint8(out if method.predicts_lightness else torch.cat([L, out[:, 1:]], 1))


def work_size_for(train_image_size: int, card_extra: Mapping[str, Any]) -> int:
    """The scale a model was trained at: crops were cut from images whose shorter side is the card's
    ``train_resize_short`` when it sets one; otherwise the recipe's crop size is the best guess."""
    return int(card_extra.get("train_resize_short") or train_image_size)


class EvalJournal:
    """The on-disk chunks of an evaluation in progress, and its progress marker."""

    def __init__(self, folder: Path, identity: dict[str, Any]):
        self.folder = Path(folder)
        self.key = short_hash({"journal_format": JOURNAL_FORMAT, **identity}, 16)
        self.chunks = 0
        self.n_done = 0

    def load(self) -> list[dict[str, Any]]:
        """The saved chunks if they belong to this identity; otherwise clear the folder and return none."""
        marker = self.folder / PROGRESS
        if not marker.exists():
            if self.folder.exists():
                shutil.rmtree(self.folder)
            return []
        progress = json.loads(marker.read_text(encoding="utf-8"))
        if progress.get("key") != self.key:
            print(f"evaluate: {self.folder} belongs to a different evaluation (checkpoint, recipe, data or metrics "
                  "changed): starting over", file=sys.stderr)
            shutil.rmtree(self.folder)
            return []
        chunks = [torch.load(self.folder / f"chunk-{c:05d}.pt", map_location="cpu", weights_only=True)
                  for c in range(progress["chunks"])]
        self.chunks, self.n_done = progress["chunks"], progress["n_done"]
        return chunks

    def append(self, chunk: dict[str, Any]) -> None:
        with atomic_path(self.folder / f"chunk-{self.chunks:05d}.pt") as tmp:
            torch.save(chunk, tmp)
        self.chunks += 1
        self.n_done += len(chunk["ids"])
        write_json_atomic(self.folder / PROGRESS, {"key": self.key, "chunks": self.chunks, "n_done": self.n_done})

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _score_chunk(method: Method, part: Subset, view: Any, active: dict[str, Metric], per_image: list[str],
                 set_level: dict[str, SetMetric], device: torch.device, per_batch: int, work_size: int | None,
                 want_samples: int, bar: Any) -> dict[str, Any]:
    """Colourise and score the images of ``part``: their per-image values, set-level features and up to
    ``want_samples`` sample outputs, as one journal chunk."""
    ids: list[str] = []
    values: dict[str, list[Tensor]] = {n: [] for n in per_image}
    samples: list[tuple[str, Tensor, Tensor]] = []
    for rgb, idx in DataLoader(part, batch_size=per_batch, shuffle=False, num_workers=0):
        rgb = rgb.to(device, non_blocking=True)
        pred = colorize(method, rgb) if view.fixed_size else colorize_full(method, rgb, work_size)
        batch = Batch(pred, rgb)
        for name in per_image:
            scores = active[name].score_batch(batch)
            if scores.shape != (len(batch),):
                raise RuntimeError(f"metric {name} returned shape {tuple(scores.shape)} for a batch of {len(batch)}")
            values[name].append(scores.detach().to(torch.float64).cpu())
        for metric in set_level.values():
            metric.update(batch)
        batch_ids = [view.item_id(int(k)) for k in idx]
        for j in range(min(len(batch_ids), want_samples - len(samples))):
            samples.append((batch_ids[j], pred[j].cpu().clone(), rgb[j].cpu().clone()))
        ids.extend(batch_ids)
        if bar is not None:
            bar.update(len(batch_ids))
    return {"ids": ids, "values": {n: torch.cat(v) for n, v in values.items()},
            "sets": {n: m.take_chunk() for n, m in set_level.items()}, "samples": samples}


def evaluate(
    method: Method,
    view: Any,
    metrics: dict[str, Metric],
    *,
    device: torch.device,
    batch_size: int = 16,
    n_samples: int = 8,
    progress: bool | None = None,
    work_dir: Path | None = None,
    identity: dict[str, Any] | None = None,
    chunk_images: int = 256,
    bootstrap: Bootstrap = Bootstrap(),
    work_size: int | None = None,
    dist: distributed.Dist = distributed.SINGLE,
) -> Evaluation:
    """Score ``method`` on ``view`` (an EvalView: ``view[k] -> (uint8 image, k)``, ``item_id(k)``, ``fixed_size``).

    Full-size views (mode "full") go through :func:`colorize_full` at ``work_size``, fixed-size views are
    colourised as they are.
    Metrics whose ``available()`` is false are not run: their aggregate says ``available: false`` and why.
    With ``work_dir`` the evaluation is journaled there and resumes (see the module docstring); the caller
    removes it once the final results are written (``EvalJournal(work_dir, {}).remove()``).

    Under torchrun (``dist``), process r scores chunks r, r + W, ...; the chunks are gathered and replayed
    in order on every process, so the rows and aggregates are those of one process. The main process
    journals them, and a resume may use another number of processes.
    """
    method.eval()
    active: dict[str, Metric] = {}
    unavailable: dict[str, str] = {}
    for name, metric in metrics.items():
        ok, why = metric.available()
        if ok:
            active[name] = metric
            metric.reset()
        else:
            unavailable[name] = why
    per_image = [n for n, m in active.items() if m.per_image]
    set_level: dict[str, SetMetric] = {n: m for n, m in active.items() if not m.per_image}  # type: ignore[misc]

    ids: list[str] = []
    values: dict[str, list[np.ndarray]] = {n: [] for n in per_image}
    samples: list[tuple[str, Tensor, Tensor]] = []
    set_chunks: list[dict[str, Any]] = []  # under torchrun: every chunk's set-level features, replayed in order

    def absorb(chunk: dict[str, Any], scored_here: bool) -> None:
        """Add a finished chunk (scored here, by another process, or by an interrupted run) to the results."""
        ids.extend(chunk["ids"])
        for n in per_image:
            values[n].append(chunk["values"][n].numpy())
        samples.extend(chunk["samples"][: n_samples - len(samples)])
        if dist.enabled:
            set_chunks.append(chunk["sets"])
        elif not scored_here:  # take_chunk() already absorbed what this process scored
            for n, m in set_level.items():
                m.replay(chunk["sets"].get(n, {}))

    # Only the main process keeps the journal (one folder, which need not be on a filesystem the other
    # nodes share); it hands the chunks of an interrupted run to the others.
    journal = None
    loaded: list[dict[str, Any]] = []
    if work_dir is not None and dist.is_main:
        journal = EvalJournal(work_dir, {"metrics": list(active), "n_items": len(view), "batch_size": batch_size,
                                         "chunk_images": chunk_images, "n_samples": n_samples, "work_size": work_size,
                                         **(identity or {})})
        loaded = journal.load()
    if work_dir is not None:
        loaded = distributed.broadcast_object(loaded, dist)
    for chunk in loaded:
        absorb(chunk, scored_here=False)
    resumed_from = len(ids)

    # Chunks are whole batches (``chunk_images`` rounded up), so a chunk never splits a batch. Under
    # torchrun, round j gives chunk j*W + r to process r; after each round every process receives the
    # round's chunks, in order, and the main process journals them, so a resume carries on after the last
    # whole round with any number of processes.
    per_batch = batch_size if view.fixed_size else 1
    chunk_len = -(-chunk_images // per_batch) * per_batch
    starts = list(range(resumed_from, len(view), chunk_len))
    rounds = [starts[i : i + dist.world] for i in range(0, len(starts), dist.world)]
    show = (sys.stderr.isatty() if progress is None else progress) and dist.is_main
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(view), initial=resumed_from, desc="evaluate", unit="img", dynamic_ncols=True, mininterval=0.5)
    t0 = time.perf_counter()
    for group in rounds:
        mine = None
        if dist.rank < len(group):
            first = group[dist.rank]
            mine = _score_chunk(method, Subset(view, range(first, min(first + chunk_len, len(view)))), view,
                                active, per_image, set_level, device, per_batch, work_size,
                                n_samples - len(samples), bar)
        for k, chunk in enumerate(distributed.gather_objects(mine, dist)[: len(group)]):
            if journal is not None:
                journal.append(chunk)
            if bar is not None and k != dist.rank:
                bar.update(len(chunk["ids"]))
            absorb(chunk, scored_here=k == dist.rank)
    if bar is not None:
        bar.close()
    if dist.enabled:  # set-level features in chunk order, as one process would have added them
        for metric in set_level.values():
            metric.reset()
        for sets in set_chunks:
            for n, m in set_level.items():
                m.replay(sets.get(n, {}))
    seconds = time.perf_counter() - t0

    columns = {n: np.concatenate(v) if v else np.zeros(0) for n, v in values.items()}
    rows = pd.DataFrame({"id": ids, **columns})
    aggregates: dict[str, dict[str, Any]] = {}
    # Tiles of one photo are resampled together (see bench.metrics.stats.mean_ci); None when every item is its own photo.
    clusters = source_images(ids) if ids else None
    clustered = clusters is not None and int(clusters.max()) + 1 < len(ids)
    clusters = clusters if clustered else None
    for name, metric in metrics.items():
        if name in unavailable:
            aggregates[name] = {"mean": None, "n": 0, "ci95": None, **metric.describe(), "available": False,
                                "reason": unavailable[name]}
        elif metric.per_image:
            col = columns[name]
            aggregates[name] = {"mean": float(col.mean()) if len(col) else None, "n": int(len(col)),
                                "ci95": mean_ci(col, bootstrap, clusters), **metric.describe(), "available": True}
        else:
            aggregates[name] = {**set_level[name].compute(bootstrap, clusters), **metric.describe(), "available": True}
    statistics = {**bootstrap.describe(clustered), **({"source_images": int(clusters.max()) + 1} if clustered else {})}
    return Evaluation(rows, aggregates, seconds, samples, resumed_from, statistics)
