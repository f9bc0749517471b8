"""``bench train``, ``bench train-all`` and ``bench run``: train what is missing, evaluate, print a table.

Each validates everything it can first (:mod:`bench.cli.validate`): a usage error exits 2 before anything
is trained or written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click

from bench.cli.options import (
    SPLIT_HELP,
    common_run_options,
    dataset_names,
    evaluation_run_options,
    make_spec,
    parse_splits,
    prediction_options,
    split_names,
    tag_option,
    train_on_options,
    user_errors,
)


@click.command()
@click.option("--method", "-m", required=True, help="Method name (bench list methods).")
@common_run_options
@click.option("--resume/--restart", default=True, show_default=True, help="Resume from the run's checkpoint, or start over.")
@click.pass_context
@user_errors
def train(ctx, method, dataset, root, size, overrides, seed, device, progress, on_bad_image, resume) -> None:
    """Train one method on a dataset's train split (resumes an interrupted run)."""
    from bench.cli.validate import validate_run
    from bench.runner import train_one

    spec = make_spec(ctx, dataset, root, size, overrides, seed, device, progress, on_bad_image)
    validate_run(spec, [method], [])  # the train split is checked when the method needs training
    _echo_outcome(method, train_one(spec, method, resume=resume))


def _echo_outcome(method: str, out) -> None:
    from bench.distributed import is_main_process

    if not is_main_process():
        return
    if out.status == "untrained":
        click.echo(f"{method}: needs no training")
    elif out.status == "skipped":
        click.echo(f"{method}: already trained ({out.run_dir})")
    else:
        resumed = f" (resumed from step {out.resumed_from}: {out.steps - out.resumed_from} steps this time)" if out.resumed_from else ""
        click.echo(f"{method}: trained {out.steps} steps{resumed} in {out.seconds:.1f}s ({out.images_per_s or 0:.1f} img/s) -> {out.run_dir}")


@dataclass
class Failure:
    """One stage of one method that failed, and the result files that record it (none: none was written)."""

    method: str
    what: str  # "training", "reading samples/test", "evaluation on samples/test"
    error: str
    records: list[Path] = field(default_factory=list)

    def line(self) -> str:
        where = f"recorded in {', '.join(map(str, self.records))}" if self.records else "no result file was written"
        return f"{self.method}: {self.what} failed ({where}): {self.error}"


def _failure(name: str, exc: Exception) -> tuple[Failure, str, BaseException]:
    """The failure, its stage (``data``/``train``/``evaluate``) and its cause, from what a runner call raised."""
    from bench.runner import StageFailed

    if isinstance(exc, StageFailed):
        records = [exc.record] if exc.record is not None else []
        return Failure(name, exc.what, f"{type(exc.cause).__name__}: {exc.cause}", records), exc.stage, exc.cause
    return Failure(name, "training", f"{type(exc).__name__}: {exc}"), "train", exc


@click.command("train-all")
@click.option("--methods", default=None, help="Comma-separated subset [default: every method that needs training].")
@common_run_options
@click.pass_context
@user_errors
def train_all(ctx, methods, dataset, root, size, overrides, seed, device, progress, on_bad_image) -> None:
    """Train every method that needs training; skip the trained, resume the interrupted."""
    from bench.cli.validate import validate_run
    from bench.config import ConfigError
    from bench.methods import METHODS
    from bench.recipes import method_names
    from bench.registry import UnknownName
    from bench.runner import train_one

    spec = make_spec(ctx, dataset, root, size, overrides, seed, device, progress, on_bad_image)
    names = split_names(methods) or method_names()
    try:
        recipes = {n: spec.recipe(n) for n in names}
    except (UnknownName, ConfigError) as exc:
        raise click.UsageError(str(exc)) from None
    trainable = [n for n, r in recipes.items() if r.trainable and METHODS.get(r.adapter).needs_training]
    if trainable:
        validate_run(spec, trainable, [])
    for name in names:
        if name not in trainable:
            click.echo(f"{name}: needs no training")
    failed = []
    for name in trainable:
        try:
            _echo_outcome(name, train_one(spec, name))
        except Exception as exc:  # one broken method must not stop the others; it is reported and fails the command
            failure, _, _ = _failure(name, exc)
            failed.append(failure)
            click.echo(f"{name}: {failure.what} FAILED: {failure.error}", err=True)
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(trainable)} method(s) failed:\n  "
                                   + "\n  ".join(f"{f.method}: {f.what} failed: {f.error}" for f in failed))


@click.command()
@click.option("--methods", "-m", default=None,
              help="Comma-separated method names [default: gray,kmeans32, or none when --checkpoint is given].")
@evaluation_run_options
@train_on_options
@click.option("--split", type=str, default="test", show_default=True, callback=parse_splits, help=SPLIT_HELP)
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(dir_okay=False), metavar="PATH",
              help="Also score the model saved in this colorbench checkpoint (a run's checkpoint.pt, or one 'bench import' "
                   "wrote); its training data need not be present. Repeatable.")
@click.option("--metrics", "metric_names", default="default", show_default=True,
              help="Comma-separated metric names (bench list metrics); 'default' or 'all' expand.")
@click.option("--inception-weights", type=click.Path(dir_okay=False, exists=True), default=None,
              help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth for IS/FID [default: $BENCH_INCEPTION_WEIGHTS, then the torch hub cache].")
@click.option("--bootstrap", "bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples of every 95% confidence interval (0: none).")
@click.option("--eval-chunk", type=click.IntRange(min=1), default=256, show_default=True,
              help="Images per evaluation chunk: what an interrupted evaluation loses at most, and the share one process scores under torchrun.")
@click.option("--save-outputs", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Write every colourised output as DIR/<dataset>/<split>/<result>/<image>.png, at the resolution "
                   "'bench score' reads back (such an evaluation starts over instead of resuming).")
@prediction_options
@tag_option
@click.pass_context
@user_errors
def run(ctx, methods, dataset, root, size, overrides, seed, device, progress, on_bad_image, train_on, train_root, split,
        checkpoints, metric_names, inception_weights, bootstrap, eval_chunk, save_outputs) -> None:
    """Train what is missing, evaluate, write results and print a table.

    Methods train on the train split of --train-on (default: of each dataset scored) and are scored on
    each --dataset; --checkpoint models are scored as saved.
    """
    import dataclasses

    from bench.cli.validate import check_metrics, unavailable_note, validate_run
    from bench.metrics import parse_metric_names
    from bench.runner import evaluate_model_file, evaluate_one, record_failure, train_one

    datasets = dataset_names(dataset)
    names = split_names(methods) if methods is not None else ([] if checkpoints else ["gray", "kmeans32"])
    if methods is not None and not names:
        raise click.BadParameter("is empty; give method names (bench list methods)", param_hint="'--methods'")
    if train_on in datasets and train_root is None and root is not None:
        # --train-on folder --dataset samples,folder --root DIR: DIR is the folder's, for training too (one training)
        train_root = _root_for(train_on, datasets, root)
    specs = [dataclasses.replace(make_spec(ctx, d, _root_for(d, datasets, root), size, overrides, seed, device, progress,
                                           on_bad_image, train_on=train_on, train_root=train_root, save_outputs=save_outputs),
                                 inception_weights=inception_weights, bootstrap=bootstrap, eval_chunk=eval_chunk)
             for d in datasets]
    metrics = parse_metric_names(metric_names)
    check_metrics(metrics)
    splits = split
    validate_run(specs[0], names, splits, more=specs[1:], allow_no_methods=bool(checkpoints))
    from bench.distributed import is_main_process, launched_by_torchrun

    if save_outputs and launched_by_torchrun():
        raise click.BadParameter("is for one process; run without torchrun to save outputs", param_hint="'--save-outputs'")
    models = _load_checkpoints(checkpoints, specs[0], names)
    main_process = is_main_process()
    note = unavailable_note(metrics, inception_weights) if main_process else None
    if note:
        click.echo(note, err=True)
    results, failed = [], []
    outcomes: dict[tuple, object] = {}  # one training per method and training dataset, however many are scored
    for spec in specs:
        for name in names:
            key = (name, spec.training_dataset, spec.training_root)
            if key not in outcomes:
                try:
                    outcomes[key] = train_one(spec, name)
                except Exception as exc:
                    if launched_by_torchrun():  # the other processes cannot go on without this one: torchrun stops them
                        raise
                    outcomes[key] = exc
                    failure, _, _ = _failure(name, exc)
                    click.echo(f"{name}: {failure.what} FAILED: {failure.error}", err=True)
                else:
                    if outcomes[key].status in ("done", "skipped"):
                        _echo_outcome(name, outcomes[key])
            outcome = outcomes[key]
            if isinstance(outcome, Exception):
                failure, stage, cause = _failure(name, outcome)
                failure.records = [record_failure(spec, name, s, cause, metrics, stage) for s in splits]
                failed.append(failure)
                continue
            for s in splits:
                _collect(lambda: evaluate_one(spec, name, s, metrics, outcome), name, results, failed)
        for model in models:
            for s in splits:
                _collect(lambda: evaluate_model_file(spec, model, s, metrics), model.recipe.name, results, failed)
    if not main_process:  # under torchrun, rank 0 prints the table and wrote the results
        return
    click.echo(format_table(results, metrics))
    for r in results:
        if r.get("outputs"):
            click.echo(f"{r['method']} on {r['dataset']['name']}/{r['split']}: {r['outputs']['n']} outputs in {r['outputs']['folder']}")
    if failed:
        n = len({f.method for f in failed})
        raise click.ClickException(f"{n} of {len(names) + len(models)} method(s) failed:\n  "
                                   + "\n  ".join(f.line() for f in failed))


def _collect(evaluate, name: str, results: list, failed: list) -> None:
    """Run one evaluation; its failure is reported and recorded, and the others go on."""
    from bench.distributed import launched_by_torchrun

    try:
        results.append(evaluate())
    except Exception as exc:
        if launched_by_torchrun():
            raise
        failure, _, _ = _failure(name, exc)
        failed.append(failure)
        click.echo(f"{name}: {failure.what} FAILED: {failure.error}", err=True)


def _root_for(dataset: str, datasets: list[str], root: str | None) -> str | None:
    """``--root`` belongs to the one dataset scored that reads files (or to the only dataset given, which
    validation then checks)."""
    if root is None or len(datasets) == 1:
        return root
    from bench.datasets import DATASETS
    from bench.registry import UnknownName

    try:
        readers = [d for d in datasets if DATASETS.get(d).needs_root]
    except UnknownName as exc:
        raise click.UsageError(str(exc)) from None
    if len(readers) != 1:
        what = f"{', '.join(readers)} all read files" if readers else "none of them reads files"
        raise click.BadParameter(f"one --root serves one dataset, and of {', '.join(datasets)} {what}; score them one "
                                 "at a time, or keep each under $BENCH_DATA/<name>", param_hint="'--root'")
    return root if dataset == readers[0] else None


def _load_checkpoints(paths: tuple[str, ...], spec, names: list[str]) -> list:
    """Every --checkpoint, rebuilt before any work: a file that is missing, not a checkpoint, or needs an adapter
    this installation lacks is a usage error."""
    if not paths:
        return []
    from bench.checkpoint import CheckpointError, load_model_file
    from bench.device import pick_device

    from bench.config import ConfigError
    from bench.recipes import fixed_model_overrides

    fixed = fixed_model_overrides(dict(spec.overrides)) + (["--pretrained"] if spec.pretrained else [])
    if fixed and not names:
        what = "--set " + fixed[0] if fixed[0] != "--pretrained" else fixed[0]
        raise click.UsageError(f"{what}: a saved model's network and training are fixed; only --set predict.tile / "
                               "predict.overlap (or --tile, --tile-overlap) apply to --checkpoint")
    if fixed:
        click.echo(f"note: {', '.join(fixed)} appl{'ies' if len(fixed) == 1 else 'y'} to {', '.join(names)}, "
                   "not to the --checkpoint models (their network and training are fixed)", err=True)
    models = []
    for path in dict.fromkeys(paths):
        try:
            model = load_model_file(Path(path), pick_device(spec.device))
            spec.saved_model_recipe(model.recipe)  # a bad tiling is refused before any work
        except CheckpointError as exc:
            raise click.BadParameter(str(exc), param_hint="'--checkpoint'") from None
        except ConfigError as exc:
            raise click.UsageError(f"--checkpoint {path}: {exc}") from None
        models.append(model)
    return models


ARROWS = {True: "↑", False: "↓", None: "·"}  # · : no better direction (colourfulness)


def _trained_on_text(r: dict) -> str:
    source = r.get("source") or {}
    if source.get("kind") in ("external", "published"):
        return source["kind"]
    trained = r.get("trained_on")
    return f"{trained.get('name')}/{trained.get('split', 'train')}" if trained else "-"


def _n_text(r: dict) -> str:
    source = r.get("source") or {}
    n = str(r.get("n_images", ""))
    scored, expected = source.get("n_scored"), source.get("n_expected")
    if expected is None or scored == expected:
        return n
    # n counts what was scored (tiles, for a tiled protocol); n_scored and n_expected count images
    return f"{scored} of {expected}" if str(scored) == n else f"{n} ({scored} of {expected} images)"


def format_table(results: list[dict], metrics: list[str]) -> str:
    """A plain-text leaderboard of what this invocation produced. A "trained on" column appears when a row
    was trained on another dataset than it is scored on, or came from elsewhere."""
    if not results:
        return "(no results)"
    from bench.metrics import METRICS

    show_trained = any(_trained_on_text(r) not in ("-", f"{r['dataset']['name']}/train") for r in results)
    head = ["method", "dataset", "split", "n"] + (["trained on"] if show_trained else []) + \
        [f"{m} {ARROWS[METRICS.get(m).higher_is_better]}" for m in metrics] + ["train s"]
    rows = []
    for r in results:
        vals = [r["method"], r["dataset"]["name"], r["split"], _n_text(r)] + ([_trained_on_text(r)] if show_trained else [])
        for m in metrics:
            entry = r.get("metrics", {}).get(m, {})
            v = entry.get("mean")
            vals.append(("unavailable" if entry.get("available") is False else "n/a") if v is None else f"{v:.4f}")
        t = (r.get("train") or {}).get("seconds")
        vals.append("-" if t is None else f"{t:.0f}")
        rows.append(vals)
    left = 5 if show_trained else 3
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) if i < left and i != 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])
