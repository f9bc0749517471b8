"""Where a recipe meets the method registry: recipe files -> :class:`MethodRecipe` -> a method.

:mod:`bench.config` holds the dataclasses and the YAML rules; this module looks adapters up in
:data:`bench.methods.METHODS` (their ``Params`` type the ``params`` section) and builds methods.
"""

from __future__ import annotations

import typing
from dataclasses import fields
from typing import Any, Mapping

from bench.config import (
    DEFAULT_PREDICT, RECIPE_KEYS, SIZES, ConfigError, MethodRecipe, PredictConfig, TrainConfig, build_dataclass, coerce,
    load_training, read_yaml, recipes_dir,
)
from bench.methods import METHODS, Method
from bench.registry import UnknownName


def method_names() -> list[str]:
    """Every method a user can name: recipe files plus adapters of plugins that carry their own recipe."""
    names = {p.stem for p in recipes_dir().glob("*.yaml")}
    names.update(n for n in METHODS.names() if getattr(METHODS.get(n), "recipe", None) is not None)
    return sorted(names)


def load_recipe(name: str, size: str = "cpu", overrides: Mapping[str, str] | None = None) -> MethodRecipe:
    """The recipe of method ``name`` at ``size``, with ``overrides`` (``train.lr=3e-4``, ``params.width=64``)."""
    if size not in SIZES:
        raise ConfigError(f"unknown recipe size {size!r}; choices: {', '.join(SIZES)}")
    path = recipes_dir() / f"{name}.yaml"
    if path.exists():
        data, where = read_yaml(path), str(path)
    elif name in METHODS and getattr(METHODS.get(name), "recipe", None) is not None:
        data, where = dict(METHODS.get(name).recipe), f"recipe of plugin method {name!r}"
    else:
        raise UnknownName("method", name, method_names())
    unknown = sorted(set(data) - RECIPE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(RECIPE_KEYS))}")
    adapter_name = data.get("adapter", name)
    try:
        adapter = METHODS.get(adapter_name)
    except UnknownName as exc:
        raise ConfigError(f"{where}: adapter: {exc}") from None

    training = data.get("training")
    train_data: dict[str, Any] = load_training(training) if training else {}
    sizes = data.get("sizes") or {}
    if not isinstance(sizes, dict) or set(sizes) - set(SIZES):
        raise ConfigError(f"{where}: sizes must be a mapping with keys among {', '.join(SIZES)}")
    train_data.update(sizes.get(size) or {})
    params_data = dict(data.get("params") or {})
    predict = data.get("predict") or {}
    if not isinstance(predict, dict) or set(predict) - set(SIZES):
        raise ConfigError(f"{where}: predict must be a mapping with keys among {', '.join(SIZES)}, e.g. predict: {{cpu: {{tile: crop}}}}")
    # Methods without training predict whole: with nothing learned from crops there is no context to match.
    predict_data = {**(DEFAULT_PREDICT[size] if training else {}), **(predict.get(size) or {})}

    for key, value in (overrides or {}).items():
        section, _, leaf = key.rpartition(".")
        if section not in ("", "train", "params", "predict"):
            raise ConfigError(f"--set {key}: the key must be train.<field>, params.<field> or predict.<field>")
        train_fields = {f.name for f in fields(TrainConfig)}
        param_fields = {f.name for f in fields(adapter.Params)}
        if section == "predict":
            predict_fields = {f.name for f in fields(PredictConfig)}
            if leaf not in predict_fields:
                raise ConfigError(f"--set {key}: predict has no field {leaf!r}; fields: {', '.join(sorted(predict_fields))}")
            predict_data[leaf] = coerce(value, typing.get_type_hints(PredictConfig)[leaf], f"--set {key}")
        elif section == "train" or (section == "" and leaf in train_fields):
            if leaf not in train_fields:
                raise ConfigError(f"--set {key}: TrainConfig has no field {leaf!r}; fields: {', '.join(sorted(train_fields))}")
            train_data[leaf] = coerce(value, typing.get_type_hints(TrainConfig)[leaf], f"--set {key}")
        elif leaf in param_fields:
            params_data[leaf] = coerce(value, typing.get_type_hints(adapter.Params)[leaf], f"--set {key}")
        else:
            raise ConfigError(
                f"--set {key}: neither the training config nor {adapter_name}'s params have {leaf!r}; "
                f"params: {', '.join(sorted(param_fields)) or '(none)'}"
            )
    train = build_dataclass(TrainConfig, train_data, f"{where}: sizes.{size}")
    params = build_dataclass(adapter.Params, params_data, f"{where}: params")
    predict_cfg = build_dataclass(PredictConfig, predict_data, f"{where}: predict.{size}")
    try:
        predict_cfg.resolve(train.image_size)  # an overlap too large for the tile fails here, before any work
    except ConfigError as exc:
        raise ConfigError(f"{where}: predict.{size}: {exc}") from None
    return MethodRecipe(
        name=str(data.get("name", name)),
        adapter=adapter_name,
        description=str(data.get("description", "")),
        training=training,
        size=size,
        params=params,
        train=train,
        source=where,
        predict=predict_cfg,
    )


def build_method(recipe: MethodRecipe) -> Method:
    """A fresh (untrained) method of ``recipe``."""
    return METHODS.get(recipe.adapter)(recipe.params, recipe.train)
