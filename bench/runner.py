"""Orchestration behind the CLI: train what is missing, evaluate, write results (failures included)."""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bench import distributed
from bench.checkpoint import TRAIN_JSON, load_trained
from bench.config import MethodRecipe
from bench.datasets import DATASETS, ImageSet
from bench.datasets.base import open_split
from bench.datasets.io import write_png
from bench.datasets.pixels import pixel_source
from bench.datasets.views import EvalView, eval_scale
from bench.device import pick_device
from bench.distributed import is_main_process
from bench.evaluate import EvalJournal, evaluate, work_size_for
from bench.metrics import MetricOptions, build_metrics
from bench.metrics.stats import Bootstrap
from bench.recipes import load_recipe
from bench.store import SCHEMA_VERSION, environment, eval_paths, now, read_json, short_hash, write_csv_atomic, write_json_atomic
from bench.train import TrainOutcome, train


@dataclass(frozen=True)
class RunSpec:
    """What one ``bench train``/``run`` invocation applies to every method."""

    dataset: str
    root: str | None = None
    seed: int = 0
    size: str = "cpu"
    overrides: tuple[tuple[str, str], ...] = ()
    device: str | None = None
    results: Path = Path("results")
    progress: bool | None = None
    on_bad_image: str = "skip"  # skip (and name) bad files, or refuse the split
    pretrained: bool = False  # --pretrained: params.pretrained=true for the methods that have the option
    inception_weights: str | None = None  # --inception-weights (IS, FID)
    bootstrap: int = 1000  # resamples of every 95% interval (0: none)
    eval_chunk: int = 256  # images per resumable chunk of an evaluation
    pixel_cache: bool = True  # --no-cache: decode images instead of reading the memory-mapped pixel cache

    def recipe(self, method: str) -> MethodRecipe:
        overrides = dict(self.overrides)
        recipe = load_recipe(method, self.size, overrides)
        if self.pretrained and hasattr(recipe.params, "pretrained") and "params.pretrained" not in overrides:
            recipe = load_recipe(method, self.size, {**overrides, "params.pretrained": "true"})
        return recipe

    def images(self, split: str, crop: int | None = None) -> ImageSet:
        """The split, with what was skipped/converted/gray and its official status reported on stderr
        (once per process and content)."""
        images = open_split(DATASETS.get(self.dataset), split, self.root, on_bad_image=self.on_bad_image)
        key = (images.name, split, str(images.root), images.identity()["content_hash"], crop)
        if key not in _REPORTED and is_main_process():
            _REPORTED.add(key)
            for line in images.report(crop=crop):
                print(line, file=sys.stderr)
        return images


_REPORTED: set[tuple] = set()


def train_one(spec: RunSpec, method: str, resume: bool = True) -> TrainOutcome:
    recipe = spec.recipe(method)
    images = spec.images("train", crop=recipe.train.image_size if recipe.trainable else None)
    return train(
        recipe, images, results=spec.results, seed=spec.seed,
        device=pick_device(spec.device), resume=resume, progress=spec.progress, pixel_cache=spec.pixel_cache,
    )


def evaluate_one(spec: RunSpec, method: str, split: str, metric_names: Sequence[str], outcome: TrainOutcome) -> dict[str, Any]:
    """Evaluate a trained (or training-free) method on ``split`` and write its result files."""
    recipe = spec.recipe(method)
    device = pick_device(spec.device)
    d = distributed.init(device)  # under torchrun every process scores a share; rank 0 writes
    images = spec.images(split)
    json_path, csv_path, samples_dir = eval_paths(spec.results, recipe.name, images.name, split, spec.seed)
    base: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "method": recipe.name,
        "adapter": recipe.adapter,
        "dataset": images.identity(),
        "split": split,
        "seed": spec.seed,
        "recipe": recipe.to_dict(),
        "environment": environment(str(device)),
        "created": now(),
    }
    train_meta = read_json(outcome.run_dir / TRAIN_JSON) if (outcome.run_dir / TRAIN_JSON).exists() else None
    if train_meta is not None:
        base["train"] = {
            "run_dir": str(outcome.run_dir),
            "identity_hash": train_meta.get("identity_hash"),
            "steps": train_meta.get("steps"),
            "seconds": train_meta.get("seconds"),
            "images_per_s": train_meta.get("images_per_s"),
            "throughput": train_meta.get("throughput"),  # model FLOPs per image and the fraction of matmul peak
            "processes": (train_meta.get("environment") or {}).get("processes", 1),
            "method_info": train_meta.get("method_info", {}),
        }
    else:
        base["train"] = None
    metrics = build_metrics(list(metric_names), MetricOptions(inception_weights=spec.inception_weights))
    work_dir = json_path.with_suffix(".partial")
    # What must match for an interrupted evaluation to be resumed rather than restarted.
    identity = {
        "method": recipe.name, "recipe": recipe.to_dict(), "dataset": base["dataset"], "seed": spec.seed,
        "trained": (train_meta or {}).get("identity_hash"), "checkpoint": _checkpoint_stamp(outcome.run_dir),
        "conventions": {n: m.convention for n, m in metrics.items()}, "bootstrap": spec.bootstrap,
        "inception_weights": spec.inception_weights, "device": str(device),
    }
    t0 = time.perf_counter()
    try:
        method = load_trained(recipe, outcome.run_dir, device)
        pixels = pixel_source(images, eval_scale(images.card.eval), cache=spec.pixel_cache and recipe.train.pixel_cache,
                              device=device, progress=spec.progress, keep=1)
        view = EvalView(images, images.card.eval, pixels=pixels)
        work_size = None if view.fixed_size else work_size_for(recipe.train.image_size, images.card.extra)
        result = evaluate(method, view, metrics, device=device, batch_size=recipe.train.batch_size, progress=spec.progress,
                          work_dir=work_dir, identity=identity, chunk_images=spec.eval_chunk,
                          bootstrap=Bootstrap(resamples=spec.bootstrap, seed=0), work_size=work_size, dist=d)
    except Exception as exc:
        base.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=8),
                    seconds=round(time.perf_counter() - t0, 3))
        if d.is_main:
            write_json_atomic(json_path, base)
        raise
    base.update(
        status="ok",
        metrics=result.aggregates,
        n_images=len(result.rows),
        per_image_file=csv_path.name,
        statistics=result.statistics,
        timings={"eval_seconds": round(result.seconds, 3),
                 "images_per_s": round((len(result.rows) - result.resumed_from) / max(result.seconds, 1e-9), 2),
                 "resumed_from": result.resumed_from, "pixels": pixels.describe()},
        method_info=method.extra_info(),
    )
    if work_size is not None:  # full-size images: ab predicted at this shorter side, upsampled onto full-res L
        base["work_size"] = work_size
    if d.enabled:
        base["evaluated_by_processes"] = d.world
    if not d.is_main:
        return base
    write_csv_atomic(csv_path, result.rows)
    for k, (item, pred, _) in enumerate(result.samples):
        write_png(samples_dir / f"{k:02d}.png", pred)
    # Ground truths are shared by every method evaluated on the same data and protocol; the folder is
    # named by both so a report never pairs a sample with the ground truth of another dataset version.
    ref_name = f"_reference/{short_hash([base['dataset'].get('content_hash'), base['dataset'].get('eval_protocol')], 10)}"
    for k, (item, _, truth) in enumerate(result.samples):
        if not (json_path.parent / ref_name / f"{k:02d}.png").exists():
            write_png(json_path.parent / ref_name / f"{k:02d}.png", truth)
    base["samples"] = [{"file": f"{samples_dir.name}/{k:02d}.png", "id": item, "reference": f"{ref_name}/{k:02d}.png"}
                       for k, (item, _, _) in enumerate(result.samples)]
    write_json_atomic(json_path, base)
    EvalJournal(work_dir, {}).remove()  # the final files are written: the journal of the run is done
    return base


def _checkpoint_stamp(run_dir: Path) -> str | None:
    """Size and mtime of the trained checkpoint: a retrained method must not resume an old evaluation."""
    from bench.checkpoint import CHECKPOINT

    path = run_dir / CHECKPOINT
    if not path.exists():
        return None
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def record_failure(spec: RunSpec, method: str, split: str, exc: BaseException) -> None:
    """A method that failed to train still leaves a result file saying so (not a silent gap)."""
    json_path, _, _ = eval_paths(spec.results, method, spec.dataset, split, spec.seed)
    write_json_atomic(json_path, {
        "schema_version": SCHEMA_VERSION, "method": method, "dataset": {"name": spec.dataset}, "split": split,
        "seed": spec.seed, "status": "failed", "stage": "train", "error": f"{type(exc).__name__}: {exc}",
        "environment": environment(spec.device), "created": now(),
    })
