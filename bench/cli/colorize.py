"""``bench colorize``: colourise a user's own photos with a trained method, at their full resolution.

No torch at import time (``bench --help`` stays instant); the heavy imports live in the command body.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from bench.cli.options import common_run_options, make_spec, prediction_options, user_errors


def train_command(spec, method: str) -> str:
    """The ``bench train`` line that produces the run ``colorize`` looks for."""
    args = ["bench"]
    if str(spec.results) != "results":
        args += ["--results", str(spec.results)]
    args += ["train", "--method", method, "--dataset", spec.dataset]
    if spec.root:
        args += ["--root", spec.root]
    args += ["--seed", str(spec.seed), "--recipe", spec.size]
    for key, value in spec.overrides:
        args += ["--set", f"{key}={value}"]
    if spec.pretrained:
        args.append("--pretrained")
    return shlex.join(args)


@click.command()
@click.option("--method", "-m", required=True, help="Method name (bench list methods).")
@common_run_options
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the colourised PNGs (<input name>.png).")
@click.option("--work-size", type=int, default=None,
              help="Shorter side at which ab is predicted, 0 = full resolution "
                   "[default: the dataset card's short_side, the scale the method was trained at].")
@prediction_options
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.pass_context
@user_errors
def colorize(ctx, method, dataset, root, size, overrides, seed, device, progress, on_bad_image, out, work_size, images) -> None:
    """Colourise your own photos (colour or gray, any size) at full resolution with a trained method.

    The run is the one `bench train` made with the same method, dataset, seed, recipe size and --set
    values. ab is predicted on L resized to the model's working scale, upsampled bilinearly and joined to
    the photo's own full-resolution L (as Zhang et al.'s demo does), so the output keeps every detail of
    the input's lightness. With --tile (the cpu recipes' default) the network runs in overlapping tiles.
    """
    spec = make_spec(ctx, dataset, root, size, overrides, seed, device, progress, on_bad_image)
    recipe = spec.recipe(method)
    out_dir = Path(out)
    targets: dict[Path, Path] = {}
    for name in images:
        src, dst = Path(name), out_dir / f"{Path(name).stem}.png"
        if dst in targets.values():
            raise click.UsageError(f"two inputs would both be written to {dst}; colourise them into different --out folders")
        if src.exists() and dst.exists() and dst.resolve() == src.resolve():
            raise click.UsageError(f"{src}: the output would overwrite this input; choose another --out folder")
        targets[src] = dst
    if work_size is not None and work_size < 0:
        raise click.UsageError(f"--work-size must be >= 0, got {work_size}")

    from bench.checkpoint import is_trained, load_trained, run_dir_for
    from bench.datasets.base import DatasetError
    from bench.datasets.io import read_image, write_png
    from bench.device import pick_device
    from bench.evaluate import colorize_full
    from bench.methods import METHODS

    data = spec.images("train")
    run_dir = run_dir_for(spec.results, recipe, data, spec.seed)
    if recipe.trainable and METHODS.get(recipe.adapter).needs_training and not is_trained(run_dir):
        raise click.ClickException(
            f"{method} is not trained on {spec.dataset} with these settings (seed {spec.seed}, {spec.size} recipe): "
            f"no finished run at {run_dir}. Train it with:\n  {train_command(spec, method)}"
        )
    dev = pick_device(spec.device)
    model = load_trained(recipe, run_dir, dev)
    size_used = data.card.short_side if work_size is None else (work_size or None)
    tiling = recipe.prediction()
    how = f"ab at shorter side {size_used or 'full'}" + (f", in {tiling['tile']}-px tiles" if tiling["tile"] else "")
    failed = []
    for src, dst in targets.items():
        try:
            rgb = read_image(src)
        except DatasetError as exc:
            failed.append(src)
            click.echo(f"skipped: {exc}", err=True)
            continue
        try:
            pred = colorize_full(model, rgb.unsqueeze(0).to(dev), size_used, tiling["tile"], tiling["tile_overlap"])[0]
        except (MemoryError, RuntimeError) as exc:
            if not _out_of_memory(exc):
                raise
            scale = "full resolution" if size_used is None else f"shorter side {size_used}"
            raise click.ClickException(
                f"{src}: a {rgb.shape[2]}x{rgb.shape[1]} photo does not fit in {dev} memory with ab predicted at {scale}"
                + (f" in {tiling['tile']}-px tiles" if tiling["tile"] else "") + f" ({type(exc).__name__}). "
                "Predict at a smaller scale with --work-size (e.g. --work-size 512; the output keeps the photo's "
                "full resolution) or in tiles with --tile (e.g. --tile 256)"
            ) from None
        write_png(dst, pred.cpu())
        click.echo(f"{src} -> {dst} ({rgb.shape[2]}x{rgb.shape[1]}, {how})")
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(targets)} images could not be read: {', '.join(map(str, failed))}")


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation failure (CPU, CUDA or MPS), as opposed to another runtime error."""
    import torch

    if isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text
