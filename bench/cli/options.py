"""What the ``bench`` subcommands share: the run options, turning them into a RunSpec, and user errors.

Subcommand modules import this one, never the CLI root (:mod:`bench.cli`), which imports them.
No torch at import time: ``bench --help`` stays instant."""

from __future__ import annotations

import functools

import click

SPLIT_CHOICES = ("test", "train", "all")


def user_errors(fn):
    """Turn the harness's user-facing errors into clean messages: 2 for usage errors, 1 otherwise."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from bench.checkpoint import CheckpointError
        from bench.config import ConfigError
        from bench.datasets.base import DatasetError
        from bench.registry import UnknownName
        from bench.train import TrainingDiverged

        try:
            return fn(*args, **kwargs)
        except UnknownName as exc:
            raise click.UsageError(str(exc)) from None
        except (ConfigError, DatasetError, CheckpointError, TrainingDiverged) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def _remember_pretrained(ctx: click.Context, param, value: bool) -> None:
    ctx.meta["bench.pretrained"] = value  # read by make_spec; kept out of every command's signature


def _remember_no_cache(ctx: click.Context, param, value: bool) -> None:
    ctx.meta["bench.no_cache"] = value  # read by make_spec, as --pretrained


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
        click.option("--no-cache", is_flag=True, expose_value=False, callback=_remember_no_cache,
                     help="Decode images for every crop instead of reading the pixel cache ($BENCH_CACHE/pixels; same crops, slower)."),
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
        pretrained=ctx.meta.get("bench.pretrained", False), pixel_cache=not ctx.meta.get("bench.no_cache", False),
    )


def split_names(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]
