"""What the ``bench`` subcommands share: the run options, turning them into a RunSpec, and user errors.

Subcommand modules import this one, never the CLI root (:mod:`bench.cli`), which imports them.
No torch at import time: ``bench --help`` stays instant.

Exit statuses (README "Exit statuses"): 0 success; 1 the work ran and something failed (a method, a
check, a download); 2 a usage error, found before any work (``click.UsageError`` and its kin); 130 Ctrl-C.
"""

from __future__ import annotations

import functools
import sys

import click

SPLIT_CHOICES = ("test", "train", "all")
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

# The harness's user-facing errors, by module: a message and exit 1 when they happen during the work
# (before it, validation turns them into usage errors). Looked up only in modules already imported, so
# catching them imports nothing (a module not loaded cannot have raised its error).
_USAGE_ERRORS = {"bench.registry": ("UnknownName",), "bench.config": ("ConfigError",)}
_RUN_ERRORS = {"bench.datasets.base": ("DatasetError",), "bench.checkpoint": ("CheckpointError",),
               "bench.train": ("TrainingDiverged",)}


def _loaded(table: dict[str, tuple[str, ...]]) -> tuple[type, ...]:
    return tuple(getattr(sys.modules[m], n) for m, names in table.items() if m in sys.modules for n in names)


def is_user_error(exc: BaseException) -> bool:
    """An error whose message is meant for a person (no traceback needed)."""
    return isinstance(exc, _loaded(_USAGE_ERRORS) + _loaded(_RUN_ERRORS))


def user_errors(fn):
    """Turn the harness's user-facing errors into clean messages: 2 for usage errors, 1 otherwise.

    A method that failed at a stage (``bench.runner.StageFailed``) of a user-facing cause gives its message
    and 1; any other cause keeps its traceback (a bug to report)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except Exception as exc:
            if isinstance(exc, _loaded(_USAGE_ERRORS)):
                raise click.UsageError(str(exc)) from None
            if isinstance(exc, _loaded(_RUN_ERRORS)):
                raise click.ClickException(str(exc)) from None
            runner = sys.modules.get("bench.runner")
            if runner is not None and isinstance(exc, runner.StageFailed) and is_user_error(exc.cause):
                raise click.ClickException(str(exc)) from None
            raise

    return wrapper


def _remember_pretrained(ctx: click.Context, param, value: bool) -> None:
    ctx.meta["bench.pretrained"] = value  # read by make_spec; kept out of every command's signature


def _remember(key: str):
    def callback(ctx: click.Context, param, value):
        ctx.meta[key] = value  # read by make_spec; kept out of every command's signature
    return callback


def _check_tag(ctx: click.Context, param, value: str | None) -> str | None:
    if value is not None:
        from bench.identity import TAG_PATTERN

        if not TAG_PATTERN.fullmatch(value):
            raise click.BadParameter("use 1-40 letters, digits, '-' or '_': the tag becomes part of the result file name")
    ctx.meta["bench.tag"] = value
    return value


def tag_option(fn):
    """``--tag NAME``: results are named by it instead of the hash of their settings."""
    return click.option("--tag", default=None, expose_value=False, callback=_check_tag, metavar="NAME",
                        help="Name the results NAME (file <method>-s<seed>-NAME.json) instead of the hash of their settings; "
                             "bench compare/check address them as METHOD@NAME.")(fn)


def prediction_options(fn):
    """``--tile N --tile-overlap M``: how the network runs over an image (recorded in every result)."""
    fn = click.option("--tile-overlap", type=click.IntRange(min=0), default=None, expose_value=False,
                      callback=_remember("bench.tile_overlap"), metavar="M",
                      help="Pixels neighbouring tiles share, blended with feathered weights [default: a quarter of the tile].")(fn)
    return click.option("--tile", type=click.IntRange(min=0), default=None, expose_value=False,
                        callback=_remember("bench.tile"), metavar="N",
                        help="Predict in overlapping N x N tiles (0: the whole image at once) "
                             "[default: the recipe's: cpu recipes tile at their training crop size, gpu recipes predict whole].")(fn)


def common_run_options(fn):
    opts = [
        click.option("--dataset", "-d", default="samples", show_default=True, help="Dataset name (bench list datasets)."),
        click.option("--root", type=click.Path(file_okay=False), default=None,
                     help="Where the dataset lives, for datasets that read files (default: $BENCH_DATA/<name>)."),
        click.option("--recipe", "size", type=click.Choice(["cpu", "gpu"]), default=None, help="Recipe size [default: gpu on CUDA, else cpu]."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a recipe value: train.<field>=V or params.<field>=V, e.g. train.lr=3e-4 or params.width=64 "
                          "(params apply to the methods that have them)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", default=None, help="cuda, cuda:1, mps or cpu [default: the best available]."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bars, or none [default: bars on a terminal, else a plain line every log_every steps or 30 s]."),
        click.option("--on-bad-image", type=click.Choice(["skip", "error"]), default="skip", show_default=True,
                     help="Unreadable or too-small image files: skip them (named in the result file and here), or stop."),
        click.option("--pretrained", is_flag=True, expose_value=False, callback=_remember_pretrained,
                     help="ImageNet encoder weights from the torch hub cache for methods that take them (unet, cgan, wgan_gp); never downloads."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def make_spec(ctx: click.Context, dataset, root, size, overrides, seed, device, progress, on_bad_image="skip"):
    from bench.config import ConfigError, parse_overrides
    from bench.datasets import DATASETS
    from bench.registry import UnknownName
    from bench.runner import RunSpec

    try:
        DATASETS.get(dataset)  # unknown names fail here, before any work
        parsed = parse_overrides(overrides)
    except (UnknownName, ConfigError) as exc:
        raise click.UsageError(str(exc)) from None
    if size is None:
        import torch

        size = "gpu" if (device or "").startswith("cuda") or (device is None and torch.cuda.is_available()) else "cpu"
    return RunSpec(
        dataset=dataset, root=root, seed=seed, size=size, overrides=tuple(parsed.items()),
        device=device, results=ctx.obj["results"], progress=progress, on_bad_image=on_bad_image,
        pretrained=ctx.meta.get("bench.pretrained", False), tag=ctx.meta.get("bench.tag"),
        tile=ctx.meta.get("bench.tile"), tile_overlap=ctx.meta.get("bench.tile_overlap"),
    )


def split_names(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]
