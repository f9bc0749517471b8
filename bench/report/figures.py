"""The pictures of a report, drawn from stored files only: comparison grids (from the sample PNGs each
evaluation stored), per-image metric distributions (from the per-image CSVs) and training-loss curves
(from each run's ``losses.csv``), with the validation curves beside them (``validation.csv``, when the
run validated on a held-out slice of its training split)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Sequence

from bench.report import plots
from bench.report.model import (
    DEFAULT_GRID_ROWS, GRID_SEED, PLOTS_DIR, Figure, Group, ReportError, Stored, _arrow, entries_of, leaderboard_order,
    metric_columns, row_labels,
)


def _sample_map(r: Stored) -> dict[str, tuple[Path, Path | None]]:
    """id -> (sample PNG, its ground truth PNG) for a result's stored samples."""
    out = {}
    base = r.path.parent
    for k, s in enumerate(r.data.get("samples") or []):
        if not isinstance(s, dict) or "file" not in s or "id" not in s:
            continue
        # Older results (no "reference" key) kept ground truths by position under _reference/.
        ref = base / s["reference"] if s.get("reference") else base / "_reference" / f"{k:02d}.png"
        out[str(s["id"])] = (base / s["file"], ref)
    return out


def pick_grid_images(common: Sequence[str], wanted: Sequence[str] | None, n: int = DEFAULT_GRID_ROWS, seed: int = GRID_SEED) -> tuple[list[str], list[str]]:
    """(chosen ids, tokens of ``wanted`` that match nothing here).

    ``wanted`` holds ids or 0-based indexes into ``common`` (the ids every method stored). Without it,
    ``n`` ids are drawn with a fixed seed, kept in stored order.
    """
    if wanted:
        chosen, unmatched = [], []
        for token in wanted:
            if token in common:
                pick = token
            elif token.isdigit() and int(token) < len(common):
                pick = common[int(token)]
            else:
                unmatched.append(token)
                continue
            if pick not in chosen:
                chosen.append(pick)
        if chosen:
            return chosen, unmatched
        return pick_grid_images(common, None, n, seed)[0], unmatched
    idx = sorted(random.Random(seed).sample(range(len(common)), min(n, len(common))))
    return [common[i] for i in idx], []


def _read_png(path: Path):
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read the stored sample image ({exc}); re-run the evaluation") from None


def _grayscale(rgb):
    """What every method sees: the L channel of the ground truth, shown as an image (ab = 0)."""
    import torch

    from bench.color import lab_to_rgb_uint8, rgb_to_lab

    lab = rgb_to_lab(torch.from_numpy(rgb.copy()).permute(2, 0, 1))
    lab[1:] = 0
    return lab_to_rgb_uint8(lab).permute(1, 2, 0).numpy()


def grid_figure(group: Group, out: Path, wanted: Sequence[str] | None, n: int, notes: list[str]) -> tuple[Figure | None, list[str]]:
    """The comparison grid of a group: rows = images, columns = grayscale input, each setting (its lowest seed
    with stored samples, where it has several), ground truth."""
    members, labels = [], []
    for e in entries_of(group):
        r = next((r for r in e.results if r.data.get("samples")), None)
        if r is not None:
            members.append(r)
            labels.append(f"{e.label} (seed {r.seed})" if e.aggregated else e.label)
    if not members:
        notes.append("no stored sample images: no comparison grid")
        return None, list(wanted or [])
    maps = [_sample_map(r) for r in members]
    common = [i for i in maps[0] if all(i in m for m in maps[1:])]
    if not common:
        notes.append("the methods stored samples of different images: no comparison grid")
        return None, list(wanted or [])
    chosen, unmatched = pick_grid_images(common, wanted, n)
    rows = []
    for image_id in chosen:
        truth_path = next((m[image_id][1] for m in maps if m[image_id][1] is not None and m[image_id][1].exists()), None)
        if truth_path is None:
            notes.append(f"no stored ground truth for image {image_id}: left out of the grid")
            continue
        truth = _read_png(truth_path)
        preds = [_read_png(m[image_id][0]) for m in maps]
        for label, p in zip(labels, preds):
            if p.shape != truth.shape:
                raise ReportError(f"{label}: stored sample of {image_id} is {p.shape[1]}x{p.shape[0]} but its ground truth "
                                  f"{truth_path} is {truth.shape[1]}x{truth.shape[0]}; re-run the evaluation")
        rows.append((image_id, [_grayscale(truth), *preds, truth]))
    if not rows:
        return None, unmatched
    titles = ["grayscale input", *labels, "ground truth"]
    rel = Path(PLOTS_DIR) / f"grid-{group.slug}.png"
    plots.comparison_grid(rows, titles, out / rel)
    how = "chosen with --images" if wanted and set(wanted) - set(unmatched) else f"drawn with seed {GRID_SEED}"
    caption = f"{len(rows)} of {len(common)} stored images ({how}); columns: " + ", ".join(titles)
    return Figure("grid", rel, caption, [r[0] for r in rows], titles), unmatched


def _labels(results: Sequence[Stored]) -> list[str]:
    """The table's row labels (method and how its settings differ), with the seed where a label repeats."""
    texts = row_labels(results)
    return [t if texts.count(t) == 1 else f"{t} (seed {r.seed})" for t, r in zip(texts, results)]


def distribution_figure(group: Group, out: Path, notes: list[str]) -> Figure | None:
    """Box plots of every per-image metric, one box per method, from the per-image CSVs."""
    import pandas as pd

    frames: dict[str, Any] = {}
    ordered = leaderboard_order(group)
    for label, r in zip(_labels(ordered), ordered):
        name = r.data.get("per_image_file")
        path = r.path.parent / name if name else None
        if path is None or not path.exists():
            notes.append(f"{label}: no per-image file{f' ({path})' if path else ''}: left out of the distributions")
            continue
        try:
            frames[label] = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise ReportError(f"{path}: cannot read the per-image results ({exc}); re-run the evaluation") from None
    metrics = [(name, f"{name} {_arrow(e.get('higher_is_better'))}".strip() + (f" ({e['unit']})" if e.get("unit") else ""))
               for name, e in metric_columns(group.results) if e.get("per_image", True)]
    metrics = [(m, label) for m, label in metrics if any(m in f.columns for f in frames.values())]
    if not frames or not metrics:
        return None
    rel = Path(PLOTS_DIR) / f"dist-{group.slug}.png"
    plots.metric_distributions(frames, metrics, out / rel)
    return Figure("dist", rel, "per-image values of each metric (box: quartiles, line: median, triangle: mean)")


def _losses_path(r: Stored, root: Path) -> Path | None:
    run_dir = (r.data.get("train") or {}).get("run_dir")
    if not run_dir:
        return None
    for cand in (Path(run_dir), root / "train" / r.method / Path(run_dir).name):  # the results folder may have moved
        if (cand / "losses.csv").exists():
            return cand / "losses.csv"
    return None


def losses_figure(group: Group, root: Path, out: Path, notes: list[str]) -> Figure | None:
    import pandas as pd

    runs: dict[str, Any] = {}
    validation: dict[str, Any] = {}
    ordered = leaderboard_order(group)
    for label, r in zip(_labels(ordered), ordered):
        if not r.data.get("train"):
            continue
        path = _losses_path(r, root)
        if path is None:
            notes.append(f"{label}: its training run's losses.csv was not found: no loss curve")
            continue
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise ReportError(f"{path}: cannot read the training losses ({exc})") from None
        if "step" in frame.columns and len(frame):
            runs[label] = frame
        val_path = path.with_name("validation.csv")
        if val_path.exists():
            try:
                val = pd.read_csv(val_path)
            except (OSError, ValueError) as exc:
                raise ReportError(f"{val_path}: cannot read the validation scores ({exc})") from None
            if {"step", "val_psnr", "val_ssim"} <= set(val.columns) and len(val):
                validation[label] = val
    if not runs:
        return None
    rel = Path(PLOTS_DIR) / f"losses-{group.slug}.png"
    plots.loss_curves(runs, out / rel, validation)
    caption = "training losses per method (from each run's losses.csv)"
    if validation:
        caption += ("; below, PSNR and SSIM on the slice of the training split each run held out (validation.csv), "
                    "not the test split: the scored model is each run's last checkpoint")
    return Figure("losses", rel, caption)
