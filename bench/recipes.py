"""Where a recipe meets the method registry: recipe files -> :class:`MethodRecipe` -> a method.

:mod:`bench.config` holds the dataclasses and the YAML rules; this module looks adapters up in
:data:`bench.methods.METHODS` (their ``Params`` type the ``params`` section) and builds methods. The
registry (and with it torch) is imported only when an adapter is needed: naming and describing the
methods (``bench list methods``) reads the recipe files alone, unless a plugin is installed.
"""

from __future__ import annotations

import sys
import typing
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Mapping

from bench.config import (
    DEFAULT_PREDICT,
    RECIPE_KEYS,
    SIZES,
    ConfigError,
    MethodRecipe,
    PredictConfig,
    TrainConfig,
    build_dataclass,
    coerce,
    load_training,
    range_problem,
    read_yaml,
    recipes_dir,
)
from bench.registry import UnknownName, has_plugins
from bench.schedules import check_optimizer_names

if TYPE_CHECKING:
    from bench.methods import Method

METHOD_PLUGINS = "colorbench.methods"  # the entry-point group of bench.methods.METHODS


def _plugin_recipes() -> dict[str, Mapping[str, Any]]:
    """name -> recipe of every method that carries its own recipe (plugins). Importing the registry
    imports torch, so it happens only when a plugin is installed (or the registry is loaded already, where
    code may have registered a method itself): built-in adapters all have YAML files."""
    if "bench.methods" not in sys.modules and not has_plugins(METHOD_PLUGINS):
        return {}
    from bench.methods import METHODS

    return {n: METHODS.get(n).recipe for n in METHODS.names() if getattr(METHODS.get(n), "recipe", None) is not None}


def method_names() -> list[str]:
    """Every method a user can name: recipe files plus adapters of plugins that carry their own recipe."""
    names = {p.stem for p in recipes_dir().glob("*.yaml")}
    names.update(_plugin_recipes())
    return sorted(names)


@dataclass(frozen=True)
class RecipeSummary:
    """What ``bench list methods`` shows of a recipe, read without building it (no adapter, no torch)."""

    name: str
    adapter: str
    description: str
    training: str | None


def recipe_summaries() -> list[RecipeSummary]:
    """One summary per nameable method, from the recipe files (and plugins' recipes when there are any)."""
    raw: dict[str, Mapping[str, Any]] = {p.stem: read_yaml(p) for p in recipes_dir().glob("*.yaml")}
    for name, recipe in _plugin_recipes().items():
        raw.setdefault(name, recipe)
    return [RecipeSummary(name, str(d.get("adapter", name)), str(d.get("description", "")), d.get("training"))
            for name, d in sorted(raw.items())]


def _recipe_data(name: str) -> tuple[dict[str, Any], str]:
    path = recipes_dir() / f"{name}.yaml"
    if path.exists():
        return read_yaml(path), str(path)
    plugins = _plugin_recipes()
    if name in plugins:
        return dict(plugins[name]), f"recipe of plugin method {name!r}"
    raise UnknownName("method", name, method_names())


def _adapter(data: Mapping[str, Any], name: str, where: str) -> type:
    from bench.methods import METHODS

    try:
        return METHODS.get(data.get("adapter", name))
    except UnknownName as exc:
        raise ConfigError(f"{where}: adapter: {exc}") from None


def param_names(name: str) -> set[str]:
    """The ``params.<field>`` keys method ``name`` takes (its adapter's ``Params`` fields)."""
    data, where = _recipe_data(name)
    return {f.name for f in fields(_adapter(data, name, where).Params)}


def split_key(key: str) -> tuple[str, str]:
    """``train.lr`` -> (``train``, ``lr``); a key without its section is refused (``params.width`` and a
    training field may share a name, and the prefix says which is meant)."""
    section, _, leaf = key.rpartition(".")
    if section not in ("train", "params", "predict") or not leaf:
        hint = ""
        if not section and leaf in {f.name for f in fields(TrainConfig)}:
            hint = f" (did you mean train.{leaf}?)"
        raise ConfigError(f"--set {key}: the key must be train.<field>, params.<field> or predict.<field>{hint}")
    return section, leaf


def applicable_overrides(name: str, overrides: Mapping[str, str]) -> dict[str, str]:
    """``overrides`` without the ``params.*`` keys method ``name``'s parameters do not have (one ``--set``
    serves several methods; the CLI refuses a key that no method of the command has)."""
    if not any(k.startswith("params.") for k in overrides):
        return dict(overrides)
    have = param_names(name)
    return {k: v for k, v in overrides.items() if not k.startswith("params.") or k.removeprefix("params.") in have}


def load_recipe(name: str, size: str = "cpu", overrides: Mapping[str, str] | None = None) -> MethodRecipe:
    """The recipe of method ``name`` at ``size``, with ``overrides`` (``train.lr=3e-4``, ``params.width=64``)."""
    if size not in SIZES:
        raise ConfigError(f"unknown recipe size {size!r}; choices: {', '.join(SIZES)}")
    data, where = _recipe_data(name)
    unknown = sorted(set(data) - RECIPE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(RECIPE_KEYS))}")
    adapter_name = data.get("adapter", name)
    adapter = _adapter(data, name, where)

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

    train_fields = {f.name for f in fields(TrainConfig)}
    param_fields = {f.name for f in fields(adapter.Params)}
    for key, value in (overrides or {}).items():
        if key.startswith("train.") and key.count(".") >= 2:  # train.schedule.kind=cosine, train.schedules.gen.kind=...
            _set_nested(train_data, key, value)
            continue
        section, leaf = split_key(key)
        if section == "predict":
            predict_fields = {f.name for f in fields(PredictConfig)}
            if leaf not in predict_fields:
                raise ConfigError(f"--set {key}: predict has no field {leaf!r}; fields: {', '.join(sorted(predict_fields))}")
            predict_data[leaf] = coerce(value, typing.get_type_hints(PredictConfig)[leaf], f"--set {key}")
        elif section == "train":
            if leaf not in train_fields:
                raise ConfigError(f"--set {key}: TrainConfig has no field {leaf!r}; fields: {', '.join(sorted(train_fields))}")
            train_data[leaf] = coerce(value, typing.get_type_hints(TrainConfig)[leaf], f"--set {key}")
            problem = range_problem(TrainConfig, leaf, train_data[leaf])
            if problem:
                raise ConfigError(f"--set {key}={value}: out of range: {key} {problem}")
        elif leaf in param_fields:
            params_data[leaf] = coerce(value, typing.get_type_hints(adapter.Params)[leaf], f"--set {key}")
            problem = range_problem(adapter.Params, leaf, params_data[leaf])
            if problem:
                raise ConfigError(f"--set {key}={value}: out of range: {key} {problem}")
        else:
            raise ConfigError(
                f"--set {key}: {name}'s params ({adapter_name}) have no {leaf!r}; "
                f"params: {', '.join(sorted(param_fields)) or '(none)'}"
            )
    train = build_dataclass(TrainConfig, train_data, f"{where}: sizes.{size}")
    names = declared_optimizer_names(adapter)
    if names is not None:
        try:
            check_optimizer_names(train, names, where)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
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


def declared_optimizer_names(adapter: type) -> tuple[str, ...] | None:
    """The optimiser names an adapter declares beside its ``configure_optimizers`` (None: not declared
    there, e.g. a subclass that returns other optimisers, so only the trainer can tell)."""
    owner = next((c for c in adapter.__mro__ if "configure_optimizers" in vars(c)), None)
    return None if owner is None else vars(owner).get("optimizer_names")


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


def build_method(recipe: MethodRecipe) -> "Method":
    """A fresh (untrained) method of ``recipe``."""
    from bench.methods import METHODS

    return METHODS.get(recipe.adapter)(recipe.params, recipe.train)


def recipe_from_dict(data: Mapping[str, Any], where: str) -> MethodRecipe:
    """A recipe stored as :meth:`MethodRecipe.to_dict` (in a checkpoint or a result) as a recipe again,
    typed by the adapter's ``Params`` (so a recipe from an incompatible version is an error naming ``where``)."""
    from bench.methods import METHODS

    if not isinstance(data, Mapping) or "adapter" not in data or "name" not in data:
        raise ConfigError(f"{where}: the stored recipe is not a colorbench recipe (no name/adapter)")
    try:
        adapter = METHODS.get(str(data["adapter"]))
    except UnknownName as exc:
        raise ConfigError(f"{where}: needs the method adapter {data['adapter']!r}, which is not installed here ({exc})") from None
    size = str(data.get("size", ""))
    training = data.get("training")
    # Predicted as a run of that recipe predicts (tiles at the training crop size for cpu recipes).
    predict = build_dataclass(PredictConfig, DEFAULT_PREDICT.get(size, {}) if training else {}, f"{where}: predict")
    return MethodRecipe(
        name=str(data["name"]),
        adapter=str(data["adapter"]),
        description=str(data.get("description", "")),
        training=training,
        size=size,
        params=build_dataclass(adapter.Params, data.get("params"), f"{where}: params"),
        train=build_dataclass(TrainConfig, data.get("train"), f"{where}: train"),
        source=where,
        predict=predict,
    )


def with_prediction(recipe: MethodRecipe, tile: int | None = None, overlap: int | None = None,
                    overrides: Mapping[str, str] | None = None) -> MethodRecipe:
    """``recipe`` (a saved model's) predicting as ``--tile``/``--tile-overlap`` and the ``predict.*`` keys of
    ``overrides`` (``--set``) say; ``--set`` wins, as in a method's recipe. Other keys are refused: a saved
    model's network and training are fixed (see :func:`fixed_model_overrides`)."""
    import dataclasses

    fixed = fixed_model_overrides(overrides or {})
    if fixed:
        raise ConfigError(f"--set {fixed[0]}: a saved model's network and training are fixed; "
                          "only predict.tile and predict.overlap apply to --checkpoint")
    values = {k.removeprefix("predict."): v for k, v in (overrides or {}).items()}
    if tile is not None:
        values.setdefault("tile", str(tile) if tile else "null")
    if overlap is not None:
        values.setdefault("overlap", str(overlap))
    if not values:
        return recipe
    predict = build_dataclass(PredictConfig, values, "--set predict / --tile", base=recipe.predict)
    if predict == recipe.predict:
        return recipe
    try:
        predict.resolve(recipe.train.image_size)
    except ConfigError as exc:
        raise ConfigError(f"--tile/--tile-overlap: {exc}") from None
    return dataclasses.replace(recipe, predict=predict)


def fixed_model_overrides(overrides: Mapping[str, str]) -> list[str]:
    """The ``--set`` keys a saved model cannot take (all but ``predict.*``)."""
    return [k for k in overrides if not k.startswith("predict.")]
