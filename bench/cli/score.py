"""``bench score``: score a folder of outputs made elsewhere against a dataset split, as a method run here
is scored (see :mod:`bench.external`). No torch at import time."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.options import SPLIT_CHOICES, user_errors


def _check_name(ctx: click.Context, param, value: str) -> str:
    from bench.identity import TAG_PATTERN
    from bench.recipes import method_names

    if not TAG_PATTERN.fullmatch(value):
        raise click.BadParameter("use 1-40 letters, digits, '-' or '_': the name becomes part of the result file name")
    if value in method_names():
        raise click.BadParameter(f"{value!r} is a colorbench method; name the system that made the outputs "
                                 f"(e.g. {value}-paper), so its rows are never mistaken for the method run here")
    return value


@click.command()
@click.option("--predictions", required=True, type=click.Path(file_okay=False, exists=True), metavar="DIR",
              help="Folder of colourised images, one per image of the split, named by its id (its relative path "
                   "without suffix); subfolders allowed.")
@click.option("--dataset", "-d", default="samples", show_default=True, help="Dataset whose ground truth they are scored against.")
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="Where the dataset lives, for datasets that read files (default: $BENCH_DATA/<name>).")
@click.option("--split", type=click.Choice(SPLIT_CHOICES), default="test", show_default=True,
              help="Split the outputs are of (all: every image as one set).")
@click.option("--name", required=True, callback=_check_name, help="Name of the system that made the outputs (the result's method).")
@click.option("--about", default=None, help="Where the outputs come from (paper, release, command): recorded as their provenance.")
@click.option("--metrics", "metric_names", default="default", show_default=True,
              help="Comma-separated metric names (bench list metrics); 'default' or 'all' expand.")
@click.option("--inception-weights", type=click.Path(dir_okay=False, exists=True), default=None,
              help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth for IS/FID.")
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples of every 95% confidence interval (0: none).")
@click.option("--on-bad-image", type=click.Choice(["skip", "error"]), default="error", show_default=True,
              help="Missing, extra, unreadable or wrongly sized outputs (and bad dataset files): stop naming them all, "
                   "or leave those images out (counted: the result says n of N).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Items per scoring batch (fixed-size protocols); the same as the run's reproduces its numbers bit for bit.")
@click.option("--device", default=None, help="cuda, cuda:1, mps or cpu [default: cpu].")
@click.option("--progress/--no-progress", default=None, help="Progress bars, or none [default: bars on a terminal].")
@click.pass_context
@user_errors
def score(ctx, predictions, dataset, root, split, name, about, metric_names, inception_weights, bootstrap, on_bad_image,
          batch_size, device, progress) -> None:
    """Score outputs made elsewhere (a paper's released results, another tool's) against a dataset split.

    The outputs go through the dataset's evaluation protocol as the ground truth does and are scored by
    the same code as `bench run`; the result (method NAME, marked external, with its provenance) is
    written beside the others and appears on every leaderboard. Each output's lightness is checked against
    its input's: a colouriser must not change L.
    """
    from bench.cli.validate import check_device, check_metrics, check_root, check_split_files, unavailable_note
    from bench.metrics import parse_metric_names

    metrics = parse_metric_names(metric_names)
    check_metrics(metrics)
    check_device(device)
    from bench.datasets import DATASETS
    from bench.registry import UnknownName

    try:
        DATASETS.get(dataset)
    except UnknownName as exc:
        raise click.UsageError(str(exc)) from None
    check_root(dataset, root)
    check_split_files(dataset, root, on_bad_image, [split])

    from bench.cli.run import format_table
    from bench.datasets.base import open_split
    from bench.datasets.views import EvalView
    from bench.external import OutputsError, ScoreSettings, check_outputs, score_folder

    images = open_split(DATASETS.get(dataset), split, root, on_bad_image=on_bad_image)
    try:
        check = check_outputs(Path(predictions), images, EvalView(images), on_bad_image)  # before any work
    except OutputsError as exc:
        raise click.UsageError(str(exc)) from None
    note = unavailable_note(metrics, inception_weights)
    if note:
        click.echo(note, err=True)
    settings = ScoreSettings(metrics=tuple(metrics), results=Path(ctx.find_root().obj["results"]), device=device or "cpu",
                             batch_size=batch_size, bootstrap=bootstrap, inception_weights=inception_weights, progress=progress)
    result = score_folder(Path(predictions), images=images, name=name, about=about, on_bad_image=on_bad_image,
                          settings=settings, check=check)
    click.echo(format_table([result], metrics))
    click.echo(f"wrote {settings.results / 'eval' / dataset / split / result['per_image_file'].removesuffix('.csv')}.json")
    light = result.get("lightness") or {}
    if light.get("available", True):
        click.echo(f"lightness: PSNR of L against the input's {light['mean_db']:.1f} dB on average, lowest "
                   f"{light['min_db']:.1f} dB; {light['n_flagged']} output(s) below {light['threshold_db']:g} dB")
