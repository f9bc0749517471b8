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
    return shlex.join(_command(spec, "train", method))


def _command(spec, verb: str, method: str, seed: int | None = None, size: str | None = None,
             sets: list[str] | None = None) -> list[str]:
    """``bench [--results R] VERB --method M --dataset D [--root X] --seed S --recipe Z --set ...`` for ``spec``
    (or the given seed, recipe size and --set values)."""
    args = ["bench"]
    if str(spec.results) != "results":
        args += ["--results", str(spec.results)]
    args += [verb, "--method", method, "--dataset", spec.dataset]
    if spec.root:
        args += ["--root", spec.root]
    args += ["--seed", str(spec.seed if seed is None else seed), "--recipe", size or spec.size]
    for kv in sets if sets is not None else [f"{k}={v}" for k, v in spec.overrides]:
        args += ["--set", kv]
    if spec.pretrained and sets is None:
        args.append("--pretrained")
    return args


def _flatten(prefix: str, value) -> dict[str, object]:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in _flatten(f"{prefix}.{key}", sub).items()}
    return {prefix: value}


def _as_set_value(value) -> str:
    import json

    return json.dumps(list(value)) if isinstance(value, (list, tuple)) else "null" if value is None else \
        str(value).lower() if isinstance(value, bool) else str(value)


def existing_runs(spec, method: str, run_dir: Path, data_identity: dict, tail: list[str]) -> list[str]:
    """A line per training run of ``method`` on this dataset under the results folder: its settings (seed,
    recipe size, the --set values that differ from the shipped recipe), state, and the command that uses it
    (``tail``: the images and --out of this command)."""
    from bench.identity import method_code
    from bench.methods import METHODS
    from bench.recipes import load_recipe
    from bench.store import read_json

    lines = []
    for meta_path in sorted(run_dir.parent.glob(f"{spec.dataset}-s*/train.json")):
        try:
            meta = read_json(meta_path)
            ident = meta["identity"]
            recipe = ident["recipe"]
            shipped = load_recipe(method, recipe["size"])
            base, code_now = shipped.to_dict(), method_code(METHODS.get(shipped.adapter))
        except Exception as exc:  # an unreadable or foreign folder is listed as such, never a crash
            lines.append(f"  {meta_path.parent}: unreadable ({type(exc).__name__}: {exc})")
            continue
        sets = [f"{k}={_as_set_value(v)}" for section in ("train", "params")
                for k, v in _flatten(section, recipe.get(section, {})).items()
                if _flatten(section, base.get(section, {})).get(k, object()) != v]
        state = meta.get("status", "?")
        steps = f"{meta.get('steps')} steps" if state == "done" else f"{state}"
        notes = []
        if (ident.get("dataset") or {}).get("content_hash") != data_identity.get("content_hash"):
            notes.append("trained on other data (the dataset's content changed since): not usable as it is now")
        made_by = ident.get("code") or {}
        if made_by.get("source_sha256") != code_now["source_sha256"]:
            notes.append(f"made by other code (colorbench {made_by.get('colorbench')}, source {str(made_by.get('source_sha256'))[:10]}; "
                         f"this is {code_now['colorbench']}, source {code_now['source_sha256'][:10]})")
        settings = f"seed {ident.get('seed')}, {recipe['size']} recipe" + (f", --set {' --set '.join(sets)}" if sets else ", shipped recipe")
        lines.append(f"  {meta_path.parent.name}: {settings}; {steps}" + (f" ({'; '.join(notes)})" if notes else ""))
        if state == "done" and not notes:
            use = _command(spec, "colorize", method, ident.get("seed"), recipe["size"], sets) + tail
            lines.append(f"    use it with: {shlex.join(use)}")
    return lines


def collect_inputs(images: tuple[str, ...], out_dir: Path) -> dict[Path, Path]:
    """Input image -> output PNG. A file gives ``<out>/<stem>.png``; a folder gives every image file under it,
    written to the same relative place under ``<out>`` (as PNG)."""
    from bench.datasets.io import IMAGE_SUFFIXES

    targets: dict[Path, Path] = {}
    for name in images:
        src = Path(name)
        if src.is_dir():
            found = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise click.BadParameter(f"{src}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder", param_hint="IMAGES")
            pairs = [(p, out_dir / p.relative_to(src).with_suffix(".png")) for p in found]
        else:
            pairs = [(src, out_dir / f"{src.stem}.png")]
        for s, dst in pairs:
            if dst in targets.values():
                raise click.UsageError(f"two inputs would both be written to {dst}; colourise them into different --out folders")
            if dst.exists() and dst.resolve() == s.resolve():
                raise click.UsageError(f"{s}: the output would overwrite this input; choose another --out folder")
            targets[s] = dst
    return targets


@click.command()
@click.option("--method", "-m", default=None, help="Method name (bench list methods); or give --checkpoint.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="Use the model saved in this colorbench checkpoint (a run's checkpoint.pt, or one 'bench import' wrote) "
                   "instead of looking up a run of --method; no training data is needed.")
@common_run_options
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the colourised PNGs (<input name>.png).")
@click.option("--work-size", type=click.IntRange(min=0), default=None,
              help="Shorter side at which ab is predicted, 0 = full resolution "
                   "[default: the dataset card's short_side, the scale the method was trained at].")
@prediction_options
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.pass_context
@user_errors
def colorize(ctx, method, checkpoint, dataset, root, size, overrides, seed, device, progress, on_bad_image, out, work_size,
             images) -> None:
    """Colourise your own photos (colour or gray, any size) at full resolution with a trained method.

    IMAGES are image files or folders (every image file under a folder; its subfolders are kept under
    --out). The run is the one `bench train` made with the same method, dataset, seed, recipe size and
    --set values; when there is none, the runs that exist for the method and dataset are listed with
    their settings. ab is predicted on L resized to the model's working scale, upsampled bilinearly and
    joined to the photo's own full-resolution L (as Zhang et al.'s demo does), so the output keeps every
    detail of the input's lightness. With --tile (the cpu recipes' default) the network runs in
    overlapping tiles.
    """
    from bench.cli.validate import check_device, validate_run

    if (method is None) == (checkpoint is None):
        raise click.UsageError("give --method NAME (a run trained here) or --checkpoint PATH (a saved model), one of them")
    spec = make_spec(ctx, dataset, root, size, overrides, seed, device, progress, on_bad_image)
    if checkpoint is not None:
        check_device(spec.device)
        targets = collect_inputs(images, Path(out))
        check_inputs(targets, spec.on_bad_image)
        _colorize_checkpoint(spec, Path(checkpoint), targets, work_size)
        return
    recipe = validate_run(spec, [method], [])[method]  # the train split is checked when the method needs training
    targets = collect_inputs(images, Path(out))
    check_inputs(targets, spec.on_bad_image)

    from bench.checkpoint import is_trained, load_trained, run_dir_for
    from bench.device import pick_device
    from bench.runner import needs_training

    dev = pick_device(spec.device)
    if needs_training(recipe):
        data = spec.train_images()
        run_dir = run_dir_for(spec.results, recipe, data, spec.seed)
    else:
        data, run_dir = None, spec.results / "train" / recipe.name  # nothing is trained, nothing is read
    if data is not None and not is_trained(run_dir):
        tail = [*images, "--out", out] + (["--work-size", str(work_size)] if work_size is not None else [])
        runs = existing_runs(spec, method, run_dir, data.identity(), tail)
        listing = (f"Runs of {method} on {spec.dataset} under {run_dir.parent}:\n" + "\n".join(runs)) if runs else \
            f"There is no run of {method} on {spec.dataset} under {run_dir.parent}."
        raise click.ClickException(
            f"{method} is not trained on {spec.dataset} with these settings (seed {spec.seed}, {spec.size} recipe"
            + (f", --set {' --set '.join(f'{k}={v}' for k, v in spec.overrides)}" if spec.overrides else "")
            + f"): no finished run at {run_dir}.\n{listing}\nOr train one with these settings:\n  {train_command(spec, method)}"
        )
    model = load_trained(recipe, run_dir, dev)
    size_used = _card_short_side(spec.dataset) if work_size is None else (work_size or None)
    _colorize_files(model, recipe.prediction(), size_used, targets, dev)


def check_inputs(targets: dict[Path, Path], on_bad_image: str) -> None:
    """``--on-bad-image error``: every input decodes, or a usage error naming each that does not, before any
    work. (``skip``, the default: a bad input is named and left out as it comes, and the command exits 1.)"""
    if on_bad_image != "error":
        return
    from bench.datasets.base import DatasetError
    from bench.datasets.io import read_image

    bad = []
    for src in targets:
        try:
            read_image(src)
        except DatasetError as exc:
            bad.append(str(exc))
    if bad:
        raise click.UsageError(f"{len(bad)} of {len(targets)} inputs cannot be read (--on-bad-image error); nothing was "
                               "colourised. Remove or replace them, or pass --on-bad-image skip:\n  " + "\n  ".join(bad))


def _card_short_side(dataset: str) -> int | None:
    """The one scale of ``dataset``'s card (what its methods are trained and predicted at)."""
    from bench.config import DatasetCard
    from bench.datasets import DATASETS

    cls = DATASETS.get(dataset)
    return DatasetCard.load(cls.data_name or dataset, cls.card_data).short_side


def _colorize_checkpoint(spec, path: Path, targets: dict[Path, Path], work_size: int | None) -> None:
    """``bench colorize --checkpoint PATH``: the model the file holds, at the scale it was trained at (the short
    side its checkpoint records; else the --dataset card's)."""
    from bench.checkpoint import CheckpointError, load_model_file
    from bench.device import pick_device
    from bench.config import ConfigError
    from bench.recipes import with_prediction

    dev = pick_device(spec.device)
    try:
        model = load_model_file(path, dev)
    except CheckpointError as exc:
        raise click.BadParameter(str(exc), param_hint="'--checkpoint'") from None
    try:
        recipe = with_prediction(model.recipe, spec.tile, spec.tile_overlap, dict(spec.overrides))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    recorded = ((model.meta.get("identity") or {}).get("dataset") or {}).get("short_side")
    default = recorded if recorded is not None else _card_short_side(spec.dataset)
    size_used = default if work_size is None else (work_size or None)
    _colorize_files(model.method, recipe.prediction(), size_used, targets, dev)


def _colorize_files(model, tiling: dict, size_used: int | None, targets: dict[Path, Path], dev) -> None:
    from bench.datasets.base import DatasetError
    from bench.datasets.io import read_image, write_png
    from bench.evaluate import colorize_full

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
