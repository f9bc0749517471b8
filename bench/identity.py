"""What produced a trained artefact or a result, as data: code identity, result identity, labels, lookup.

* **Code**: a trained artefact records a hash of the source of its method (the adapter's module and every
  module of its package or of ``bench`` it imports, transitively, late imports included) and of the
  training loop and crop sampler, so editing a method retrains it without a version bump.
* **Result identity**: everything that produced a result (method, recipe after overrides, seed, training
  identity, evaluation data content and protocol, prediction scale and tiling, metric conventions, code).
  Its hash names the result file (``<method>-s<seed>-<hash10>``), unless the user names it with ``--tag``.
* **Labels**: a short text saying how results of one method differ (``unet · gpu · lr=0.0003``), for
  reports and for the candidates listed when a reference is ambiguous.
* **Lookup**: a result by method, dataset, split, seed and, where several exist, tag or hash prefix.
"""

from __future__ import annotations

import ast
import difflib
import functools
import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from bench.store import code_version, iter_results, short_hash

TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
SCHEMA1_ID = "schema1"  # how a result of schema 1 (one file per method, dataset, split and seed) is addressed
# Modules besides the adapter's own closure whose code decides what a run learns: the loop, the crop
# sampler, and what the loop applies for a recipe (learning-rate schedules, the weight EMA that may be the
# scored model, the held-out slice that training never sees).
TRAINING_MODULES = ("bench.train", "bench.datasets.views", "bench.schedules", "bench.averaging", "bench.validation")


class ResultLookupError(LookupError):
    """No result, or several, for a reference; the message lists the candidates and how to name one."""


def check_tag(tag: str | None) -> str | None:
    if tag is not None and not TAG_PATTERN.fullmatch(tag):
        raise ValueError(f"--tag {tag!r}: use 1-40 letters, digits, '-' or '_' (it becomes part of the result file name)")
    return tag


# --------------------------------------------------------------------------------------------------
# Code identity


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def _imports(path: Path, name: str, roots: set[str]) -> set[str]:
    """The modules of the ``roots`` packages that ``path`` imports anywhere (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for a in node.names:  # ``from pkg import mod`` imports a module; ``from mod import name`` the module
                found.add(f"{base}.{a.name}" if _module_file(f"{base}.{a.name}") else base)
    return {m for m in found if m.split(".")[0] in roots}


@functools.lru_cache(maxsize=64)
def source_closure(module: str) -> tuple[str, ...]:
    """``module`` and the modules it imports, transitively, within its own top-level package and ``bench``.

    Package ``__init__`` modules are neither hashed nor followed: a package's ``__init__`` imports its
    members to register them, and following it would tie every method to every other."""
    roots = {module.split(".")[0], "bench"}
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None or (path.name == "__init__.py" and name != module):
            continue
        seen.add(name)
        todo.extend(_imports(path, name, roots) - seen)
    return tuple(sorted(seen))


def code_hash(modules: Iterable[str]) -> str:
    """SHA-256 over the names and source bytes of ``modules`` (sorted)."""
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        path = _module_file(name)
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path else b"(no source)") + b"\0")
    return digest.hexdigest()


def method_code(adapter: type) -> dict[str, Any]:
    """The code identity of a method: package version and a hash of the source it trains with."""
    modules = {*source_closure(adapter.__module__), *TRAINING_MODULES}
    return {"colorbench": code_version(), "source_sha256": code_hash(modules), "modules": len(modules)}


# --------------------------------------------------------------------------------------------------
# Result identity


def result_identity(*, method: str, recipe: Mapping[str, Any] | None, seed: int | None, training: str | None,
                    data: Mapping[str, Any], prediction: Mapping[str, Any], conventions: Mapping[str, str],
                    code: Mapping[str, Any], source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything that produced a result. Left out on purpose: the device, thread count, bootstrap resamples
    and chunking (they do not change what is measured; the result file records them).

    ``source``: what made the outputs when it is not a method trained here (a checkpoint file or published
    weights by SHA-256, a folder of outputs by content hash); None for methods trained or run here, whose
    identities stay as they were before sources existed."""
    identity = {
        "method": method,
        "recipe": dict(recipe) if recipe is not None else None,
        "seed": seed,
        "training": training,  # the training identity hash; None for methods that need no training
        "data": {k: data.get(k) for k in ("name", "split", "content_hash", "eval_protocol")},
        "prediction": dict(prediction),
        "metrics": dict(conventions),
        "code": dict(code),
    }
    if source is not None:
        identity["source"] = dict(source)
    return identity


def identity_hash(identity: Mapping[str, Any]) -> str:
    return short_hash(identity, 64)


def result_id(data: Mapping[str, Any]) -> str:
    """How a stored result is addressed beside its method: its tag, the first 10 hex digits of its identity
    hash, or ``schema1`` for a result written before results had identities."""
    if data.get("result_id"):
        return str(data["result_id"])
    return SCHEMA1_ID if int(data.get("schema_version") or 1) < 2 else str(data.get("identity_hash", ""))[:10]


# --------------------------------------------------------------------------------------------------
# Where a result's model came from: its training data and its source


def source_of(data: Mapping[str, Any]) -> dict[str, Any]:
    """A result's ``source`` (``{"kind": "trained" | "untrained" | "checkpoint" | "published" | "external", ...}``).
    Results written before the key existed are ``trained`` when they record a training run, else ``untrained``."""
    src = data.get("source")
    if isinstance(src, Mapping) and src.get("kind"):
        return dict(src)
    return {"kind": "trained" if data.get("train") else "untrained"}


def trained_on(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The data a result's model was trained on (``{"name", "split", "content_hash", "short_side"}``), or None
    (a method that needs no training, published weights, outputs made elsewhere). A result written before
    the key existed and recording a training run was trained on its own dataset's train split (the only way
    colorbench trained then): that is returned with ``"inferred": True``."""
    if "trained_on" in data:
        value = data["trained_on"]
        return dict(value) if isinstance(value, Mapping) else None
    if data.get("train"):
        name = (data.get("dataset") or {}).get("name")
        return {"name": name, "split": "train", "content_hash": None, "short_side": None, "inferred": True}
    return None


def source_text(data: Mapping[str, Any]) -> str:
    """Where a result's model came from, in a few words: ``trained here``, ``no training``, ``checkpoint``,
    ``published weights``, ``published weights (unverified)`` or ``external``."""
    src = source_of(data)
    kind, weights = src.get("kind"), src.get("weights")
    if kind == "external":
        return "external"
    if weights == "unverified":
        return "published weights (unverified)"
    if weights == "published" or kind == "published":
        return "published weights"
    return {"trained": "trained here", "untrained": "no training", "checkpoint": "checkpoint"}.get(str(kind), str(kind))


# --------------------------------------------------------------------------------------------------
# Labels: how results of one method differ

# Settings with no readable form: shown in a label only where nothing readable tells results apart.
_HIDDEN = ("trained_on_data", "training", "code")


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def setting_features(data: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of one result that can tell it from another of the same method, by name."""
    out: dict[str, Any] = {}
    recipe = data.get("recipe") or {}
    out["recipe"] = recipe.get("size")
    for section in ("params", "train"):
        leaves: dict[str, Any] = {}
        _flat("", recipe.get(section) or {}, leaves)
        out.update({f"{section}.{k}": v for k, v in leaves.items()})
    identity = data.get("identity") or {}
    out["prediction"] = _prediction_text(data.get("prediction") if "prediction" in data else None)
    out["source"] = source_text(data)
    src = source_of(data)
    if src.get("kind") == "external":  # outputs made elsewhere: which folder or callable they came from
        where = src.get("predictions") or src.get("callable")
        out["outputs"] = None if where is None else (Path(where).name if src.get("predictions") else str(where).rsplit(".", 1)[-1])
    trained = trained_on(data)
    out["trained_on"] = None if trained is None else trained.get("name")
    out["trained_on_data"] = None if trained is None else trained.get("content_hash")
    out["training"] = identity.get("training")
    out["code"] = (identity.get("code") or {}).get("source_sha256")
    out["metrics"] = tuple(sorted(identity.get("metrics") or (data.get("metrics") or {})))
    out["schema"] = int(data.get("schema_version") or 1)
    return out


def _prediction_text(prediction: Mapping[str, Any] | None) -> str | None:
    if prediction is None:
        return None  # schema 1: not recorded
    if prediction.get("tile"):
        return f"tiles {prediction['tile']}/{prediction.get('tile_overlap') or 0}"
    return "whole"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_value(x) for x in v)
    return "null" if v is None else str(v)


def describe_setting(key: str, value: Any) -> str:
    """One setting of :func:`setting_features` as a label shows it (``lr=0.0003``, ``trained on div2k``)."""
    if key == "recipe":
        return str(value)
    if key == "prediction":
        return "predicted whole" if value == "whole" else f"predicted in {value}"
    if key == "schema":
        return f"schema {value}"
    if key == "source":
        return str(value)
    if key == "trained_on":
        return "" if value is None else f"trained on {value}"
    if key == "trained_on_data":
        return "" if value is None else f"training data {str(value)[:8]}"
    if key in ("training", "code"):
        return f"{key} {str(value)[:8]}"
    if key == "outputs":
        return f"from {value}"
    if key == "metrics":
        return f"{len(value)} metric{'' if len(value) == 1 else 's'}"
    return f"{key.split('.', 1)[1]}={_value(value)}"


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _unexplained(key: str, feats: Sequence[Mapping[str, Any]], seeds: Sequence[Any], readable: Sequence[str]) -> bool:
    """Whether results that agree on every readable setting still differ in ``key``. A training identity
    includes the seed, so for ``training`` only results of one seed are compared: seeds of one setting
    must read alike, or they could not be told to be one setting."""
    seen: dict[tuple, set[str]] = {}
    for f, seed in zip(feats, seeds):
        group = tuple(_key(f.get(k)) for k in readable) + ((_key(seed),) if key == "training" else ())
        seen.setdefault(group, set()).add(_key(f.get(key)))
    return any(len(values) > 1 for values in seen.values())


def labels(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """One label per result: its method, its tag if any, and every setting in which it differs from another
    result of the same method in ``results`` (``unet · gpu · lr=0.0003``, ``zhang · published weights``,
    ``unet · trained on div2k``); settings with no readable form (training data content, training identity,
    code) only where nothing readable tells the results apart. Seeds of one setting read alike on purpose;
    results of one seed that still read alike are told apart by their id."""
    out = [""] * len(results)
    by_method: dict[str, list[int]] = {}
    for i, r in enumerate(results):
        by_method.setdefault(str(r.get("method")), []).append(i)
    for method, idx in by_method.items():
        feats = [setting_features(results[i]) for i in idx]
        keys = [k for k in feats[0] if len({_key(f.get(k)) for f in feats}) > 1]
        readable = [k for k in keys if k not in _HIDDEN]
        seeds = [results[i].get("seed") for i in idx]
        shown = readable + [k for k in _HIDDEN if k in keys and _unexplained(k, feats, seeds, readable)]
        texts = []
        for i, f in zip(idx, feats):
            parts = [method]
            if results[i].get("tag"):
                parts.append(str(results[i]["tag"]))
            parts += [describe_setting(k, f.get(k)) for k in shown if not (k == "prediction" and f.get(k) is None)]
            texts.append(" · ".join(p for p in parts if p))
        # Several seeds of one setting read alike on purpose (tables show the seed); the same setting and
        # seed twice (results of other code or data) is told apart by its id.
        seen = [(t, results[i].get("seed")) for t, i in zip(texts, idx)]
        texts = [f"{t} · {result_id(results[i])}" if seen.count((t, results[i].get("seed"))) > 1 else t
                 for t, i in zip(texts, idx)]
        for i, t in zip(idx, texts):
            out[i] = t
    return out


# --------------------------------------------------------------------------------------------------
# Lookup


@dataclass(frozen=True)
class Found:
    """One stored result file and its contents (the report's ``Stored`` adds what tables group it by)."""

    path: Path
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return result_id(self.data)


def parse_reference(text: str) -> tuple[str, str | None]:
    """``unet`` -> ("unet", None); ``unet@gpu-run`` or ``unet@3f2a1c`` -> ("unet", "gpu-run" / "3f2a1c")."""
    method, sep, ref = text.partition("@")
    return method, (ref or None) if sep else None


def matches(data: Mapping[str, Any], ref: str | None) -> bool:
    """Whether a result is the one ``ref`` names: its tag, its id, or a prefix (>= 4 hex digits) of its hash."""
    if ref is None:
        return True
    if ref in (data.get("tag"), result_id(data)):
        return True
    return len(ref) >= 4 and str(data.get("identity_hash", "")).startswith(ref.lower())


def _address(path: Path, data: Mapping[str, Any]) -> tuple[str, str, str, int | None]:
    """(method, dataset, split, seed) of a stored result; what a hand-written or old file leaves out is read
    from its place: ``eval/<dataset>/<split>/<method>-s<seed>[-<id>].json``."""
    found = re.match(r"(.+)-s(\d+)(?:-[A-Za-z0-9_-]+)?(?:\.failed)?$", path.stem)
    method = data.get("method") or (found.group(1) if found else path.stem)
    seed = data.get("seed", int(found.group(2)) if found else None)
    return str(method), str((data.get("dataset") or {}).get("name") or path.parent.parent.name), \
        str(data.get("split") or path.parent.name), seed


def find_results(root: Path, method: str, dataset: str, split: str, seed: int | None = None, ref: str | None = None,
                 ok_only: bool = True) -> list[Found]:
    out = []
    for path, data in iter_results(root):
        m, d, sp, sd = _address(path, data)
        if m != method or d != dataset or sp != split or (seed is not None and sd is not None and sd != seed):  # None: no seed of ours
            continue
        if ok_only and data.get("status") != "ok":
            continue
        if matches(data, ref):
            out.append(Found(path, data))
    exact = [f for f in out if ref is not None and ref in (f.data.get("tag"), f.id)]
    return exact or out  # a whole tag or id names its result even where it is also a prefix of another's hash


def describe_candidates(found: Sequence[Found]) -> str:
    texts = labels([f.data for f in found])
    return "\n".join(f"  {f.data.get('method')}@{f.id}  ({text}; seed {f.data.get('seed')}; {f.path})" for f, text in zip(found, texts))


def resolve_result(root: Path, reference: str, dataset: str, split: str, seed: int | None = None) -> Found:
    """The one stored result ``reference`` (``METHOD`` or ``METHOD@TAG_OR_HASH``) names, or an error listing
    the candidates."""
    method, ref = parse_reference(reference)
    found = find_results(root, method, dataset, split, seed, ref)
    where = f"{dataset}/{split}" + (f", seed {seed}" if seed is not None else "")
    if len(found) == 1:
        return found[0]
    if not found:
        others = find_results(root, method, dataset, split, seed)
        if ref is not None and others:
            raise ResultLookupError(f"no result of {method} on {where} matches {ref!r}; the results of {method} there are:\n"
                                    + describe_candidates(others))
        here = [(m, sd) for m, d, sp, sd in (_address(p, data) for p, data in iter_results(root)) if (d, sp) == (dataset, split)]
        stored = sorted({m for m, _ in here})
        if method in stored:
            seeds = sorted({str(sd) for m, sd in here if m == method})
            there = f"{method} has results there for seed {', '.join(seeds)} (--seed, --seed-b)"
        else:
            close = difflib.get_close_matches(method, stored, n=3, cutoff=0.6)
            there = (f"did you mean {', '.join(close)}? " if close else "") + \
                (f"results on {dataset}/{split} are of: {', '.join(stored)}" if stored else f"no results on {dataset}/{split} at all")
        from bench.recipes import method_names  # late: only this error needs the list of methods

        seed_flag = f" --seed {seed}" if seed not in (None, 0) else ""
        make = (f"to make one, run 'bench run --methods {method} --dataset {dataset} --split {split}{seed_flag}' "
                "(with the --root or --train-on it needs)") if method in method_names() else \
            f"{method} is not a colorbench method either (bench list methods)"
        raise ResultLookupError(f"no result for {method} on {where} under {root}; {there}; {make}")
    raise ResultLookupError(f"{reference} names {len(found)} results on {where}; name one as METHOD@TAG or "
                            f"METHOD@HASH (4+ hex digits):\n" + describe_candidates(found))

