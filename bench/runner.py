"""Orchestration behind the CLI: train what is missing, evaluate, write results (failures included).

Each result is written under a name made from its identity (:mod:`bench.identity`): results of different
settings live side by side, re-running the same settings replaces (or resumes) only that result, and a
failure is written beside a good result (``.failed.json``), never over it."""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bench import distributed
from bench.checkpoint import TRAIN_JSON, load_trained, run_identity
from bench.config import MethodRecipe
from bench.datasets import DATASETS, ImageSet
from bench.datasets.base import open_split
from bench.datasets.io import write_png
from bench.datasets.views import EvalView
from bench.device import pick_device
from bench.distributed import is_main_process
from bench.evaluate import EvalJournal, evaluate
from bench.identity import check_tag, identity_hash, method_code, result_identity
from bench.methods import METHODS
from bench.metrics import MetricOptions, build_metrics
from bench.metrics.stats import Bootstrap
from bench.recipes import applicable_overrides, load_recipe
from bench.store import (
    SCHEMA_VERSION, ResultPaths, environment, now, read_json, result_stem, short_hash, write_csv_atomic, write_json_atomic,
)
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
    tag: str | None = None  # --tag: names the result files instead of the identity hash
    tile: int | None = None  # --tile: predict in tiles of this size (0: whole image); None: the recipe's
    tile_overlap: int | None = None  # --tile-overlap

    def __post_init__(self):
        check_tag(self.tag)

    def recipe(self, method: str) -> MethodRecipe:
        """The method's recipe with the ``--set`` values; ``params.*`` values go to the methods whose
        parameters have them (``bench train-all --set params.width=16`` leaves ``gray`` alone)."""
        overrides = applicable_overrides(method, dict(self.overrides))
        if self.tile is not None:
            overrides.setdefault("predict.tile", str(self.tile) if self.tile else "null")
        if self.tile_overlap is not None:
            overrides.setdefault("predict.overlap", str(self.tile_overlap))
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


class StageFailed(RuntimeError):
    """``method`` failed at ``stage`` (``data``: reading a split, ``train``, ``evaluate``); ``what`` says it
    in words ("reading samples/train"), ``cause`` is the original error (also ``__cause__``) and
    ``record`` the failure record written for it (None: none was written)."""

    def __init__(self, method: str, stage: str, what: str, cause: BaseException, record: Path | None = None):
        super().__init__(f"{method}: {what} failed: {type(cause).__name__}: {cause}")
        self.method, self.stage, self.what, self.cause, self.record = method, stage, what, cause, record


def train_one(spec: RunSpec, method: str, resume: bool = True) -> TrainOutcome:
    recipe = spec.recipe(method)
    try:
        images = spec.images("train", crop=recipe.train.image_size if recipe.trainable else None)
    except Exception as exc:
        raise StageFailed(method, "data", f"reading {spec.dataset}/train", exc) from exc
    try:
        return train(
            recipe, images, results=spec.results, seed=spec.seed,
            device=pick_device(spec.device), resume=resume, progress=spec.progress,
        )
    except Exception as exc:
        raise StageFailed(method, "train", "training", exc) from exc


def evaluate_one(spec: RunSpec, method: str, split: str, metric_names: Sequence[str], outcome: TrainOutcome) -> dict[str, Any]:
    """Evaluate a trained (or training-free) method on ``split`` and write its result files."""
    recipe = spec.recipe(method)
    device = pick_device(spec.device)
    d = distributed.init(device)  # under torchrun every process scores a share; rank 0 writes
    try:
        images = spec.images(split)
    except Exception as exc:
        raise StageFailed(recipe.name, "data", f"reading {spec.dataset}/{split}", exc) from exc
    train_meta = read_json(outcome.run_dir / TRAIN_JSON) if (outcome.run_dir / TRAIN_JSON).exists() else None
    metrics = build_metrics(list(metric_names), MetricOptions(inception_weights=spec.inception_weights))
    view = EvalView(images)
    prediction = {"short_side": images.card.short_side, **recipe.prediction()}
    identity = _result_identity(spec, recipe, images.identity(), (train_meta or {}).get("identity_hash"), prediction,
                                {n: m.convention for n, m in metrics.items()})
    paths = _result_paths(spec, recipe, images.name, split, identity)
    base: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "method": recipe.name,
        "adapter": recipe.adapter,
        "result_id": spec.tag or paths.stem.rsplit("-", 1)[1],
        "tag": spec.tag,
        "identity_hash": identity_hash(identity),
        "dataset": images.identity(),
        "split": split,
        "seed": spec.seed,
        "recipe": recipe.to_dict(),
        "prediction": prediction,
        "identity": identity,
        "environment": environment(str(device)),
        "created": now(),
    }
    if train_meta is not None:
        base["train"] = {
            "run_dir": str(outcome.run_dir),
            "identity_hash": train_meta.get("identity_hash"),
            "checkpoint_sha256": train_meta.get("checkpoint_sha256"),
            "steps": train_meta.get("steps"),
            "seconds": train_meta.get("seconds"),
            "images_per_s": train_meta.get("images_per_s"),
            "throughput": train_meta.get("throughput"),  # model FLOPs per image and the fraction of matmul peak
            "processes": (train_meta.get("environment") or {}).get("processes", 1),
            "method_info": train_meta.get("method_info", {}),
        }
    else:
        base["train"] = None
    if d.is_main and spec.tag and paths.json.exists():
        old = read_json(paths.json)
        if old.get("identity_hash") != base["identity_hash"]:
            print(f"{recipe.name}: replacing {paths.json}, tagged {spec.tag!r} but made with other settings", file=sys.stderr)
    # What must match for an interrupted evaluation to be resumed rather than restarted.
    journal_identity = {
        "result": base["identity_hash"], "checkpoint": _checkpoint_stamp(outcome.run_dir), "bootstrap": spec.bootstrap,
        "inception_weights": spec.inception_weights, "device": str(device),
    }
    t0 = time.perf_counter()
    try:
        method = load_trained(recipe, outcome.run_dir, device)
        result = evaluate(method, view, metrics, device=device, batch_size=recipe.train.batch_size, progress=spec.progress,
                          work_dir=paths.partial, identity=journal_identity, chunk_images=spec.eval_chunk,
                          bootstrap=Bootstrap(resamples=spec.bootstrap, seed=0), work_size=view.work_size,
                          tile=prediction["tile"], tile_overlap=prediction["tile_overlap"], dist=d,
                          label=f"{recipe.name} on {images.name}/{split}")
    except Exception as exc:
        base.update(status="failed", stage="evaluate", error=f"{type(exc).__name__}: {exc}",
                    traceback=traceback.format_exc(limit=8), seconds=round(time.perf_counter() - t0, 3))
        if d.is_main:
            write_json_atomic(paths.failed, base)  # beside a good result of the same settings, never over it
        raise StageFailed(recipe.name, "evaluate", f"evaluation on {images.name}/{split}", exc,
                          paths.failed if d.is_main else None) from exc
    base.update(
        status="ok",
        metrics=result.aggregates,
        n_images=len(result.rows),
        per_image_file=paths.csv.name,
        statistics=result.statistics,
        timings={"eval_seconds": round(result.seconds, 3),
                 "images_per_s": round((len(result.rows) - result.resumed_from) / max(result.seconds, 1e-9), 2),
                 "resumed_from": result.resumed_from},
        method_info=method.extra_info(),
    )
    if view.work_size is not None:  # full-size images: ab predicted at this shorter side, upsampled onto full-res L
        base["work_size"] = view.work_size
    if d.enabled:
        base["evaluated_by_processes"] = d.world
    if not d.is_main:
        return base
    write_csv_atomic(paths.csv, result.rows)
    for k, (item, pred, _) in enumerate(result.samples):
        write_png(paths.samples / f"{k:02d}.png", pred)
    # Ground truths are shared by every method evaluated on the same data and protocol; the folder is
    # named by both so a report never pairs a sample with the ground truth of another dataset version.
    ref_name = f"_reference/{short_hash([base['dataset'].get('content_hash'), base['dataset'].get('eval_protocol')], 10)}"
    for k, (item, _, truth) in enumerate(result.samples):
        if not (paths.folder / ref_name / f"{k:02d}.png").exists():
            write_png(paths.folder / ref_name / f"{k:02d}.png", truth)
    base["samples"] = [{"file": f"{paths.samples.name}/{k:02d}.png", "id": item, "reference": f"{ref_name}/{k:02d}.png"}
                       for k, (item, _, _) in enumerate(result.samples)]
    write_json_atomic(paths.json, base)
    paths.failed.unlink(missing_ok=True)  # an earlier failure of these settings is superseded
    EvalJournal(paths.partial, {}).remove()  # the final files are written: the journal of the run is done
    return base


def _result_identity(spec: RunSpec, recipe: MethodRecipe, data: dict[str, Any], training: str | None,
                     prediction: dict[str, Any], conventions: dict[str, str]) -> dict[str, Any]:
    return result_identity(method=recipe.name, recipe=recipe.to_dict(), seed=spec.seed, training=training, data=data,
                           prediction=prediction, conventions=conventions, code=method_code(METHODS.get(recipe.adapter)))


def _result_paths(spec: RunSpec, recipe: MethodRecipe, dataset: str, split: str, identity: dict[str, Any]) -> ResultPaths:
    return ResultPaths(spec.results, dataset, split, result_stem(recipe.name, spec.seed, spec.tag or identity_hash(identity)[:10]))


def _checkpoint_stamp(run_dir: Path) -> str | None:
    """Size and mtime of the trained checkpoint: a retrained method must not resume an old evaluation."""
    from bench.checkpoint import CHECKPOINT

    path = run_dir / CHECKPOINT
    if not path.exists():
        return None
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def record_failure(spec: RunSpec, method: str, split: str, exc: BaseException, metric_names: Sequence[str] = (),
                   stage: str = "train") -> Path:
    """A method that failed before evaluation (``stage``: ``data`` or ``train``) still leaves a result file
    saying so (not a silent gap): beside the good result of the same settings (``<stem>.failed.json``), never
    over it; returns its path. When the settings cannot be identified in full (the data cannot be read), the
    file is named by what is known."""
    recipe = spec.recipe(method)
    try:
        images = spec.images(split)
        training = None
        if recipe.trainable and METHODS.get(recipe.adapter).needs_training:
            training = short_hash(run_identity(recipe, spec.images("train"), spec.seed), 64)
        metrics = build_metrics(list(metric_names), MetricOptions(inception_weights=spec.inception_weights))
        identity = _result_identity(spec, recipe, images.identity(), training,
                                    {"short_side": images.card.short_side, **recipe.prediction()},
                                    {n: m.convention for n, m in metrics.items()})
    except Exception:
        identity = {"method": recipe.name, "recipe": recipe.to_dict(), "seed": spec.seed,
                    "data": {"name": spec.dataset, "split": split, "root": spec.root}, "incomplete": True}
    paths = _result_paths(spec, recipe, spec.dataset, split, identity)
    write_json_atomic(paths.failed, {
        "schema_version": SCHEMA_VERSION, "method": method, "result_id": spec.tag or paths.stem.rsplit("-", 1)[1],
        "tag": spec.tag, "identity_hash": identity_hash(identity), "identity": identity,
        "dataset": {"name": spec.dataset}, "split": split, "seed": spec.seed, "recipe": recipe.to_dict(),
        "status": "failed", "stage": stage, "error": f"{type(exc).__name__}: {exc}",
        "environment": environment(spec.device), "created": now(),
    })
    return paths.failed
