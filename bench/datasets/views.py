"""Training crops and evaluation protocols on top of an :class:`ImageSet`.

Training crops are a pure function of (seed, sample number): sample ``k`` of a run always picks the same
image, crop and flip, whatever the number of workers or processes, and a resumed run simply starts at
``k = step * batch``. That is what makes resume bit-identical without saving loader state.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torch.utils.data import Dataset

from bench.datasets.base import ImageSet


def resize_short(img: Tensor, short: int) -> Tensor:
    """Resize so the shorter side is ``short`` (antialiased), keeping the aspect ratio."""
    h, w = img.shape[-2:]
    if min(h, w) == short:
        return img
    s = short / min(h, w)
    return TF.resize(img, [max(short, round(h * s)), max(short, round(w * s))], antialias=True)


class TrainCrops(Dataset):
    """Sample ``k`` -> a random ``size`` x ``size`` crop (and horizontal flip) of a random image."""

    def __init__(self, images: ImageSet, size: int, seed: int, resize_to: int | None = None, cache: int = 64):
        self.images, self.size, self.seed = images, size, seed
        self.resize_to = max(resize_to or 0, size) if resize_to else None
        self._prepared = functools.lru_cache(maxsize=cache)(self._prepare)

    def __len__(self) -> int:
        return 2**62  # an endless stream; the sampler decides which samples a run draws

    def _prepare(self, i: int) -> Tensor:
        img = self.images.load(i)
        if self.resize_to is not None:
            return resize_short(img, self.resize_to)
        if min(img.shape[-2:]) < self.size:
            return resize_short(img, self.size)
        return img

    def __getitem__(self, k: int) -> Tensor:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + k) % 2**63)
        i = int(torch.randint(len(self.images), (1,), generator=g))
        img = self._prepared(i)
        h, w = img.shape[-2:]
        y = int(torch.randint(h - self.size + 1, (1,), generator=g))
        x = int(torch.randint(w - self.size + 1, (1,), generator=g))
        crop = img[:, y : y + self.size, x : x + self.size]
        if bool(torch.randint(2, (1,), generator=g)):
            crop = crop.flip(-1)
        return crop.contiguous()


class EvalView(Dataset):
    """The evaluation protocol of a dataset card, applied to a split.

    ``mode: tiles`` (resize the shorter side to ``resize_short``, centre-crop a square, cut it into
    ``tile`` x ``tile`` tiles), ``mode: center_crop`` (resize shorter side, centre crop ``size``), or
    ``mode: full`` (the image as it is; batches of one).
    """

    def __init__(self, images: ImageSet, protocol: Mapping[str, Any]):
        self.images = images
        self.protocol = dict(protocol) or {"mode": "full"}
        self.mode = self.protocol.get("mode", "full")
        if self.mode == "tiles":
            self.short, self.tile = int(self.protocol["resize_short"]), int(self.protocol["tile"])
            self.per_image = (self.short // self.tile) ** 2
        elif self.mode == "center_crop":
            self.short, self.crop = int(self.protocol.get("resize_short", self.protocol["size"])), int(self.protocol["size"])
            self.per_image = 1
        elif self.mode == "full":
            self.per_image = 1
        else:
            raise ValueError(f"{images.name}: unknown evaluation mode {self.mode!r} (tiles, center_crop, full)")
        self._last: tuple[int, Tensor] | None = None

    @property
    def fixed_size(self) -> bool:
        return self.mode != "full"

    def __len__(self) -> int:
        return len(self.images) * self.per_image

    def item_id(self, k: int) -> str:
        base = self.images.image_id(k // self.per_image)
        if self.mode == "tiles":
            n = self.short // self.tile
            t = k % self.per_image
            return f"{base}#r{t // n}c{t % n}"
        return base

    def _image(self, i: int) -> Tensor:
        if self._last is None or self._last[0] != i:  # tiles of one image come in a row: decode once
            img = self.images.load(i)
            if self.mode != "full":
                img = TF.center_crop(resize_short(img, self.short), [self.short, self.short])
            self._last = (i, img)
        return self._last[1]

    def __getitem__(self, k: int) -> tuple[Tensor, int]:
        img = self._image(k // self.per_image)
        if self.mode == "tiles":
            n, t = self.short // self.tile, k % self.per_image
            r, c = divmod(t, n)
            img = img[:, r * self.tile : (r + 1) * self.tile, c * self.tile : (c + 1) * self.tile]
        elif self.mode == "center_crop":
            img = TF.center_crop(img, [self.crop, self.crop])
        return img.contiguous(), k
