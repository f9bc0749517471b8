"""Where a recipe meets the method registry: recipe files -> :class:`MethodRecipe` -> a method.

:mod:`bench.config` holds the dataclasses and the YAML rules; this module looks adapters up in
:data:`bench.methods.METHODS` (their ``Params`` type the ``params`` section) and builds methods.
"""

from __future__ import annotations

import typing
from dataclasses import fields
from typing import Any, Mapping

from bench.config import (

    RECIPE_KEYS, SIZES, ConfigError, MethodRecipe, TrainConfig, build_dataclass, coerce, load_training, read_yaml,

    recipes_dir,

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

    for key, value in (overrides or {}).items():
        if key.startswith("train.") and key.count(".") >= 2:  # train.schedule.kind=cosine, train.schedules.gen.kind=...
            _set_nested(train_data, key, value)
            continue
        section, _, leaf = key.rpartition(".")
        if section not in ("", "train", "params"):
            raise ConfigError(f"--set {key}: the key must be train.<field> or params.<field>")
        train_fields = {f.name for f in fields(TrainConfig)}
        param_fields = {f.name for f in fields(adapter.Params)}
        if section == "train" or (section == "" and leaf in train_fields):
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
    return MethodRecipe(
        name=str(data.get("name", name)),
        adapter=adapter_name,
        description=str(data.get("description", "")),
        training=training,
        size=size,
        params=params,
        train=train,
        source=where,
    )


def _set_nested(train_data: dict[str, Any], key: str, value: str) -> None:
    """``--set train.schedule.kind=cosine``: one value inside a typed section of the training config; the
    whole section is checked with the rest of the config."""
    path = key.split(".")[1:]
    sections = {f.name for f in fields(TrainConfig) if f.name in ("schedule", "schedules")}
    if path[0] not in sections:
        raise ConfigError(f"--set {key}: only {', '.join(sorted(sections))} have fields inside them; "
                          f"use --set train.<field>=<value> for the others")
    node = train_data
    for part in path[:-1]:
        child = node.get(part)
        node[part] = child = dict(child) if isinstance(child, dict) else {}
        node = child
    node[path[-1]] = value


def build_method(recipe: MethodRecipe) -> Method:
    """A fresh (untrained) method of ``recipe``."""
    return METHODS.get(recipe.adapter)(recipe.params, recipe.train)
