"""Published models imported as colorbench checkpoints: the authors' released weights, scored by our
protocol like any model trained here (``bench import NAME FILE``, then ``bench run --checkpoint``).

Nothing is downloaded: the user fetches the file from where its authors publish it (:data:`PUBLISHED` names
the URL) and passes it. Released files are named as torch hub names them, with the first hex digits of their
SHA-256 in the name; a file whose digest does not start with the published prefix is refused, or imported
with ``unverified`` weights when the user asks for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from bench.checkpoint import save_checkpoint
from bench.config import TrainConfig, to_plain
from bench.methods.zhang import ECCV16_RELEASE, ZhangParams, state_from_published_eccv16
from bench.recipes import build_method, recipe_from_dict
from bench.store import file_sha256, short_hash


class PublishedWeightsError(ValueError):
    """A file that cannot be imported as the named published model; the message names it and the fix."""


@dataclass(frozen=True)
class Published:
    name: str
    paper: str
    file: str  # the released file name
    url: str
    sha256_prefix: str
    recipe: Callable[[dict[str, torch.Tensor]], dict[str, Any]]  # the stored recipe, from the state dict
    convert: Callable[[dict[str, torch.Tensor], str], dict[str, torch.Tensor]]  # release -> our state dict


def _eccv16_recipe(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    q = int(state["model_out.weight"].shape[1]) if "model_out.weight" in state else 313
    return {
        "name": "zhang-eccv16",
        "adapter": "zhang",
        "description": "Zhang et al. 2016, the authors' released ECCV16 weights (ImageNet), decoded as released: the mean of the softmax (T = 1)",
        "training": None,
        "size": "published",
        # Their forward is softmax then a 1x1 conv whose weights are the bin centres: the annealed mean at T = 1.
        "params": to_plain(ZhangParams(n_bins=q, decode="annealed", temperature=1.0)),
        "train": to_plain(TrainConfig(batch_size=8)),  # only the evaluation batch is read
    }


PUBLISHED: dict[str, Published] = {
    "zhang-eccv16": Published(
        name="zhang-eccv16",
        paper="Zhang, Isola & Efros, Colorful Image Colorization, ECCV 2016 (released PyTorch port, richzhang/colorization)",
        file=ECCV16_RELEASE["file"],
        url=ECCV16_RELEASE["url"],
        sha256_prefix=ECCV16_RELEASE["sha256_prefix"],
        recipe=_eccv16_recipe,
        convert=state_from_published_eccv16,
    ),
}

_HUB_NAME = re.compile(r"-([0-9a-f]{6,64})$")  # torch hub: <name>-<first hex digits of the SHA-256>.<ext>


def verify(model: Published, path: Path, unverified: bool) -> tuple[str, str]:
    """(sha256, "published" or "unverified"): the file's digest checked against the published prefix."""
    digest = file_sha256(path)
    named = _HUB_NAME.search(path.stem)
    if named and not digest.startswith(named.group(1)):
        raise PublishedWeightsError(f"{path}: damaged or altered: its name says SHA-256 {named.group(1)}..., its bytes hash to "
                           f"{digest[:16]}...; download it again from {model.url}")
    if digest.startswith(model.sha256_prefix):
        return digest, "published"
    if not unverified:
        raise PublishedWeightsError(f"{path}: not the published {model.file} (its SHA-256 starts with {digest[:8]}, the release's with "
                           f"{model.sha256_prefix}); get it from {model.url}, or pass --unverified to import it anyway "
                           "(its results then say weights: unverified)")
    return digest, "unverified"


def import_published(name: str, path: Path, out: Path, unverified: bool = False) -> dict[str, Any]:
    """Convert the released file ``path`` of model ``name`` into a colorbench checkpoint at ``out``; returns
    the checkpoint's meta (recipe, identity, weights)."""
    if name not in PUBLISHED:
        raise PublishedWeightsError(f"no published model {name!r}; choices: {', '.join(sorted(PUBLISHED))}")
    model = PUBLISHED[name]
    path = Path(path)
    if not path.is_file():
        raise PublishedWeightsError(f"{path}: no such file; download {model.file} from {model.url} and pass its path")
    digest, weights = verify(model, path, unverified)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PublishedWeightsError(f"{path}: not a loadable PyTorch state dict ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PublishedWeightsError(f"{path}: holds a {type(state).__name__}, not a state dict")
    recipe_dict = model.recipe(state)
    try:
        ours = model.convert(state, str(path))
    except ValueError as exc:
        raise PublishedWeightsError(str(exc)) from None
    recipe = recipe_from_dict(recipe_dict, f"published model {name}")
    with torch.device("meta"):  # the weights all come from the file: skip the random initialisation
        method = build_method(recipe)
    method.load_state_dict(ours, assign=True)
    identity = {"published": name, "file": path.name, "sha256": digest, "url": model.url, "paper": model.paper}
    meta = {"recipe": recipe_dict, "identity": identity, "identity_hash": short_hash(identity, 64), "weights": weights}
    save_checkpoint(Path(out), method, {}, None, 0, meta["identity_hash"], rng={}, meta=meta)
    return meta
