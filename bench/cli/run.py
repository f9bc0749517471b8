"""``bench train``, ``bench train-all`` and ``bench run``: train what is missing, evaluate, print a table.

Each validates everything it can first (:mod:`bench.cli.validate`): a usage error exits 2 before anything
is trained or written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click

from bench.cli.options import SPLIT_CHOICES, common_run_options, make_spec, prediction_options, split_names, tag_option, user_errors


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
    validate_run(spec, [method], ["train"])
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
        validate_run(spec, trainable, ["train"])
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
@click.option("--methods", "-m", default="gray,kmeans32", show_default=True, help="Comma-separated method names.")
@common_run_options
@click.option("--split", type=click.Choice(SPLIT_CHOICES), default="test", show_default=True, help="Split(s) to evaluate.")
@click.option("--metrics", "metric_names", default="default", show_default=True,
              help="Comma-separated metric names (bench list metrics); 'default' or 'all' expand.")
@click.option("--inception-weights", type=click.Path(dir_okay=False, exists=True), default=None,
              help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth for IS/FID [default: $BENCH_INCEPTION_WEIGHTS, then the torch hub cache].")
@click.option("--bootstrap", "bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples of every 95% confidence interval (0: none).")
@click.option("--eval-chunk", type=click.IntRange(min=1), default=256, show_default=True,
              help="Images per evaluation chunk: what an interrupted evaluation loses at most, and the share one process scores under torchrun.")
@prediction_options
@tag_option
@click.pass_context
@user_errors
def run(ctx, methods, dataset, root, size, overrides, seed, device, progress, on_bad_image, split, metric_names,
        inception_weights, bootstrap, eval_chunk) -> None:
    """Train what is missing, evaluate, write results and print a table."""
    import dataclasses

    from bench.cli.validate import check_metrics, unavailable_note, validate_run
    from bench.metrics import parse_metric_names
    from bench.runner import evaluate_one, record_failure, train_one

    spec = make_spec(ctx, dataset, root, size, overrides, seed, device, progress, on_bad_image)
    spec = dataclasses.replace(spec, inception_weights=inception_weights, bootstrap=bootstrap, eval_chunk=eval_chunk)
    names = split_names(methods)
    metrics = parse_metric_names(metric_names)
    check_metrics(metrics)
    splits = ["train", "test"] if split == "all" else [split]
    validate_run(spec, names, ["train", *splits])  # every name, value, path and split: before any work
    from bench.distributed import is_main_process, launched_by_torchrun

    main_process = is_main_process()
    note = unavailable_note(metrics, inception_weights) if main_process else None
    if note:
        click.echo(note, err=True)
    results, failed = [], []
    for name in names:
        try:
            outcome = train_one(spec, name)
        except Exception as exc:
            if launched_by_torchrun():  # the other processes cannot go on without this one: torchrun stops them
                raise
            failure, stage, cause = _failure(name, exc)
            failure.records = [record_failure(spec, name, s, cause, metrics, stage) for s in splits]
            failed.append(failure)
            click.echo(f"{name}: {failure.what} FAILED: {failure.error}", err=True)
            continue
        if outcome.status in ("done", "skipped"):
            _echo_outcome(name, outcome)
        for s in splits:
            try:
                results.append(evaluate_one(spec, name, s, metrics, outcome))
            except Exception as exc:
                if launched_by_torchrun():
                    raise
                failure, _, _ = _failure(name, exc)
                failed.append(failure)
                click.echo(f"{name}: {failure.what} FAILED: {failure.error}", err=True)
    if not main_process:  # under torchrun, rank 0 prints the table and wrote the results
        return
    click.echo(format_table(results, metrics))
    if failed:
        n = len({f.method for f in failed})
        raise click.ClickException(f"{n} of {len(names)} method(s) failed:\n  "
                                   + "\n  ".join(f.line() for f in failed))


ARROWS = {True: "↑", False: "↓", None: "·"}  # · : no better direction (colourfulness)


def format_table(results: list[dict], metrics: list[str]) -> str:
    """A plain-text leaderboard of what this invocation produced."""
    if not results:
        return "(no results)"
    from bench.metrics import METRICS

    head = ["method", "dataset", "split", "n"] + [f"{m} {ARROWS[METRICS.get(m).higher_is_better]}" for m in metrics] + ["train s"]
    rows = []
    for r in results:
        vals = [r["method"], r["dataset"]["name"], r["split"], str(r.get("n_images", ""))]
        for m in metrics:
            entry = r.get("metrics", {}).get(m, {})
            v = entry.get("mean")
            vals.append(("unavailable" if entry.get("available") is False else "n/a") if v is None else f"{v:.4f}")
        t = (r.get("train") or {}).get("seconds")
        vals.append("-" if t is None else f"{t:.0f}")
        rows.append(vals)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])
