"""Validation curves (``train.val_every``): PSNR and SSIM of the model being trained, every N steps, on a
fixed slice of the training split that training never sees. Never the test split: nothing about the
scored model is chosen on it, and the model scored stays the last checkpoint (no best-on-validation
selection either; the curves are for reading, e.g. to see over-fitting or a schedule's effect).

The slice is ``val_images`` images spread evenly over the split (at most a quarter of it), the same for
every seed, so curves of different runs are comparable. Each image is brought to the training scale (the
card's ``short_side``, as training crops are) and centre-cropped to the training crop size, colourised as in
:func:`bench.evaluate.colorize` (L -> ab -> uint8 sRGB) and scored as the ``psnr`` and ``ssim`` metrics do.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
import torchvision.transforms.v2.functional as TF

from bench.datasets.base import ImageSet, SplitPart
from bench.datasets.views import resize_short
from bench.evaluate import colorize
from bench.metrics.functional import psnr, ssim

VALIDATION = "validation.csv"


def held_out_indices(n_split: int, n_wanted: int) -> list[int]:
    """``min(n_wanted, n_split // 4)`` indices spread evenly over ``range(n_split)`` (centres of equal runs)."""
    k = min(n_wanted, n_split // 4)
    return [((2 * j + 1) * n_split) // (2 * k) for j in range(k)]


def hold_out(data: ImageSet, n_wanted: int) -> tuple[SplitPart, SplitPart]:
    """(the images training may use, the held-out validation slice) of the split ``data``."""
    held = held_out_indices(len(data), n_wanted)
    if not held:
        raise ValueError(f"train.val_every: the {data.name}/{data.split} split has {len(data)} image(s), too few to hold "
                         "out a validation slice (at most a quarter of the split is held out, so at least 4 are needed); "
                         "turn validation off with --set train.val_every=0")
    keep = sorted(set(range(len(data))) - set(held))
    return SplitPart(data, keep, "training"), SplitPart(data, held, "validation")


class Validator:
    """Scores a method on the held-out images, prepared once as uint8 crops on the training device."""

    def __init__(self, part: SplitPart, size: int, resize_to: int | None, device: torch.device, batch_size: int):
        crops = []
        for i in range(len(part)):
            img = part.load(i)
            short = max(int(resize_to or 0), size) if resize_to else (size if min(img.shape[-2:]) < size else None)
            if short is not None:
                img = resize_short(img, short)
            crops.append(TF.center_crop(img, [size, size]))
        self.images = torch.stack(crops).to(device)
        self.ids = [part.image_id(i) for i in range(len(part))]
        self.batch_size = max(1, batch_size)

    def describe(self) -> dict[str, Any]:
        digest = hashlib.sha256("\n".join(self.ids).encode()).hexdigest()[:16]
        return {"images": len(self.ids), "crop": int(self.images.shape[-1]), "ids_sha256": digest, "ids": self.ids[:64]}

    @torch.no_grad()
    def __call__(self, method: Any) -> dict[str, float]:
        was_training = method.training
        method.eval()
        try:
            scores = {"val_psnr": [], "val_ssim": []}
            for start in range(0, len(self.images), self.batch_size):
                rgb = self.images[start : start + self.batch_size]
                pred = colorize(method, rgb)
                scores["val_psnr"].append(psnr(pred, rgb, data_range=255.0).double().cpu())
                scores["val_ssim"].append(ssim(pred, rgb, data_range=255.0).double().cpu())
        finally:
            method.train(was_training)
        return {k: float(torch.cat(v).mean()) for k, v in scores.items()}
