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
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from bench import distributed
from bench.color import lab_to_rgb_uint8, rgb_to_lab
from bench.device import prefetch
from bench.methods import Method
from bench.metrics import Batch, Metric, SetMetric
from bench.metrics.stats import Bootstrap, mean_ci, source_images
from bench.progress import Progress, progress_mode
from bench.store import atomic_path, short_hash, write_json_atomic

PROGRESS = "progress.json"
#: What is scored: (ground truths (B, 3, H, W) uint8 on the evaluation device, their item indices) -> the
#: outputs, uint8 of the same shape.
Predictor = Callable[[Tensor, list[int]], Tensor]
#: Sees every output as it is scored: (item indices, outputs).
OutputSink = Callable[[list[int], Tensor], None]
JOURNAL_FORMAT = 2  # 2: sparse per-bin rows of auc_rebalanced


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C during an evaluation; the message says how much is journaled and that the same command resumes."""


@dataclass
class Evaluation:
    rows: pd.DataFrame  # one row per evaluated image: id, then one column per per-image metric
    aggregates: dict[str, dict[str, Any]]  # every requested metric, in request order (unavailable ones say why)
    seconds: float
    samples: list[tuple[str, Tensor, Tensor]] = field(default_factory=list)  # (id, prediction, ground truth)
    resumed_from: int = 0  # images already scored by an interrupted run and replayed
    statistics: dict[str, Any] = field(default_factory=dict)  # how the intervals were computed


@torch.no_grad()
def colorize(method: Method, rgb: Tensor, tile: int | None = None, overlap: int | None = None) -> Tensor:
    """(B, 3, H, W) uint8 RGB (or its gray version) on the method's device -> colourised uint8 RGB.
    ``tile``: predict in overlapping tiles of that size (:func:`predict_ab_tiled`); None: whole."""
    lab = rgb_to_lab(rgb)
    L = lab[:, :1]
    return lab_to_rgb_uint8(predict_lab_tiled(method, L, tile, overlap).to(L.dtype))


@torch.no_grad()
def colorize_full(method: Method, rgb: Tensor, work_size: int | None, tile: int | None = None,
                  overlap: int | None = None) -> Tensor:
    """(B, 3, H, W) uint8 RGB of any size -> colourised uint8 RGB of the same size.

    As Zhang et al.'s demo: ab is predicted on the L channel resized to the model's working scale (shorter
    side ``work_size``, aspect kept; the demo squashes to 256x256), upsampled bilinearly to H x W and
    joined to the original full-resolution L (a method that predicts its own lightness keeps its own L,
    upsampled with ab). ``None``: predict at full resolution. ``tile``: predict the resized L in
    overlapping tiles (:func:`predict_ab_tiled`).
    """
    lab = rgb_to_lab(rgb)
    L = lab[:, :1]
    h, w = L.shape[-2:]
    small = L
    if work_size is not None and min(h, w) != work_size:
        s = work_size / min(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        small = F.interpolate(L, size=size, mode="bilinear", align_corners=False, antialias=s < 1)
    out = predict_lab_tiled(method, small, tile, overlap).to(L.dtype)
    if out.shape[-2:] != (h, w):
        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False, antialias=small.shape[-2] > h)
    # The full-resolution L of the input, unless the method's own lightness is what it outputs.
    return lab_to_rgb_uint8(out if method.predicts_lightness else torch.cat([L, out[:, 1:]], 1))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles along one side start: every ``tile - overlap`` pixels, the last one flush with the end
    (so it may overlap its neighbour by more than ``overlap``)."""
    if length <= tile:
        return [0]
    return [*range(0, length - tile, tile - overlap), length - tile]


def feather(n: int, low_shared: bool, high_shared: bool, overlap: int) -> Tensor:
    """The blending weight of a tile along one side, (n,). Towards an edge it shares with a neighbour (not an
    image border) the weight is 0 over the outer quarter of the overlap, then rises linearly over its middle
    half to 1: a pixel whose tile has not seen at least ``overlap // 4`` pixels of context beyond it never
    counts, and neighbouring tiles cross-fade so no seam shows. A network whose receptive field reaches at
    most ``overlap // 4`` pixels from its centre is thus reproduced exactly (tested)."""
    w = torch.ones(n)
    if overlap <= 0:
        return w
    margin = overlap // 4
    d = torch.arange(n, dtype=torch.float32)
    rise = lambda dist: ((dist + 0.5 - margin) / (overlap - 2 * margin)).clamp(0, 1)
    if low_shared:
        w = torch.minimum(w, rise(d))
    if high_shared:
        w = torch.minimum(w, rise(n - 1 - d))
    return w


@torch.no_grad()
def predict_ab_tiled(method: Method, L: Tensor, tile: int | None, overlap: int | None = None, max_tiles: int = 256) -> Tensor:
    """``method.predict_ab(L)``, or in ``tile`` x ``tile`` windows that overlap by ``overlap`` pixels
    (default a quarter of the tile), blended with :func:`feather` weights.

    Tiling gives a network the context it was trained on (a model trained on 64-px crops and run on whole
    256-px images doubled its saturation; in 64-px tiles it scored 0.9 dB higher), and bounds memory: at
    most ``max_tiles`` tiles go through the network at once, whatever the image size."""
    return _tiled(method.predict_ab, 2, "predict_ab", L, tile, overlap, max_tiles)


@torch.no_grad()
def predict_lab_tiled(method: Method, L: Tensor, tile: int | None, overlap: int | None = None, max_tiles: int = 256) -> Tensor:
    """(B, 3, H, W) Lab of the colourised image: the input's L beside :func:`predict_ab_tiled`, or, for a
    method that predicts its own lightness, its ``predict_lab`` tiled the same way."""
    if not method.predicts_lightness:
        return torch.cat([L, predict_ab_tiled(method, L, tile, overlap, max_tiles).to(L.dtype)], 1)
    return _tiled(method.predict_lab, 3, "predict_lab", L, tile, overlap, max_tiles)


def _tiled(predict: Callable[[Tensor], Tensor], channels: int, name: str, L: Tensor, tile: int | None,
           overlap: int | None, max_tiles: int) -> Tensor:
    B, _, H, W = L.shape
    if tile is None or (H <= tile and W <= tile):
        out = predict(L)
        _check_shape(out, L, channels, name)
        return out
    overlap = tile // 4 if overlap is None else overlap
    th, tw = min(tile, H), min(tile, W)
    ys, xs = tile_starts(H, th, overlap), tile_starts(W, tw, overlap)
    wy = [feather(th, y > 0, y + th < H, overlap).to(L.device) for y in ys]
    wx = [feather(tw, x > 0, x + tw < W, overlap).to(L.device) for x in xs]
    boxes = [(y, x, wy[i][:, None] * wx[j][None, :]) for i, y in enumerate(ys) for j, x in enumerate(xs)]
    tiles = torch.stack([L[:, :, y : y + th, x : x + tw] for y, x, _ in boxes], 1).reshape(-1, 1, th, tw)
    parts = []
    for k in range(0, tiles.shape[0], max_tiles):
        part = predict(tiles[k : k + max_tiles])
        _check_shape(part, tiles[k : k + max_tiles], channels, name)
        parts.append(part.float())
    out_tiles = torch.cat(parts).reshape(B, len(boxes), channels, th, tw)
    out = torch.zeros(B, channels, H, W, device=L.device)
    norm = torch.zeros(H, W, device=L.device)
    for k, (y, x, weight) in enumerate(boxes):
        out[:, :, y : y + th, x : x + tw] += out_tiles[:, k] * weight
        norm[y : y + th, x : x + tw] += weight
    return out / norm


def _check_shape(out: Tensor, L: Tensor, channels: int, name: str) -> None:
    if out.shape != (L.shape[0], channels, *L.shape[2:]):
        raise RuntimeError(f"{name} returned shape {tuple(out.shape)}, expected {(L.shape[0], channels, *L.shape[2:])}")


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


def method_predictor(method: Method, view: Any, work_size: int | None, tile: int | None = None,
                     overlap: int | None = None) -> Predictor:
    """How a method colourises the items of ``view``: fixed-size items as they are, full images at
    ``work_size`` (:func:`colorize_full`), either in tiles when ``tile`` is set."""
    if view.fixed_size:
        return lambda rgb, idx: colorize(method, rgb, tile, overlap)
    return lambda rgb, idx: colorize_full(method, rgb, work_size, tile, overlap)


def _score_chunk(predict: Predictor, part: Subset, view: Any, active: dict[str, Metric], per_image: list[str],
                 set_level: dict[str, SetMetric], device: torch.device, per_batch: int, want_samples: int,
                 bar: Progress, on_output: OutputSink | None) -> dict[str, Any]:
    """Colourise and score the images of ``part``: their per-image values, set-level features and up to
    ``want_samples`` sample outputs, as one journal chunk."""
    ids: list[str] = []
    values: dict[str, list[Tensor]] = {n: [] for n in per_image}
    samples: list[tuple[str, Tensor, Tensor]] = []
    # The next batch loads in a thread (pinned on CUDA) while this one is scored.
    for rgb, idx in prefetch(DataLoader(part, batch_size=per_batch, shuffle=False, num_workers=0), pin=device.type == "cuda"):
        rgb = rgb.to(device, non_blocking=True)
        items = [int(k) for k in idx]
        pred = predict(rgb, items)
        if on_output is not None:
            on_output(items, pred)
        batch = Batch(pred, rgb)
        for name in per_image:
            scores = active[name].score_batch(batch)
            if scores.shape != (len(batch),):
                raise RuntimeError(f"metric {name} returned shape {tuple(scores.shape)} for a batch of {len(batch)}")
            values[name].append(scores.detach().to(torch.float64).cpu())
        for metric in set_level.values():
            metric.update(batch)
        batch_ids = [view.item_id(k) for k in items]
        for j in range(min(len(batch_ids), want_samples - len(samples))):
            samples.append((batch_ids[j], pred[j].cpu().clone(), rgb[j].cpu().clone()))
        ids.extend(batch_ids)
        bar.advance(len(batch_ids))
        bar.report()
    return {"ids": ids, "values": {n: torch.cat(v) for n, v in values.items()},
            "sets": {n: m.take_chunk() for n, m in set_level.items()}, "samples": samples}


def evaluate(
    method: Method | None,
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
    tile: int | None = None,
    tile_overlap: int | None = None,
    dist: distributed.Dist = distributed.SINGLE,
    label: str = "",
    predict: Predictor | None = None,
    on_output: OutputSink | None = None,
) -> Evaluation:
    """Score ``method`` on ``view`` (an EvalView: ``view[k] -> (uint8 image, k)``, ``item_id(k)``, ``fixed_size``).

    Full-size views (mode "full") go through :func:`colorize_full` at ``work_size``, fixed-size views are
    colourised as they are; either in overlapping tiles of ``tile`` px when it is set.
    Metrics whose ``available()`` is false are not run: their aggregate says ``available: false`` and why.
    With ``work_dir`` the evaluation is journaled there and resumes (see the module docstring); the caller
    removes it once the final results are written (``EvalJournal(work_dir, {}).remove()``).

    Under torchrun (``dist``), process r scores chunks r, r + W, ...; the chunks are gathered and replayed
    in order on every process, so the rows and aggregates are those of one process. The main process
    journals them, and a resume may use another number of processes.

    ``label`` names the evaluation in progress lines and messages (e.g. ``unet on samples/test``).

    ``predict`` replaces the method (``method`` None): ``predict(ground truths, item indices)`` gives the
    outputs to score (outputs made elsewhere, a Python callable). ``on_output(item indices, outputs)``
    sees every output as it is scored (``bench run --save-outputs``).
    """
    if predict is None:
        if method is None:
            raise TypeError("evaluate: give a method or a predict function")
        method.eval()
        predict = method_predictor(method, view, work_size, tile, tile_overlap)
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
                                         "tile": tile, "tile_overlap": tile_overlap,
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
    bar = Progress(progress_mode(progress, dist.is_main), len(view), resumed_from, f"evaluate {label}".rstrip(), "img")
    t0 = time.perf_counter()
    try:
        for group in rounds:
            mine = None
            if dist.rank < len(group):
                first = group[dist.rank]
                mine = _score_chunk(predict, Subset(view, range(first, min(first + chunk_len, len(view)))), view,
                                    active, per_image, set_level, device, per_batch, n_samples - len(samples), bar,
                                    on_output)
            for k, chunk in enumerate(distributed.gather_objects(mine, dist)[: len(group)]):
                if journal is not None:
                    journal.append(chunk)
                if k != dist.rank:
                    bar.advance(len(chunk["ids"]))
                absorb(chunk, scored_here=k == dist.rank)
            bar.report()
    except KeyboardInterrupt as exc:
        if work_dir is None or journal is None:
            kept = "nothing was journaled (no results folder): it starts over" if work_dir is None else \
                f"the main process journals it in {work_dir}: run the same command again to resume"
            raise EvaluationInterrupted(f"evaluation {label} interrupted after {bar.done} of {len(view)} images; {kept}") from exc
        raise EvaluationInterrupted(f"evaluation {label} interrupted after {bar.done} of {len(view)} images; {journal.n_done} "
                                    f"are journaled in {journal.folder}: run the same command again to resume from "
                                    f"image {journal.n_done}") from exc
    finally:
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
                                "ci95": mean_ci(col, bootstrap, clusters), **metric.describe(), **metric.weights_info(),
                                "available": True}
        else:
            aggregates[name] = {**set_level[name].compute(bootstrap, clusters), **metric.describe(), "available": True}
    statistics = {**bootstrap.describe(clustered), **({"source_images": int(clusters.max()) + 1} if clustered else {})}
    return Evaluation(rows, aggregates, seconds, samples, resumed_from, statistics)
