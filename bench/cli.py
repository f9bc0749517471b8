"""The ``bench`` command. Heavy imports (torch) live inside command bodies so ``bench --help`` is instant."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

SPLIT_CHOICES = ("test", "train", "all")


def user_errors(fn):
    """Turn the harness's user-facing errors into clean messages: 2 for usage errors, 1 otherwise."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from bench.config import ConfigError
        from bench.datasets.base import DatasetError
        from bench.registry import UnknownName
        from bench.train import CheckpointError, TrainingDiverged

        try:
            return fn(*args, **kwargs)
        except UnknownName as exc:
            raise click.UsageError(str(exc)) from None
        except (ConfigError, DatasetError, CheckpointError, TrainingDiverged) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def _remember_pretrained(ctx: click.Context, param, value: bool) -> None:
    ctx.meta["bench.pretrained"] = value  # read by make_spec; kept out of every command's signature


def common_run_options(fn):
    opts = [
        click.option("--dataset", "-d", default="samples", show_default=True, help="Dataset name (bench list datasets)."),
        click.option("--root", type=click.Path(file_okay=False), default=None, help="Where the dataset lives (default: $BENCH_DATA/<name>)."),
        click.option("--recipe", "size", type=click.Choice(["cpu", "gpu"]), default=None, help="Recipe size [default: gpu on CUDA, else cpu]."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe value, e.g. train.lr=3e-4 or params.width=64."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", default=None, help="cuda, cuda:1, mps or cpu [default: the best available]."),
        click.option("--progress/--no-progress", default=None, help="Progress bars [default: when the terminal is interactive]."),
        click.option("--on-bad-image", type=click.Choice(["skip", "error"]), default="skip", show_default=True,
                     help="Unreadable or too-small image files: skip them (named in the result file and here), or stop."),
        click.option("--pretrained", is_flag=True, expose_value=False, callback=_remember_pretrained,
                     help="ImageNet encoder weights from the torch hub cache for methods that take them (unet, cgan, wgan_gp); never downloads."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def make_spec(ctx: click.Context, dataset, root, size, overrides, seed, device, progress, on_bad_image="skip"):
    from bench.config import parse_overrides
    from bench.datasets import DATASETS
    from bench.runner import RunSpec

    DATASETS.get(dataset)  # unknown names fail here, before any work
    if size is None:
        import torch

        size = "gpu" if (device or "").startswith("cuda") or (device is None and torch.cuda.is_available()) else "cpu"
    return RunSpec(
        dataset=dataset, root=root, seed=seed, size=size, overrides=tuple(parse_overrides(overrides).items()),
        device=device, results=ctx.obj["results"], progress=progress, on_bad_image=on_bad_image,
        pretrained=ctx.meta.get("bench.pretrained", False),
    )


def split_names(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--results", type=click.Path(file_okay=False), default=None, help="Results folder [default: $BENCH_RESULTS or ./results].")
@click.version_option(package_name="colorbench")
@click.pass_context
def main(ctx: click.Context, results: str | None) -> None:
    """colorbench: train, score and compare image colourisation methods side by side."""
    from bench.sysutil import keep_freed_memory

    keep_freed_memory()
    ctx.ensure_object(dict)
    ctx.obj["results"] = Path(results or os.environ.get("BENCH_RESULTS", "results"))


@main.command("list")
@click.argument("what", type=click.Choice(["methods", "datasets", "metrics"]), default="methods")
@user_errors
def list_cmd(what: str) -> None:
    """List registered methods, datasets or metrics with a one-line description."""
    rows: list[tuple[str, str]] = []
    if what == "methods":
        from bench.config import load_recipe, method_names

        for name in method_names():
            r = load_recipe(name)
            kind = "no training" if not r.trainable else f"{r.training} recipe"
            rows.append((name, f"{r.description or r.adapter} [{r.adapter}; {kind}]"))
    elif what == "datasets":
        from bench.datasets import DATASETS

        rows = [(e.name, e.description + ("" if e.source == "builtin" else f" (plugin: {e.source})")) for e in DATASETS.entries()]
    else:
        from bench.metrics import METRICS

        for e in METRICS.entries():
            metric = e.obj()
            ok, why = metric.available()
            arrow = {True: "higher is better", False: "lower is better", None: "no better direction"}[metric.higher_is_better]
            kind = "per image" if metric.per_image else "set-level"
            weights = f"; needs {metric.needs_weights}" if metric.needs_weights else ""
            status = "available" if ok else f"UNAVAILABLE: {why}"
            rows.append((e.name, f"{e.description} ({arrow}; {kind}{weights}) [{status}]"))
    width = max((len(n) for n, _ in rows), default=0)
    for name, desc in rows:
        click.echo(f"{name:<{width}}  {desc}")


@main.command()
@click.option("--method", "-m", required=True, help="Method name (bench list methods).")
@common_run_options
@click.option("--resume/--restart", default=True, show_default=True, help="Resume from the run's checkpoint, or start over.")
@click.pass_context
@user_errors
def train(ctx, method, dataset, root, size, overrides, seed, device, progress, on_bad_image, resume) -> None:
    """Train one method on a dataset's train split (resumes an interrupted run)."""
    from bench.runner import train_one

    spec = make_spec(ctx, dataset, root, size, overrides, seed, device, progress, on_bad_image)
    spec.recipe(method)
    out = train_one(spec, method, resume=resume)
    _echo_outcome(method, out)


def _echo_outcome(method: str, out) -> None:
    from bench.distributed import is_main_process

    if not is_main_process():
        return
    if out.status == "untrained":
        click.echo(f"{method}: needs no training")
    elif out.status == "skipped":
        click.echo(f"{method}: already trained ({out.run_dir})")
    else:
        click.echo(f"{method}: trained {out.steps} steps in {out.seconds:.1f}s ({out.images_per_s or 0:.1f} img/s) -> {out.run_dir}")


@main.command("train-all")
@click.option("--methods", default=None, help="Comma-separated subset [default: every method that needs training].")
@common_run_options
@click.pass_context
@user_errors
def train_all(ctx, methods, dataset, root, size, overrides, seed, device, progress, on_bad_image) -> None:
    """Train every method that needs training; skip the trained, resume the interrupted."""
    from bench.config import method_names
    from bench.runner import train_one

    spec = make_spec(ctx, dataset, root, size, overrides, seed, device, progress, on_bad_image)
    names = split_names(methods) or method_names()
    recipes = {n: spec.recipe(n) for n in names}
    failed = []
    for name, recipe in recipes.items():
        if not recipe.trainable:
            continue
        try:
            _echo_outcome(name, train_one(spec, name))
        except Exception as exc:  # one broken method must not stop the others; it is reported and fails the command
            failed.append(name)
            click.echo(f"{name}: FAILED: {type(exc).__name__}: {exc}", err=True)
    if failed:
        raise click.ClickException(f"training failed for: {', '.join(failed)}")


@main.command()
@click.option("--methods", "-m", default="gray,kmeans32", show_default=True, help="Comma-separated method names.")
@common_run_options
@click.option("--split", type=click.Choice(SPLIT_CHOICES), default="test", show_default=True, help="Split(s) to evaluate.")
@click.option("--metrics", "metric_names", default="default", show_default=True,
              help="Comma-separated metric names (bench list metrics); 'default' or 'all' expand.")
@click.option("--inception-weights", type=click.Path(dir_okay=False), default=None,
              help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth for IS/FID [default: $BENCH_INCEPTION_WEIGHTS, then the torch hub cache].")
@click.option("--bootstrap", "bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples of every 95% confidence interval (0: none).")
@click.option("--eval-chunk", type=click.IntRange(min=1), default=256, show_default=True,
              help="Images per evaluation chunk: what an interrupted evaluation loses at most, and the share one process scores under torchrun.")
@click.pass_context
@user_errors
def run(ctx, methods, dataset, root, size, overrides, seed, device, progress, on_bad_image, split, metric_names,
        inception_weights, bootstrap, eval_chunk) -> None:
    """Train what is missing, evaluate, write results and print a table."""
    import dataclasses

    from bench.metrics import METRICS, MetricOptions, availability, build_metrics, parse_metric_names
    from bench.runner import evaluate_one, record_failure, train_one

    spec = make_spec(ctx, dataset, root, size, overrides, seed, device, progress, on_bad_image)
    spec = dataclasses.replace(spec, inception_weights=inception_weights, bootstrap=bootstrap, eval_chunk=eval_chunk)
    names = split_names(methods)
    if not names:
        raise click.UsageError("--methods is empty")
    metrics = parse_metric_names(metric_names)
    if not metrics:
        raise click.UsageError("--metrics is empty")
    for m in metrics:
        METRICS.get(m)
    for m, why in availability(build_metrics(metrics, MetricOptions(inception_weights=inception_weights))).items():
        click.echo(f"{m}: unavailable, reported as such in the results ({why})", err=True)
    for n in names:
        spec.recipe(n)  # every name and recipe is checked before any work starts
    splits = ["train", "test"] if split == "all" else [split]
    results, failed = [], []
    from bench.distributed import is_main_process, launched_by_torchrun

    main_process = is_main_process()
    for name in names:
        try:
            outcome = train_one(spec, name)
        except Exception as exc:
            if launched_by_torchrun():  # the other processes cannot go on without this one: torchrun stops them
                raise
            failed.append(name)
            click.echo(f"{name}: training FAILED: {type(exc).__name__}: {exc}", err=True)
            for s in splits:
                record_failure(spec, name, s, exc)
            continue
        for s in splits:
            try:
                results.append(evaluate_one(spec, name, s, metrics, outcome))
            except Exception as exc:
                if launched_by_torchrun():
                    raise
                failed.append(name)
                click.echo(f"{name}: evaluation on {s} FAILED: {type(exc).__name__}: {exc}", err=True)
    if not main_process:  # under torchrun, rank 0 prints the table and wrote the results
        return
    click.echo(format_table(results, metrics))
    if failed:
        raise click.ClickException(f"failed: {', '.join(sorted(set(failed)))} (see the result files under {spec.results})")


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


if __name__ == "__main__":
    # `python -m bench.cli`: run the importable module's group, which has the commands below attached
    # (their modules import bench.cli; attaching them from __main__ would import it circularly).
    from bench.cli import main as _main

    sys.exit(_main())

# Command groups live in their own modules (no torch import at module level) so `bench --help` stays fast.
from bench.cli_colorize import colorize  # noqa: E402
from bench.cli_compare import compare  # noqa: E402
from bench.cli_data import data  # noqa: E402
from bench.cli_report import check, report  # noqa: E402

for _command in (colorize, compare, data, report, check):
    main.add_command(_command)
