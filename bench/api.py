"""colorbench from Python: ``bench.score(fn, dataset=...)`` scores any callable with the evaluation code,
protocol and result format of ``bench run``, without writing an adapter.

``input="rgb"``: ``fn`` takes the gray inputs as uint8 RGB (B, 3, H, W) (R = G = B: the L of each ground
truth with ab = 0) and returns colourised uint8 RGB of the same shape, scored as produced (as ``bench
score`` scores files), with the lightness check. ``input="lab"``: ``fn`` takes L (B, 1, H, W) in [0, 100]
and returns ab (B, 2, H, W) in Lab units, joined to the input's L and converted as a method's prediction
is (full-size protocols: predicted at the card's ``short_side`` and upsampled onto the full-resolution L).

The callable sees the items the protocol scores: tiles or centre crops (in batches of ``batch_size``) for
fixed-size protocols, whole images (one at a time) for ``full``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from bench.color import lab_to_rgb_uint8, rgb_to_lab
from bench.datasets import DATASETS
from bench.datasets.base import open_split
from bench.datasets.views import EvalView
from bench.evaluate import colorize, colorize_full
from bench.external import ScoreSettings, hashing, score_external
from bench.identity import TAG_PATTERN
from bench.recipes import method_names
from bench.metrics import parse_metric_names

INPUTS = ("rgb", "lab")


class _AbFunction:
    """A callable L -> ab where the evaluation code expects a method (``predict_ab``); the input's L is kept."""

    predicts_lightness = False

    def __init__(self, fn: Callable[[Tensor], Tensor]):
        self.fn = fn

    def predict_ab(self, L: Tensor) -> Tensor:
        ab = self.fn(L)
        if not isinstance(ab, Tensor) or ab.shape != (L.shape[0], 2, *L.shape[2:]):
            got = tuple(ab.shape) if isinstance(ab, Tensor) else type(ab).__name__
            raise ValueError(f"bench.score(input='lab'): fn returned {got} for L of shape {tuple(L.shape)}; "
                             f"return ab as a float tensor of shape {(L.shape[0], 2, *L.shape[2:])}")
        return ab.to(L.device, torch.float32)


def _rgb_predictor(fn: Callable[[Tensor], Tensor]):
    def predict(rgb: Tensor, items: list[int]) -> Tensor:
        lab = rgb_to_lab(rgb)
        gray = lab_to_rgb_uint8(torch.cat([lab[:, :1], torch.zeros_like(lab[:, 1:])], 1))
        out = fn(gray)
        if not isinstance(out, Tensor) or out.dtype != torch.uint8 or out.shape != rgb.shape:
            got = f"{out.dtype} {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"bench.score(input='rgb'): fn returned {got} for inputs of shape {tuple(rgb.shape)}; "
                             "return colourised uint8 RGB of the same shape (B, 3, H, W)")
        return out.to(rgb.device)

    return predict


def score(
    fn: Callable[[Tensor], Tensor],
    *,
    dataset: str = "samples",
    split: str = "test",
    root: str | Path | None = None,
    metrics: str | Sequence[str] = "default",
    input: str = "rgb",
    name: str | None = None,
    about: str | None = None,
    results: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    bootstrap: int = 1000,
    on_bad_image: str = "skip",
    inception_weights: str | None = None,
    progress: bool | None = False,
) -> dict[str, Any]:
    """Score ``fn`` on ``split`` of ``dataset`` and return the result dict (as stored by ``bench run``:
    ``result["metrics"]["psnr"]["mean"]``, ``result["lightness"]``, ...). Files are written only when
    ``results`` is a folder: then the result sits there beside the others (keyed by a hash of the outputs
    ``fn`` gave), marked external, and appears on leaderboards as ``name`` (default: ``fn``'s name)."""
    if input not in INPUTS:
        raise ValueError(f"bench.score: input={input!r}; choose 'rgb' (uint8 RGB -> uint8 RGB) or 'lab' (L -> ab)")
    names = parse_metric_names(metrics) if isinstance(metrics, str) else list(metrics)
    label = name or getattr(fn, "__name__", None) or type(fn).__name__
    label = label if label != "<lambda>" else "python"
    if results is not None and not TAG_PATTERN.fullmatch(label):
        raise ValueError(f"bench.score: name {label!r} names the result files; use 1-40 letters, digits, '-' or '_' (name=...)")
    if label in method_names():  # as `bench score --name`: its rows must never pass for the method run here
        raise ValueError(f"bench.score: name {label!r} is a colorbench method; name the system that made the outputs "
                         f"(name='{label}-mine', say)")
    images = open_split(DATASETS.get(dataset), split, root, on_bad_image=on_bad_image)
    view = EvalView(images)
    if input == "lab":
        model = _AbFunction(fn)
        if view.fixed_size:
            predict = lambda rgb, items: colorize(model, rgb)  # noqa: E731
        else:
            predict = lambda rgb, items: colorize_full(model, rgb, view.work_size)  # noqa: E731
    else:
        predict = _rgb_predictor(fn)
    predict, digest = hashing(predict)
    where = f"{getattr(fn, '__module__', None) or '?'}.{getattr(fn, '__qualname__', None) or type(fn).__qualname__}"
    source = {"kind": "external", "name": label, "about": about, "predictions": None, "callable": where, "input": input,
              "n_expected": len(images), "n_scored": len(images)}
    settings = ScoreSettings(metrics=tuple(names), results=Path(results) if results is not None else None, device=device,
                             batch_size=batch_size, bootstrap=bootstrap, inception_weights=inception_weights,
                             progress=progress, lightness=input == "rgb")
    return score_external(predict, images=images, view=view, name=label, source=source, source_hash=digest, settings=settings)
