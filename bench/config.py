"""Recipes: YAML -> frozen dataclasses. Unknown keys are errors that name the file; CLI > YAML > defaults.

A method recipe (``bench/methods/recipes/<name>.yaml``) names an adapter, the adapter's hyper-parameters
(checked against the adapter's own ``Params`` dataclass), a shared training recipe
(``bench/methods/recipes/training/<name>.yaml``: loop and optimiser defaults shared by every method that
uses it), per-size overrides (``cpu``, ``gpu``) and, optionally, how to predict (``predict``: tiling).
A dataset card (``bench/datasets/cards/<name>.yaml``) holds a dataset's facts, among them ``short_side``:
the one scale that both training crops and prediction use.

Both ship inside the package (and so inside the wheel); ``$BENCH_RECIPES`` and ``$BENCH_CARDS`` point at
other folders. This module knows no registry: :mod:`bench.recipes` turns a recipe file into a method.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import math
import numbers
import os
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from bench.schedules import Schedule

SIZES = ("cpu", "gpu")
MIN_IMAGE_SIZE = 32  # the smallest crop every shipped network trains on (the PatchGANs need 32; tests/test_config.py)


class ConfigError(ValueError):
    """A recipe or override that cannot be used; the message names the file and the fix."""


PACKAGE_DIR = Path(__file__).resolve().parent


def recipes_dir() -> Path:
    """Method recipes: ``$BENCH_RECIPES``, else the ones shipped in the package (``bench/methods/recipes``)."""
    return Path(os.environ.get("BENCH_RECIPES") or PACKAGE_DIR / "methods" / "recipes")


def datasets_dir() -> Path:
    """Dataset cards: ``$BENCH_CARDS``, else the ones shipped in the package (``bench/datasets/cards``)."""
    return Path(os.environ.get("BENCH_CARDS") or PACKAGE_DIR / "datasets" / "cards")


@dataclass(frozen=True)
class Range:
    """The values a numeric recipe field allows: bounds ``low``/``high`` (None: unbounded), inclusive
    unless ``low_open``/``high_open``. A tuple field's elements are checked one by one, ``None`` (an
    optional field left unset) always passes, and NaN or inf never does."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def allows(self, value: Any) -> bool:
        if value is None:
            return True
        if isinstance(value, (tuple, list)):
            return all(self.allows(v) for v in value)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return "finite"


def ranged(default: Any, low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> Any:
    """A dataclass field with a declared :class:`Range`, checked by :func:`check_ranges`:
    ``steps: int = ranged(200, low=1)``. One line gives a new recipe field its range."""
    return field(default=default, metadata={"range": Range(low, high, low_open, high_open)})


def field_range(cls: type, name: str) -> Range | None:
    """The declared range of field ``name`` of dataclass ``cls`` (None: no range declared)."""
    for f in fields(cls):
        if f.name == name:
            return f.metadata.get("range")
    return None


def range_problem(cls: type, name: str, value: Any) -> str | None:
    """What field ``name`` of dataclass ``cls`` requires when ``value`` is outside its declared range
    ("must be an integer >= 1"), or None when the value is allowed."""
    rng = field_range(cls, name)
    if rng is None or rng.allows(value):
        return None
    if isinstance(value, (tuple, list)):
        return f"must hold {'integers' if all(isinstance(v, int) for v in value) else 'numbers'} {rng.describe()}"
    return f"must be {'an integer' if isinstance(value, int) else 'a number'} {rng.describe()}"


def check_ranges(obj: Any, prefix: str = "") -> None:
    """Raise ValueError naming the first field of dataclass ``obj`` outside its declared range (call it from
    ``__post_init__``; :func:`build_dataclass` turns the error into a ConfigError naming the file)."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        problem = range_problem(type(obj), f.name, value)
        if problem:
            raise ValueError(f"{prefix}{f.name} = {value!r} is out of range: {problem}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything the shared training loop needs; optimiser fields are read by the adapters.

    Every numeric field declares its allowed range (``ranged``): recipes and ``--set`` values outside it
    are refused with a message naming the field and the range."""

    steps: int = ranged(200, low=1)
    batch_size: int = ranged(16, low=1)
    image_size: int = ranged(64, low=MIN_IMAGE_SIZE)
    lr: float = ranged(1e-3, low=0, low_open=True)
    betas: tuple[float, float] = ranged((0.9, 0.999), low=0, high=1, high_open=True)
    weight_decay: float = ranged(0.0, low=0)
    grad_clip: float | None = ranged(None, low=0, low_open=True)
    log_every: int = ranged(10, low=1)
    ckpt_every: int = ranged(100, low=1)
    amp: bool = True  # bf16/fp16 autocast; only ever enabled on CUDA
    channels_last: bool = True
    compile: bool = False
    num_workers: int = ranged(0, low=0)
    prepare_images: int = ranged(64, low=0)  # training crops shown to Method.prepare (palettes, priors)
    pixel_cache: bool = True  # crops from the memory-mapped pixel cache (false: decode; see bench.datasets.pixels)
    # What a paper's training needs beyond a constant step (bench/schedules.py, bench/averaging.py,
    # bench/validation.py): the learning-rate schedule, per optimiser where a GAN's differ; an exponential
    # moving average of the weights; gradient accumulation; validation curves on a held-out slice.
    schedule: Schedule = Schedule()
    schedules: Mapping[str, Schedule] = field(default_factory=dict)  # optimiser name -> its own schedule
    ema_decay: float | None = ranged(None, low=0, high=1, low_open=True, high_open=True)  # e.g. 0.999 (None: no EMA)
    ema_eval: bool = True  # with an EMA: score (and validate) the EMA weights rather than the raw ones
    accumulate: int = ranged(1, low=1)  # micro-batches per step: batch_size is the global batch, split into this many
    val_every: int = ranged(0, low=0)  # PSNR/SSIM on a held-out slice of the training split every N steps (0: off)
    val_images: int = ranged(16, low=1)  # size of that slice (at most a quarter of the split)

    def __post_init__(self):
        check_ranges(self, "train.")
        if self.batch_size % self.accumulate:
            raise ValueError(f"train.batch_size {self.batch_size} must be a multiple of train.accumulate {self.accumulate} "
                             "(batch_size is the global batch, split into accumulate micro-batches)")


@dataclass(frozen=True)
class PredictConfig:
    """How evaluation and ``bench colorize`` run the network over an image; not part of what is trained.

    ``tile``: ``None`` predicts the whole image at once; ``N`` predicts overlapping N x N tiles blended
    with feathered weights (:func:`bench.evaluate.predict_ab_tiled`); ``"crop"`` means the recipe's
    training crop size, so the network sees the context it was trained on. ``overlap``: the pixels two
    neighbouring tiles share (``None``: a quarter of the tile).
    """

    tile: int | str | None = None
    overlap: int | None = None

    def __post_init__(self):
        if isinstance(self.tile, str) and self.tile != "crop":
            raise ValueError(f"tile must be a number of pixels, 'crop' (the training crop size) or null, got {self.tile!r}")
        if isinstance(self.tile, int) and self.tile < 1:
            raise ValueError(f"tile must be >= 1 pixel (or null for the whole image), got {self.tile}")
        if self.overlap is not None and self.overlap < 0:
            raise ValueError(f"overlap must be >= 0, got {self.overlap}")

    def resolve(self, crop: int) -> tuple[int | None, int | None]:
        """(tile, overlap) in pixels for a recipe whose training crops are ``crop`` px; (None, None): whole image."""
        tile = crop if self.tile == "crop" else self.tile
        if tile is None:
            return None, None
        overlap = tile // 4 if self.overlap is None else self.overlap
        if overlap > tile // 2:
            raise ConfigError(f"tile overlap {overlap} px is more than half the {tile}-px tile; use at most {tile // 2}")
        return int(tile), int(overlap)


# How data is read, not what is trained: crops are identical with and without the cache (tested), so these
# fields stay out of MethodRecipe.to_dict and hence out of run and result identities, result files and labels.
NOT_IN_IDENTITY = frozenset({"pixel_cache"})


# Tiling by recipe size when a recipe says nothing: the `cpu` recipes train on 64-px crops of images whose
# shorter side is 256, so they predict in tiles of their crop size (the context they were trained on);
# the `gpu` recipes train on 176-256-px crops, close to the whole image, and predict it whole.
DEFAULT_PREDICT = {"cpu": {"tile": "crop"}, "gpu": {}}


@dataclass(frozen=True)
class MethodRecipe:
    name: str
    adapter: str
    description: str
    training: str | None  # shared training recipe, None for methods that need no training
    size: str
    params: Any  # the adapter's Params dataclass instance
    train: TrainConfig
    source: str = ""  # the YAML file this came from
    predict: PredictConfig = PredictConfig()  # not in to_dict(): how to predict is no part of what is trained

    @property
    def trainable(self) -> bool:
        return self.training is not None

    def prediction(self) -> dict[str, int | None]:
        """The tiling evaluation and colorize use, in pixels (recorded in every result)."""
        tile, overlap = self.predict.resolve(self.train.image_size)
        return {"tile": tile, "tile_overlap": overlap}

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able form of what is trained; the training identity hash is taken over this."""
        return {
            "name": self.name,
            "adapter": self.adapter,
            "training": self.training,
            "size": self.size,
            "params": to_plain(self.params),
            "train": {k: v for k, v in to_plain(self.train).items() if k not in NOT_IN_IDENTITY},
        }


def to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(x) for x in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


# --------------------------------------------------------------------------------------------------
# Typed construction


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/CLI value to a dataclass field's annotated type, or raise naming ``where``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none", "~", ""))):
            return None  # YAML's null, or the same spelled on the command line (--set train.grad_clip=null)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: cannot use {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {list(value)!r}")
            return tuple(coerce(v, a, where) for v, a in zip(value, args))
        inner = args[0] if args else Any
        return origin(coerce(v, inner, where) for v in value)
    if origin in (collections.abc.Mapping, dict) and dataclasses.is_dataclass(typing.get_args(tp)[-1]):
        # a mapping of typed sections (train.schedules: optimiser -> Schedule); other mappings stay as read
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): coerce(v, typing.get_args(tp)[-1], f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {', '.join(f.name for f in fields(tp))}, got {value!r}")
        return build_dataclass(tp, value, where)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            out = tp(value)  # YAML reads "1e-3" as a string: float("1e-3") is what the user meant
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and out != value:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def build_dataclass(cls: type, data: Mapping[str, Any] | None, where: str, base: Any = None) -> Any:
    """``cls(**data)`` with every value coerced to its field type; unknown keys are errors."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(names)}")
    values = {k: coerce(v, hints[k], f"{where}: {k}") for k, v in data.items()}
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except (TypeError, ValueError) as exc:  # missing fields, or a Params.__post_init__ check
        raise ConfigError(f"{where}: {exc}") from None


def parse_overrides(items: typing.Iterable[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.lr=3e-4")
        out[key.strip()] = value.strip()
    return out


# --------------------------------------------------------------------------------------------------
# Files


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


RECIPE_KEYS = {"name", "adapter", "description", "training", "params", "sizes", "predict"}


def load_training(name: str) -> dict[str, Any]:
    path = recipes_dir() / "training" / f"{name}.yaml"
    if not path.exists():
        choices = sorted(p.stem for p in (recipes_dir() / "training").glob("*.yaml"))
        raise ConfigError(f"no shared training recipe {name!r} at {path}; choices: {', '.join(choices)}")
    data = read_yaml(path)
    build_dataclass(TrainConfig, data, str(path))  # validates keys and types early
    return data


def canonical_json(obj: Any) -> str:
    return json.dumps(to_plain(obj), sort_keys=True, separators=(",", ":"), default=str)


CARD_MODES = ("tiles", "center_crop", "full")


@dataclass(frozen=True)
class DatasetCard:
    """``bench/datasets/cards/<name>.yaml``: where the data comes from, its scale and how it is evaluated."""

    name: str
    # The one scale of the dataset: training crops are cut from images resized to this shorter side, and
    # prediction runs at it (evaluation views are cut from images resized to it; full images are predicted
    # on L resized to it, and ab is upsampled onto the full-resolution L). None: the images' own resolution.
    short_side: int | None = None
    description: str = ""
    source: str = ""
    homepage: str = ""
    licence: str = ""
    citation: str = ""
    splits: Mapping[str, Any] = field(default_factory=dict)
    images: Mapping[str, int] = field(default_factory=dict)  # official image count per split
    eval: Mapping[str, Any] = field(default_factory=dict)  # the evaluation protocol, recorded in results
    # Archives `bench data fetch` downloads: name, url, size, sha256/md5, provides (top folder), checksum_source.
    downloads: tuple[Mapping[str, Any], ...] = ()
    manual_download: str = ""  # instructions when there is no unauthenticated URL ({root} is filled in)
    official: str = ""  # how a loader decides that what it read is the official dataset
    preprocessing: str = ""  # how unusual files are converted or skipped
    extra: Mapping[str, Any] = field(default_factory=dict)  # loader-specific settings

    @classmethod
    def load(cls, name: str, fallback: Mapping[str, Any] | None = None) -> "DatasetCard":
        """The card ``<cards>/<name>.yaml``, else ``fallback`` (a plugin's own card); neither is an error."""
        path = datasets_dir() / f"{name}.yaml"
        if path.exists():
            data, where = read_yaml(path), str(path)
        elif fallback is not None:
            data, where = dict(fallback), f"card of plugin dataset {name!r}"
        else:
            raise ConfigError(
                f"no dataset card for {name!r}: expected {path}. Cards ship inside the package "
                f"({PACKAGE_DIR / 'datasets' / 'cards'}); $BENCH_CARDS points at another folder (now: "
                f"{os.environ.get('BENCH_CARDS') or 'unset'}); a plugin dataset carries its card as a `card_data` class attribute"
            )
        data.setdefault("name", name)
        if "short_side" not in data:
            raise ConfigError(f"{where}: no short_side: state the one scale that training crops and prediction use "
                              "(the shorter side in pixels, or null for the images' own resolution)")
        card = build_dataclass(cls, data, where)
        card.check(where)
        return card

    def check(self, where: str) -> None:
        """The card's scale and evaluation protocol fit together (see :class:`bench.datasets.views.EvalView`)."""
        if self.short_side is not None and self.short_side < 1:
            raise ConfigError(f"{where}: short_side must be a number of pixels >= 1 or null, got {self.short_side}")
        mode = self.eval.get("mode", "full")
        if mode not in CARD_MODES:
            raise ConfigError(f"{where}: eval.mode {mode!r} is not one of {', '.join(CARD_MODES)}")
        if "train_resize_short" in self.extra:
            raise ConfigError(f"{where}: extra.train_resize_short is gone: short_side (top level) is the one scale of "
                              "training and prediction")
        if "resize_short" in self.eval:
            raise ConfigError(f"{where}: eval.resize_short is gone: short_side (top level) is the one scale of training "
                              "and prediction")
        need = {"tiles": ("tile",), "center_crop": ("size",), "full": ()}[mode]
        missing = [k for k in need if k not in self.eval]
        if missing:
            raise ConfigError(f"{where}: eval mode {mode} needs {', '.join(missing)}")
        if mode == "tiles" and self.short_side is None:
            raise ConfigError(f"{where}: eval mode tiles cuts the centre square of side short_side: set short_side")

    def eval_protocol(self) -> dict[str, Any]:
        """The evaluation protocol as results record it: the card's ``eval`` and the scale it runs at."""
        return {**dict(self.eval), "short_side": self.short_side}
