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
from typing import Any, Callable, Sequence

from bench import distributed
from bench.checkpoint import TRAIN_JSON, ModelFile, load_trained, run_identity
from bench.config import MethodRecipe
from bench.datasets import DATASETS, ImageSet
from bench.datasets.base import ALL, DatasetError, open_split
from bench.datasets.pixels import pixel_source
from bench.datasets.views import EvalView, eval_scale
from bench.device import pick_device
from bench.distributed import is_main_process
from bench.evaluate import evaluate
from bench.identity import check_tag, identity_hash, method_code, result_identity
from bench.methods import METHODS, Method
from bench.metrics import MetricOptions, build_metrics
from bench.metrics.stats import Bootstrap
from bench.recipes import applicable_overrides, load_recipe, with_prediction
from bench.scoring import OutputWriter, ok_fields, write_result_files
from bench.store import SCHEMA_VERSION, ResultPaths, environment, now, read_json, result_stem, short_hash, write_json_atomic
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
    train_dataset: str | None = None  # --train-on: whose train split trains the methods (None: ``dataset``'s)
    train_root: str | None = None  # --train-root: where that dataset lives
    save_outputs: Path | None = None  # --save-outputs: every output of each evaluation, under this folder
    pixel_cache: bool = True  # --no-cache: decode images instead of reading the memory-mapped pixel cache

    def __post_init__(self):
        check_tag(self.tag)

    @property
    def training_dataset(self) -> str:
        return self.train_dataset or self.dataset

    @property
    def training_root(self) -> str | None:
        """``--train-root``; without it, ``--root`` when the methods train on the dataset they are scored on."""
        if self.train_root is not None:
            return self.train_root
        return self.root if self.training_dataset == self.dataset else None

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

    def saved_model_recipe(self, recipe: MethodRecipe) -> MethodRecipe:
        """A saved model's recipe (``--checkpoint``) predicting as ``--tile``/``--tile-overlap`` and ``--set
        predict.*`` say; other ``--set`` keys are for the methods run beside it (the CLI refuses them without)."""
        predict = {k: v for k, v in self.overrides if k.startswith("predict.")}
        return with_prediction(recipe, self.tile, self.tile_overlap, predict)

    def images(self, split: str, crop: int | None = None) -> ImageSet:
        """A split of the evaluation dataset, with what was skipped/converted/gray and its official status
        reported on stderr (once per process and content)."""
        return _open_reported(self.dataset, split, self.root, self.on_bad_image, crop)

    def train_images(self, crop: int | None = None) -> ImageSet:
        """The train split of the training dataset (``--train-on``, else the evaluation dataset)."""
        return _open_reported(self.training_dataset, "train", self.training_root, self.on_bad_image, crop)


def _open_reported(dataset: str, split: str, root: str | None, on_bad_image: str, crop: int | None) -> ImageSet:
    images = open_split(DATASETS.get(dataset), split, root, on_bad_image=on_bad_image)
    key = (images.name, split, str(images.root), images.identity()["content_hash"], crop)
    if key not in _REPORTED and is_main_process():
        _REPORTED.add(key)
        for line in images.report(crop=crop):
            print(line, file=sys.stderr)
    return images


def needs_training(recipe: MethodRecipe) -> bool:
    return recipe.trainable and METHODS.get(recipe.adapter).needs_training


_REPORTED: set[tuple] = set()


class StageFailed(RuntimeError):
    """``method`` failed at ``stage`` (``data``: reading a split, ``train``, ``evaluate``); ``what`` says it
    in words ("reading samples/train"), ``cause`` is the original error (also ``__cause__``) and
    ``record`` the failure record written for it (None: none was written)."""

    def __init__(self, method: str, stage: str, what: str, cause: BaseException, record: Path | None = None):
        super().__init__(f"{method}: {what} failed: {type(cause).__name__}: {cause}")
        self.method, self.stage, self.what, self.cause, self.record = method, stage, what, cause, record


def train_one(spec: RunSpec, method: str, resume: bool = True) -> TrainOutcome:
    """Train ``method`` on the training dataset's train split (or find it trained). A method with nothing to
    learn reads no data: ``TrainOutcome(status="untrained")``, whose ``run_dir`` means nothing."""
    recipe = spec.recipe(method)
    if not needs_training(recipe):
        return TrainOutcome(spec.results / "train" / recipe.name, "untrained")
    try:
        images = spec.train_images(crop=recipe.train.image_size)
    except Exception as exc:
        raise StageFailed(method, "data", f"reading {spec.training_dataset}/train", exc) from exc
    try:
        return train(
            recipe, images, results=spec.results, seed=spec.seed,
            device=pick_device(spec.device), resume=resume, progress=spec.progress,
            pixel_cache=spec.pixel_cache,
        )
    except Exception as exc:
        raise StageFailed(method, "train", "training", exc) from exc


def evaluate_one(spec: RunSpec, method: str, split: str, metric_names: Sequence[str], outcome: TrainOutcome) -> dict[str, Any]:
    """Evaluate a trained (or training-free) method on ``split`` of the evaluation dataset and write its
    result files."""
    recipe = spec.recipe(method)
    trained = outcome.status != "untrained"
    meta_path = outcome.run_dir / TRAIN_JSON
    train_meta = read_json(meta_path) if trained and meta_path.exists() else None
    train_block = None
    if train_meta is not None:
        train_block = {
            "run_dir": str(outcome.run_dir),
            "identity_hash": train_meta.get("identity_hash"),
            "checkpoint_sha256": train_meta.get("checkpoint_sha256"),
            "steps": train_meta.get("steps"),
            "seconds": train_meta.get("seconds"),  # summed over sessions when resumed
            "resumed_from_step": train_meta.get("resumed_from_step"),
            "images_per_s": train_meta.get("images_per_s"),
            "throughput": train_meta.get("throughput"),  # model FLOPs per image and the fraction of matmul peak
            "processes": (train_meta.get("environment") or {}).get("processes", 1),
            "method_info": train_meta.get("method_info", {}),
        }
    return _evaluate(
        spec, split, metric_names, recipe=recipe, seed=spec.seed, training=(train_meta or {}).get("identity_hash"),
        identity_source=None, trained_on=((train_meta or {}).get("identity") or {}).get("dataset"),
        source={"kind": "trained" if trained else "untrained"}, train_block=train_block,
        load=lambda device: load_trained(recipe, outcome.run_dir, device),
        stamp=_checkpoint_stamp(outcome.run_dir) if trained else None,
    )


def evaluate_model_file(spec: RunSpec, model: ModelFile, split: str, metric_names: Sequence[str]) -> dict[str, Any]:
    """Evaluate a model rebuilt from one checkpoint file (``bench run --checkpoint``): no training data is
    read. Its result is keyed by the file's SHA-256; it records where the weights came from (``source``) and,
    for a model trained by colorbench, the training data it recorded (``trained_on``)."""
    recipe = spec.saved_model_recipe(model.recipe)
    weights = str(model.meta.get("weights") or "trained")
    kind = "checkpoint" if weights == "trained" else "published"
    recorded = model.meta.get("identity") or {}
    seed = int(recorded.get("seed", spec.seed)) if kind == "checkpoint" else spec.seed
    source = {"kind": kind, "path": str(model.path), "sha256": model.sha256, "weights": weights}
    return _evaluate(
        spec, split, metric_names, recipe=recipe, seed=seed, training=model.meta.get("identity_hash"),
        identity_source={"kind": kind, "sha256": model.sha256}, trained_on=recorded.get("dataset") if kind == "checkpoint" else None,
        source=source, train_block=None, load=lambda device: model.method.to(device).eval(),
        stamp=f"sha256:{model.sha256}",
    )


def seen_in_training(spec: RunSpec, split: str, images: ImageSet, trained_on: dict[str, Any] | None) -> str | None:
    """A warning when a model is scored on the images it was trained on: split ``train`` or ``all`` of the
    dataset whose train split (same content hash) trained it. None otherwise."""
    if not trained_on or trained_on.get("name") != images.name or split not in ("train", ALL):
        return None
    if split == "train":
        same = images.identity()["content_hash"] == trained_on.get("content_hash")
    else:
        try:
            same = spec.images("train").identity()["content_hash"] == trained_on.get("content_hash")
        except DatasetError:
            same = False  # no train split here (a folder whose images all hash to test): nothing was seen
    if not same:
        return None
    return (f"scored on {images.name}/{split}, which holds the images it was trained on ({trained_on['name']}/train): "
            "these scores measure how well it fits its training images, not how it colourises new ones; "
            "compare methods on --split test or on a dataset they were not trained on")


def _evaluate(spec: RunSpec, split: str, metric_names: Sequence[str], *, recipe: MethodRecipe, seed: int,
              training: str | None, identity_source: dict[str, Any] | None, trained_on: dict[str, Any] | None,
              source: dict[str, Any], train_block: dict[str, Any] | None, load: Callable[[Any], Method],
              stamp: str | None) -> dict[str, Any]:
    """Score a model on ``split`` and write its result files (a failure record when it fails)."""
    device = pick_device(spec.device)
    d = distributed.init(device)  # under torchrun every process scores a share; rank 0 writes
    try:
        images = spec.images(split)
    except Exception as exc:
        raise StageFailed(recipe.name, "data", f"reading {spec.dataset}/{split}", exc) from exc
    metrics = build_metrics(list(metric_names), MetricOptions(inception_weights=spec.inception_weights))
    protocol = images.card.eval_protocol()
    prediction = {"short_side": images.card.short_side, **recipe.prediction()}
    identity = result_identity(method=recipe.name, recipe=recipe.to_dict(), seed=seed, training=training,
                               data=images.identity(), prediction=prediction,
                               conventions={n: m.convention for n, m in metrics.items()},
                               code=method_code(METHODS.get(recipe.adapter)), source=identity_source)
    paths = ResultPaths(spec.results, images.name, split, result_stem(recipe.name, seed, spec.tag or identity_hash(identity)[:10]))
    base: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "method": recipe.name,
        "adapter": recipe.adapter,
        "result_id": spec.tag or paths.stem.rsplit("-", 1)[1],
        "tag": spec.tag,
        "identity_hash": identity_hash(identity),
        "dataset": images.identity(),
        "split": split,
        "seed": seed,
        "trained_on": trained_on,
        "source": source,
        "recipe": recipe.to_dict(),
        "prediction": prediction,
        "identity": identity,
        "environment": environment(str(device)),
        "created": now(),
        "train": train_block,
    }
    seen = seen_in_training(spec, split, images, trained_on)
    if seen:
        base["warnings"] = [seen]
        if d.is_main:
            print(f"WARNING {recipe.name}: {seen}", file=sys.stderr)
    if d.is_main and spec.tag and paths.json.exists():
        old = read_json(paths.json)
        if old.get("identity_hash") != base["identity_hash"]:
            print(f"{recipe.name}: replacing {paths.json}, tagged {spec.tag!r} but made with other settings", file=sys.stderr)
    # What must match for an interrupted evaluation to be resumed rather than restarted.
    journal_identity = {
        "result": base["identity_hash"], "checkpoint": stamp, "bootstrap": spec.bootstrap,
        "inception_weights": spec.inception_weights, "device": str(device),
    }
    # Saved outputs come from scoring every image in this run: an evaluation that saves them starts over
    # rather than resuming from a journal (the journal keeps scores, not outputs).
    writer = None
    t0 = time.perf_counter()
    try:
        pixels = pixel_source(images, eval_scale(protocol), cache=spec.pixel_cache and recipe.train.pixel_cache,
                              device=device, progress=spec.progress, keep=1)
        view = EvalView(images, protocol, pixels=pixels)
        writer = OutputWriter(spec.save_outputs / images.name / split / paths.stem, view) if spec.save_outputs else None
        method = load(device)
        result = evaluate(method, view, metrics, device=device, batch_size=recipe.train.batch_size, progress=spec.progress,
                          work_dir=None if writer else paths.partial, identity=journal_identity,
                          chunk_images=spec.eval_chunk, bootstrap=Bootstrap(resamples=spec.bootstrap, seed=0),
                          work_size=view.work_size, tile=prediction["tile"], tile_overlap=prediction["tile_overlap"],
                          dist=d, label=f"{recipe.name} on {images.name}/{split}", on_output=writer)
        if writer is not None:
            writer.close()
    except Exception as exc:
        base.update(status="failed", stage="evaluate", error=f"{type(exc).__name__}: {exc}",
                    traceback=traceback.format_exc(limit=8), seconds=round(time.perf_counter() - t0, 3))
        if d.is_main:
            write_json_atomic(paths.failed, base)  # beside a good result of the same settings, never over it
        raise StageFailed(recipe.name, "evaluate", f"evaluation on {images.name}/{split}", exc,
                          paths.failed if d.is_main else None) from exc
    base.update(ok_fields(result), method_info=method.extra_info())
    base["eval_batch_size"] = recipe.train.batch_size if view.fixed_size else 1
    base["timings"]["pixels"] = view.pixels.describe()
    if view.work_size is not None:  # full-size images: ab predicted at this shorter side, upsampled onto full-res L
        base["work_size"] = view.work_size
    if d.enabled:
        base["evaluated_by_processes"] = d.world
    if writer is not None:
        base["outputs"] = {"folder": str(writer.folder), "n": writer.written}
    if not d.is_main:
        return base
    return write_result_files(paths, base, result)


def _result_identity(spec: RunSpec, recipe: MethodRecipe, data: dict[str, Any], training: str | None,
                     prediction: dict[str, Any], conventions: dict[str, str]) -> dict[str, Any]:
    return result_identity(method=recipe.name, recipe=recipe.to_dict(), seed=spec.seed, training=training, data=data,
                           prediction=prediction, conventions=conventions, code=method_code(METHODS.get(recipe.adapter)))


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
        if needs_training(recipe):
            training = short_hash(run_identity(recipe, spec.train_images(), spec.seed), 64)
        metrics = build_metrics(list(metric_names), MetricOptions(inception_weights=spec.inception_weights))
        identity = _result_identity(spec, recipe, images.identity(), training,
                                    {"short_side": images.card.short_side, **recipe.prediction()},
                                    {n: m.convention for n, m in metrics.items()})
    except Exception:
        identity = {"method": recipe.name, "recipe": recipe.to_dict(), "seed": spec.seed,
                    "data": {"name": spec.dataset, "split": split, "root": spec.root}, "incomplete": True}
    paths = ResultPaths(spec.results, spec.dataset, split, result_stem(recipe.name, spec.seed, spec.tag or identity_hash(identity)[:10]))
    write_json_atomic(paths.failed, {
        "schema_version": SCHEMA_VERSION, "method": method, "result_id": spec.tag or paths.stem.rsplit("-", 1)[1],
        "tag": spec.tag, "identity_hash": identity_hash(identity), "identity": identity,
        "dataset": {"name": spec.dataset}, "split": split, "seed": spec.seed, "recipe": recipe.to_dict(),
        "status": "failed", "stage": stage, "error": f"{type(exc).__name__}: {exc}",
        "environment": environment(spec.device), "created": now(),
    })
    return paths.failed
