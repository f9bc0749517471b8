"""Everything a run command can check before it trains or writes anything.

``bench train``, ``train-all``, ``run`` and ``colorize`` call :func:`validate_run` first: the dataset, the
method names and their recipes with every ``--set`` value (types and ranges), the metric names, the device,
``--root``, the splits the command will read (found, not empty, and under ``--on-bad-image error`` free
of bad files), and room for the pixel caches it will build (unless ``--no-cache``). A problem is a usage
error (exit status 2) naming the option and the fix, and nothing has been trained or written yet: a typo
never reaches, let alone replaces, a stored result.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import click

DEVICE_TYPES = ("cuda", "mps", "cpu")


def _usage(exc: BaseException) -> click.UsageError:
    return click.UsageError(str(exc))


def check_device(name: str | None) -> None:
    """``--device``: a device torch knows, of a type colorbench runs on, present on this machine."""
    if name is None:
        return
    import torch

    hint = "choose cuda, cuda:N, mps or cpu" + (" (a GPU is --device cuda)" if name.lower().startswith("gpu") else "")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise click.BadParameter(f"{name!r} is not a device; {hint}", param_hint="'--device'") from None
    if dev.type not in DEVICE_TYPES:
        raise click.BadParameter(f"{name!r}: colorbench runs on cuda, mps or cpu; {hint}", param_hint="'--device'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise click.BadParameter(f"{name}: CUDA is not available on this machine ({why}); use --device cpu",
                                     param_hint="'--device'")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise click.BadParameter(f"{name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}",
                                     param_hint="'--device'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise click.BadParameter(f"{name}: MPS is not available on this machine; use --device cpu", param_hint="'--device'")


def check_root(dataset: str, root: str | None, option: str = "--root", train_on: str | None = None) -> None:
    """``--root`` (or ``option``): only for datasets that read files, and then an existing folder.
    ``train_on``: the --train-on dataset, named in the hint when it is the one that wants a folder."""
    if root is None:
        return
    from bench.datasets import DATASETS

    cls = DATASETS.get(dataset)
    if not cls.needs_root:
        readers = ", ".join(n for n in DATASETS.names() if DATASETS.get(n).needs_root)
        training = train_on is not None and train_on != dataset and DATASETS.get(train_on).needs_root
        hint = f"; the folder --train-on {train_on} trains on goes in --train-root" if training else ""
        raise click.BadParameter(f"dataset {dataset!r} is built in and reads no folder, so {option} would be ignored; "
                                 f"drop {option}, or pick a dataset that reads files ({readers}){hint}", param_hint=f"'{option}'")
    if not root.strip():
        raise click.BadParameter("is empty; give the folder that holds the dataset", param_hint=f"'{option}'")
    path = Path(root).expanduser()
    what = "your images" if dataset == "folder" else f"the {dataset} images"
    fetch = f", or install {dataset} there with 'bench data fetch {dataset} --root {path}'" if dataset != "folder" else ""
    if not path.exists():
        raise click.BadParameter(f"{path} does not exist; pass the folder that holds {what}{fetch}", param_hint=f"'{option}'")
    if not path.is_dir():
        raise click.BadParameter(f"{path} is a file, not a folder; pass the folder that holds {what}", param_hint=f"'{option}'")


def check_splits(spec, splits: Iterable[str]) -> None:
    """Open every split the command will read of the evaluation dataset: found, not empty, and
    (``--on-bad-image error``) no bad file. The scan's outcome per file is cached on disk, so the command's
    own reading afterwards is quick."""
    check_split_files(spec.dataset, spec.root, spec.on_bad_image, splits)


def check_split_files(dataset: str, root: str | None, on_bad_image: str, splits: Iterable[str],
                      root_option: str = "--root") -> None:
    """``root_option``: the option that gives this dataset's folder (``--train-root`` for a --train-on set
    other than the one scored), named in the errors the dataset raises."""
    from bench.datasets import DATASETS
    from bench.datasets.base import DatasetError, open_split

    for split in dict.fromkeys(splits):
        try:
            images = open_split(DATASETS.get(dataset), split, root, on_bad_image=on_bad_image)
        except DatasetError as exc:
            text = str(exc) if root_option == "--root" else re.sub(r"--root\b", root_option, str(exc))
            raise click.UsageError(text if text.startswith(dataset) else f"{dataset}/{split}: {text}") from None
        if len(images) == 0:
            raise click.UsageError(f"{dataset}/{split}: no usable image in {images.root or dataset}")


def check_param_overrides(spec, names: Sequence[str]) -> list[str]:
    """``--set params.X`` and ``--pretrained`` apply to the methods whose parameters have them; an error
    only when none of ``names`` does. Returns notes on methods left out (printed once)."""
    from bench.recipes import param_names

    from bench.config import recipes_dir

    have = {n: param_names(n) for n in names}
    notes = []
    keys = [k for k, _ in spec.overrides if k.startswith("params.")]
    flags = [("--pretrained", "pretrained")] if spec.pretrained else []
    for shown, leaf in [(f"--set {k}", k.removeprefix("params.")) for k in keys] + flags:
        takers = [n for n in names if leaf in have[n]]
        if not takers:
            known = sorted(set().union(*have.values()))
            close = difflib.get_close_matches(leaf, known, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(f'params.{c}' for c in close)}?" if close else \
                f"params: {', '.join(known)}" if known else "it takes no parameters"
            who = f"{names[0]} has no" if len(names) == 1 else f"none of {', '.join(names)} has a"
            raise click.UsageError(f"{shown}: {who} parameter {leaf!r}; {hint} (each method's params: {recipes_dir() / '<name>.yaml'})")
        others = [n for n in names if n not in takers]
        if others:
            notes.append(f"{shown} applies to {', '.join(takers)} ({', '.join(others)} {'has' if len(others) == 1 else 'have'} no {leaf!r})")
    return notes


def check_metrics(names: Sequence[str]):
    """Every metric name is registered (close matches suggested, case-blind)."""
    from bench.metrics import METRICS
    from bench.registry import UnknownName

    if not names:
        raise click.BadParameter("is empty; give metric names (bench list metrics), 'default' or 'all'", param_hint="'--metrics'")
    for m in names:
        try:
            METRICS.get(m)
        except UnknownName as exc:
            raise click.BadParameter(str(exc), param_hint="'--metrics'") from None


def unavailable_note(metric_names: Sequence[str], inception_weights: str | None) -> str | None:
    """One short line naming the requested metrics this machine cannot compute and the files they miss."""
    from bench.metrics import MetricOptions, availability, build_metrics

    missing = availability(build_metrics(list(metric_names), MetricOptions(inception_weights=inception_weights)))
    if not missing:
        return None
    files = list(dict.fromkeys(f for why in missing.values() for f in re.findall(r"[\w.-]+\.pth\b", why)))
    other = list(dict.fromkeys(why for why in missing.values() if not re.search(r"[\w.-]+\.pth\b", why)))
    needs = "; ".join(([f"missing {', '.join(files)}"] if files else []) + other)
    return (f"note: {', '.join(missing)} unavailable here ({needs}; 'bench list metrics' says where files go): "
            "recorded as unavailable in the results")


def check_pixel_cache(recipes: dict, training: Sequence[tuple[str, str | None, str]], evaluated: Sequence, splits: Iterable[str]) -> None:
    """The pixel caches the command will build fit on their disk, which is writable; ``--no-cache`` skips
    them. ``training``: (dataset, root, on_bad_image) of each train split read, at each trainable recipe's
    scale; ``evaluated``: the run specs whose ``splits`` are scored, at their protocol's scale."""
    from bench.datasets import DATASETS
    from bench.datasets.base import open_split
    from bench.datasets.cache import room_problem
    from bench.datasets.pixels import uses_cache
    from bench.datasets.views import eval_scale, train_scale
    from bench.runner import needs_training

    if not evaluated or not evaluated[0].pixel_cache:
        return
    using = [r for r in recipes.values() if r.train.pixel_cache]
    if not using:
        return
    wanted = []
    trainers = [r for r in using if needs_training(r)]
    for dataset, root, on_bad_image in training if trainers else ():
        images = open_split(DATASETS.get(dataset), "train", root, on_bad_image=on_bad_image)
        scales = {train_scale(images, r.train.image_size) for r in trainers}
        wanted += [(images, s) for s in sorted(scales, key=lambda s: s or 0) if uses_cache(images, s)]
    for s in evaluated:
        for split in dict.fromkeys(splits):
            images = open_split(DATASETS.get(s.dataset), split, s.root, on_bad_image=s.on_bad_image)
            scale = eval_scale(images.card.eval_protocol())
            if uses_cache(images, scale):
                wanted.append((images, scale))
    problem = room_problem(wanted)
    if problem:
        raise click.UsageError(problem)


def validate_run(spec, methods: Sequence[str], splits: Iterable[str], more: Sequence = (), allow_no_methods: bool = False) -> dict:
    """Check a run before any work; returns ``{name: recipe}``. Raises click usage errors (exit 2).

    ``splits`` are read of the evaluation dataset of ``spec`` and of each spec in ``more`` (other evaluation
    datasets); the training dataset's train split is checked when a method needs training."""
    from bench.config import ConfigError
    from bench.progress import line_seconds
    from bench.registry import UnknownName
    from bench.runner import needs_training

    if not methods and not allow_no_methods:
        raise click.BadParameter("is empty; give method names (bench list methods)", param_hint="'--methods'")
    try:
        notes = check_param_overrides(spec, methods) if methods else []
        recipes = {n: spec.recipe(n) for n in methods}
    except (UnknownName, ConfigError) as exc:
        raise _usage(exc) from None
    check_device(spec.device)
    try:
        line_seconds()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    trains = any(needs_training(r) for r in recipes.values())
    training_sets = {}
    for s in (spec, *more):
        check_root(s.dataset, s.root, train_on=s.training_dataset)
        if s.train_root is not None:
            check_root(s.training_dataset, s.train_root, "--train-root")
        training_sets[(s.training_dataset, s.training_root)] = s
    if trains:
        for (dataset, root), s in training_sets.items():
            check_split_files(dataset, root, s.on_bad_image, ["train"],
                              "--root" if dataset == s.dataset and s.train_root is None else "--train-root")
    for s in (spec, *more):
        check_splits(s, splits)
    check_pixel_cache(recipes, [(d, r, s.on_bad_image) for (d, r), s in training_sets.items()], (spec, *more), splits)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    return recipes
