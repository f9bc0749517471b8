"""``bench train``, ``bench train-all`` and ``bench run``: train what is missing, evaluate, print a table."""

from __future__ import annotations

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


@click.command("train-all")
@click.option("--methods", default=None, help="Comma-separated subset [default: every method that needs training].")
@common_run_options
@click.pass_context
@user_errors
def train_all(ctx, methods, dataset, root, size, overrides, seed, device, progress, on_bad_image) -> None:
    """Train every method that needs training; skip the trained, resume the interrupted."""
    from bench.recipes import method_names
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


@click.command()
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
@prediction_options
@tag_option
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
                record_failure(spec, name, s, exc, metrics)
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
