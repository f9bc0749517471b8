"""Training crops and evaluation protocols on top of an :class:`ImageSet`, and the :class:`PixelSource`
they read images from (decoded on demand here; the memory-mapped cache in :mod:`bench.datasets.cache`;
which one a run uses is decided in :mod:`bench.datasets.pixels`).

Training crops are a pure function of (seed, sample number): sample ``k`` of a run always picks the same
image, crop and flip, whatever the number of workers or processes, and a resumed run simply starts at
``k = step * batch``. That is what makes resume bit-identical without saving loader state.
"""

from __future__ import annotations

import abc
import functools
from typing import Any, Mapping

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torch.utils.data import Dataset

from bench.config import DatasetCard
from bench.datasets.base import ImageSet


def resize_short(img: Tensor, short: int) -> Tensor:
    """Resize so the shorter side is ``short`` (antialiased), keeping the aspect ratio."""
    h, w = img.shape[-2:]
    if min(h, w) == short:
        return img
    s = short / min(h, w)
    return TF.resize(img, [max(short, round(h * s)), max(short, round(w * s))], antialias=True)


def train_scale(card: DatasetCard) -> int | None:
    """The shorter side a dataset card trains at (None: the images as they are). The one place that reads
    the card's field."""
    value = card.extra.get("train_resize_short")
    return int(value) if value else None


def eval_scale(protocol: Mapping[str, Any]) -> int | None:
    """The shorter side an evaluation protocol resizes to before cropping (None: ``full``, as they are)."""
    mode = protocol.get("mode", "full")
    if mode == "tiles":
        return int(protocol["resize_short"])
    if mode == "center_crop":
        return int(protocol.get("resize_short", protocol["size"]))
    return None


class PixelSource(abc.ABC):
    """The images of a split at one scale: ``image(i)`` is ``resize_short(images.load(i), scale)`` (or
    ``images.load(i)`` when ``scale`` is None), a (3, H, W) uint8 tensor on ``device``.

    Where the pixels come from is the source's business: decoding on demand (:class:`DecodedPixels`), the
    memory-mapped cache (:mod:`bench.datasets.cache`), or the GPU's JPEG decoder (:mod:`bench.datasets.pixels`).
    """

    scale: int | None = None
    device: torch.device = torch.device("cpu")

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def image(self, i: int) -> Tensor:
        """Image ``i`` at the source's scale; callers copy what they keep (it may be a view on shared memory)."""

    def describe(self) -> dict[str, Any]:
        """What a run records about where its pixels came from."""
        return {"source": type(self).__name__, "scale": self.scale}


class DecodedPixels(PixelSource):
    """Decode (and resize) on demand, keeping the last ``keep`` images of this process (0: none)."""

    def __init__(self, images: ImageSet, scale: int | None, keep: int = 64):
        self.images, self.scale = images, scale
        self._prepared = functools.lru_cache(maxsize=keep)(self._prepare) if keep else self._prepare

    def __len__(self) -> int:
        return len(self.images)

    def _prepare(self, i: int) -> Tensor:
        img = self.images.load(i)
        return resize_short(img, self.scale) if self.scale is not None else img

    def image(self, i: int) -> Tensor:
        return self._prepared(i)

    def describe(self) -> dict[str, Any]:
        return {"source": "decode", "scale": self.scale}


class TrainCrops(Dataset):
    """Sample ``k`` -> a random ``size`` x ``size`` crop (and horizontal flip) of a random image."""

    def __init__(self, images: ImageSet, size: int, seed: int, resize_to: int | None = None, cache: int = 64,
                 pixels: PixelSource | None = None):
        """``pixels``: where the images come from, at :meth:`scale_for` ``(size, resize_to)`` (default: decoded
        on demand, the last ``cache`` images kept per process)."""
        self.images, self.size, self.seed = images, size, seed
        self.resize_to = self.scale_for(size, resize_to)
        self.pixels = pixels if pixels is not None else DecodedPixels(images, self.resize_to, cache)
        if self.pixels.scale != self.resize_to or len(self.pixels) != len(images):
            raise ValueError(f"pixel source at scale {self.pixels.scale} with {len(self.pixels)} images does not fit "
                             f"crops of {images.name}/{images.split} at scale {self.resize_to} ({len(images)} images)")

    @staticmethod
    def scale_for(size: int, resize_to: int | None) -> int | None:
        """The shorter side crops are cut at: the card's training scale, at least the crop; None: as they are."""
        return max(resize_to or 0, size) if resize_to else None

    def __len__(self) -> int:
        return 2**62  # an endless stream; the sampler decides which samples a run draws

    def _prepared(self, i: int) -> Tensor:
        img = self.pixels.image(i)
        if self.resize_to is None and min(img.shape[-2:]) < self.size:
            return resize_short(img, self.size)  # rare (an image smaller than the crop): not worth keeping
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

    def __init__(self, images: ImageSet, protocol: Mapping[str, Any], pixels: PixelSource | None = None):
        """``pixels``: the split at :func:`eval_scale` of the protocol (default: decoded on demand)."""
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
        self.scale = eval_scale(self.protocol)
        # Tiles of one image come in a row: keeping the last one decodes each image once.
        self.pixels = pixels if pixels is not None else DecodedPixels(images, self.scale, keep=1)
        if self.pixels.scale != self.scale or len(self.pixels) != len(images):
            raise ValueError(f"pixel source at scale {self.pixels.scale} with {len(self.pixels)} images does not fit "
                             f"the evaluation of {images.name}/{images.split} at scale {self.scale} ({len(images)} images)")

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
        img = self.pixels.image(i)
        return img if self.mode == "full" else TF.center_crop(img, [self.short, self.short])

    def __getitem__(self, k: int) -> tuple[Tensor, int]:
        img = self._image(k // self.per_image)
        if self.mode == "tiles":
            n, t = self.short // self.tile, k % self.per_image
            r, c = divmod(t, n)
            img = img[:, r * self.tile : (r + 1) * self.tile, c * self.tile : (c + 1) * self.tile]
        elif self.mode == "center_crop":
            img = TF.center_crop(img, [self.crop, self.crop])
        return img.contiguous(), k
