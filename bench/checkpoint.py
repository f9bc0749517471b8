"""Trained artefacts on disk: checkpoint files (weights, optimisers, RNG states), a run's identity and folder,
and loading a trained method back for evaluation or ``bench colorize``.

Checkpoints are written atomically and loaded with ``weights_only=True``: a checkpoint file never runs code.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.config import ConfigError, MethodRecipe
from bench.datasets.base import ImageSet
from bench.identity import method_code
from bench.methods import METHODS, Method
from bench.recipes import build_method, recipe_from_dict
from bench.store import atomic_path, file_sha256, read_json, train_dir, train_identity

CHECKPOINT = "checkpoint.pt"
TRAIN_JSON = "train.json"
LOSSES = "losses.csv"
CHECKPOINT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or of another run; the message says what to do."""


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_meta": [int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    pos, has_gauss, cached = state["numpy_meta"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, method: Method, optimizers: dict, scaler: Any, step: int, identity_hash: str,
                    rng: Any = None, extras: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> None:
    """``rng``: the RNG states to store (a list of every process's under torchrun); default this process's.
    ``extras``: what else a run resumes from (``ema``: the weight EMA's state; ``lr``: each optimiser's
    learning rate at this step, for the record: the schedule recomputes it from the step).
    ``meta``: plain data about the model (its recipe, identity, where its weights came from), so that the
    file alone is enough to rebuild and evaluate the model (:func:`load_model_file`)."""
    payload = {
        **(extras or {}),
        "format": CHECKPOINT_FORMAT,
        "identity": identity_hash,
        "step": step,
        "model": method.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng": rng if rng is not None else rng_state(),
        "meta": meta or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path, device: torch.device | str = "cpu", given: bool = False) -> dict[str, Any]:
    """Load with ``weights_only=True``: a checkpoint file can never run code. ``given``: a file the user
    named (``--checkpoint``), perhaps their only copy of a shared model: errors never advise deleting it."""
    if given:
        missing, broken = ("no such file; check the path (a run's model is results/train/<method>/<run>/checkpoint.pt)",
                           "; it may be truncated: copy it again from where it came from, or pass another checkpoint")
    else:
        missing, broken = "no checkpoint; train the method first (bench train ...)", "; delete it and retrain"
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {missing}") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: not a loadable colorbench checkpoint ({exc}){broken}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a colorbench checkpoint (unknown format){broken}")
    return ckpt


def run_identity(recipe: MethodRecipe, data: ImageSet, seed: int) -> dict[str, Any]:
    return train_identity(recipe.to_dict(), data.identity(), seed, method_code(METHODS.get(recipe.adapter)))


def run_dir_for(results: Path, recipe: MethodRecipe, data: ImageSet, seed: int) -> Path:
    return train_dir(results, recipe.name, data.name, seed, run_identity(recipe, data, seed))


def is_trained(run_dir: Path) -> bool:
    """Whether the run finished and its checkpoint is the file it finished with (the SHA-256 that
    ``train.json`` recorded). A finished run whose checkpoint differs (truncated by a full disk, copied in
    part, changed) is an error that says how to retrain, never "already trained"."""
    meta = run_dir / TRAIN_JSON
    ckpt = run_dir / CHECKPOINT
    if not meta.exists() or not ckpt.exists():
        return False
    info = read_json(meta)
    if info.get("status") != "done" or not info.get("checkpoint_sha256"):
        return False  # unfinished, or finished before checkpoints were hashed: resumed (and hashed) again
    if checkpoint_sha256(ckpt) != info["checkpoint_sha256"]:
        raise CheckpointError(
            f"{ckpt}: this finished run's checkpoint does not match the SHA-256 recorded in {meta.name} "
            f"({info['checkpoint_sha256'][:16]}...): it was truncated or changed after training. "
            "Retrain it with --restart (bench train ... --restart), or delete the folder"
        )
    return True


def checkpoint_sha256(path: Path) -> str:
    return file_sha256(path)  # cached per (path, size, modification time): a rewritten file is hashed again


def load_trained(recipe: MethodRecipe, run_dir: Path, device: torch.device) -> Method:
    """The trained method in eval mode (or a fresh one for methods that need no training)."""
    method = build_method(recipe)
    if recipe.trainable and type(method).needs_training:
        ckpt = load_checkpoint(run_dir / CHECKPOINT, device)
        method.load_state_dict(scored_weights(ckpt, recipe, run_dir / CHECKPOINT))
    return method.to(device).eval()


def scored_weights(ckpt: dict[str, Any], recipe: MethodRecipe, path: Path) -> dict[str, Any]:
    """The weights a checkpoint is scored with: the moving average when its recipe says so, else the raw ones."""
    if recipe.train.ema_decay and recipe.train.ema_eval:
        if not ckpt.get("ema"):
            raise CheckpointError(f"{path}: the recipe scores EMA weights (train.ema_decay) but the "
                                  "checkpoint holds none; delete the folder and retrain")
        return ckpt["ema"]["weights"]
    return ckpt["model"]


@dataclass
class ModelFile:
    """A model rebuilt from one checkpoint file, with what the file says about it."""

    path: Path
    recipe: MethodRecipe
    method: Method
    meta: dict[str, Any]
    sha256: str


def load_model_file(path: Path, device: torch.device | str = "cpu") -> ModelFile:
    """Rebuild a model from a checkpoint file alone: its recipe and identity travel inside it (or, for
    checkpoints written before that, in the ``train.json`` beside it). No training data is needed."""
    path = Path(path)
    ckpt = load_checkpoint(path, device, given=True)
    meta = dict(ckpt.get("meta") or {})
    if "recipe" not in meta:
        beside = path.parent / TRAIN_JSON
        if not beside.exists():
            raise CheckpointError(f"{path}: the checkpoint does not say which recipe made it (it predates colorbench "
                                  f"recording that) and no {TRAIN_JSON} is beside it; evaluate it from its run folder")
        train_meta = read_json(beside)
        meta.update(recipe=train_meta["recipe"], identity=train_meta.get("identity"), weights="trained")
    try:
        recipe = recipe_from_dict(meta["recipe"], str(path))
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    method = build_method(recipe)
    try:
        method.load_state_dict(scored_weights(ckpt, recipe, path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: its weights do not fit the {recipe.adapter} adapter of its recipe ({first})") from None
    return ModelFile(path, recipe, method.to(device).eval(), meta, file_sha256(path))
