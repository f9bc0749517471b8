"""Recipes: YAML -> frozen dataclasses. Unknown keys are errors that name the file; CLI > YAML > defaults.

A method recipe (``methods/<name>.yaml``) names an adapter, the adapter's hyper-parameters (checked
against the adapter's own ``Params`` dataclass), a shared training recipe (``methods/training/<name>.yaml``:
loop and optimiser defaults shared by every method that uses it) and per-size overrides (``cpu``, ``gpu``).
This module knows no registry: :mod:`bench.recipes` turns a recipe file into a method.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from bench.schedules import Schedule

SIZES = ("cpu", "gpu")


class ConfigError(ValueError):
    """A recipe or override that cannot be used; the message names the file and the fix."""


def project_root() -> Path:
    """The checkout the package runs from (recipes live beside the package, not inside it)."""
    return Path(__file__).resolve().parent.parent


def recipes_dir() -> Path:
    return Path(os.environ.get("BENCH_RECIPES", project_root() / "methods"))


def datasets_dir() -> Path:
    return Path(os.environ.get("BENCH_CARDS", project_root() / "datasets"))


@dataclass(frozen=True)
class TrainConfig:
    """Everything the shared training loop needs; optimiser fields are read by the adapters."""

    steps: int = 200
    batch_size: int = 16
    image_size: int = 64
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float | None = None
    log_every: int = 10
    ckpt_every: int = 100
    amp: bool = True  # bf16/fp16 autocast; only ever enabled on CUDA
    channels_last: bool = True
    compile: bool = False
    num_workers: int = 0
    prepare_images: int = 64  # training crops shown to Method.prepare (palettes, priors)
    # What a paper's training needs beyond a constant step (bench/schedules.py, bench/averaging.py,
    # bench/validation.py): the learning-rate schedule, per optimiser where a GAN's differ; an exponential
    # moving average of the weights; gradient accumulation; validation curves on a held-out slice.
    schedule: Schedule = Schedule()
    schedules: Mapping[str, Schedule] = field(default_factory=dict)  # optimiser name -> its own schedule
    ema_decay: float | None = None  # e.g. 0.999: keep an EMA of the weights (None: off)
    ema_eval: bool = True  # with an EMA: score (and validate) the EMA weights rather than the raw ones
    accumulate: int = 1  # micro-batches per step: batch_size is the global batch, split into this many
    val_every: int = 0  # PSNR/SSIM on a held-out slice of the training split every N steps (0: off)
    val_images: int = 16  # size of that slice (at most a quarter of the split)

    def __post_init__(self):
        if self.accumulate < 1:
            raise ValueError(f"accumulate must be >= 1, got {self.accumulate}")
        if self.batch_size % self.accumulate:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of accumulate {self.accumulate} "
                             "(batch_size is the global batch, split into accumulate micro-batches)")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or null, got {self.ema_decay}")
        if self.val_every < 0 or self.val_images < 1:
            raise ValueError(f"val_every must be >= 0 (0: off) and val_images >= 1, got {self.val_every}, {self.val_images}")


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

    @property
    def trainable(self) -> bool:
        return self.training is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able form; the identity hash is taken over this (minus ``source``)."""
        return {
            "name": self.name,
            "adapter": self.adapter,
            "training": self.training,
            "size": self.size,
            "params": to_plain(self.params),
            "train": to_plain(self.train),
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
        if value is None and type(None) in args:
            return None
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


RECIPE_KEYS = {"name", "adapter", "description", "training", "params", "sizes"}


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


@dataclass(frozen=True)
class DatasetCard:
    """``datasets/<name>.yaml``: where the data comes from and how it is evaluated."""

    name: str
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
    def load(cls, name: str) -> "DatasetCard":
        path = datasets_dir() / f"{name}.yaml"
        if not path.exists():
            return cls(name=name)
        data = read_yaml(path)
        data.setdefault("name", name)
        return build_dataclass(cls, data, str(path))
