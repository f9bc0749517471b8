"""Training crops and evaluation protocols on top of an :class:`ImageSet`, and the :class:`PixelSource`
they read images from (decoded on demand here; the memory-mapped cache in :mod:`bench.datasets.cache`;
which one a run uses is decided in :mod:`bench.datasets.pixels`).

Training crops are a pure function of (seed, sample number): sample ``k`` of a run always picks the same
image, crop and flip, whatever the number of workers or processes, and a resumed run simply starts at
``k = step * batch``. That is what makes resume bit-identical without saving loader state. Each sample's
generator is seeded from (seed, k) through ``numpy.random.SeedSequence``, so the streams of two seeds are
independent (a linear ``seed * C + k`` made sample k of one seed sample k + C of another).

Both views work at the card's one scale, ``short_side``: training crops are cut from images resized to it,
and evaluation views are cut from images resized to it (full images are predicted at it, see
:func:`bench.evaluate.colorize_full`).
"""

from __future__ import annotations

import abc
import functools
from typing import Any, Mapping

import numpy as np
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


def eval_scale(protocol: Mapping[str, Any]) -> int | None:
    """The shorter side an evaluation protocol (``card.eval_protocol()``) reads its images at: the card's
    ``short_side`` for ``tiles`` and ``center_crop``; None (as they are) for ``full``, whose images are scored
    at full resolution and resized for prediction only (:func:`bench.evaluate.colorize_full`)."""
    short = protocol.get("short_side")
    return int(short) if short and protocol.get("mode", "full") != "full" else None


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


class PixelSubset(PixelSource):
    """Some images of a source, by index (the training part of a split whose validation slice is held out):
    the split's cache is built and keyed once, whatever part of it a run trains on."""

    def __init__(self, source: PixelSource, indices: list[int]):
        self.source, self.indices = source, list(indices)
        self.scale, self.device = source.scale, source.device

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, i: int) -> Tensor:
        return self.source.image(self.indices[i])

    def describe(self) -> dict[str, Any]:
        return {**self.source.describe(), "images": len(self.indices)}


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

    def draw(self, k: int) -> tuple[int, int, int, bool]:
        """Sample ``k``'s (image index, top, left, horizontal flip): a pure function of (seed, k)."""
        rng = np.random.default_rng(sample_seed(self.seed, k))
        i = int(rng.integers(len(self.images)))
        h, w = self._prepared(i).shape[-2:]
        y = int(rng.integers(h - self.size + 1))
        x = int(rng.integers(w - self.size + 1))
        return i, y, x, bool(rng.integers(2))

    def __getitem__(self, k: int) -> Tensor:
        i, y, x, flip = self.draw(k)
        crop = self._prepared(i)[:, y : y + self.size, x : x + self.size]
        if flip:
            crop = crop.flip(-1)
        return crop.contiguous()


def train_crops(images: ImageSet, size: int, seed: int, pixels: PixelSource | None = None) -> TrainCrops:
    """The training crops of a split, cut from its images at the card's one scale (``short_side``); ``pixels``:
    the split at :func:`train_scale` (default: decoded on demand)."""
    return TrainCrops(images, size, seed, resize_to=images.card.short_side, pixels=pixels)


def train_scale(images: ImageSet, size: int) -> int | None:
    """The shorter side the training crops of ``size`` px are cut at: the card's ``short_side``, or the crop
    size when that is larger (None: the images as they are). The pixel cache is built at this scale."""
    return TrainCrops.scale_for(size, images.card.short_side)


def sample_seed(seed: int, k: int) -> np.random.SeedSequence:
    """The seed of sample ``k`` of run ``seed``: SeedSequence hashes (seed, stream, k) as fixed-width words, so
    no two pairs share a stream. Negative ``k`` (the samples ``Method.prepare`` sees) is a stream of its own."""
    s, n = seed % 2**64, abs(k)
    words = [s & 0xFFFFFFFF, s >> 32, int(k < 0), n & 0xFFFFFFFF, n >> 32]
    return np.random.SeedSequence(np.array(words, dtype=np.uint32))


class EvalView(Dataset):
    """The evaluation protocol of a dataset card, applied to a split, at the card's ``short_side``.

    ``mode: tiles`` (resize the shorter side to ``short_side``, centre-crop a square, cut it into ``tile`` x
    ``tile`` tiles), ``mode: center_crop`` (resize the shorter side to ``short_side`` when it is set, centre
    crop ``size``), or ``mode: full`` (the image as it is; batches of one; predicted at ``short_side`` by
    :func:`bench.evaluate.colorize_full`). ``protocol`` defaults to the card's (``card.eval_protocol()``).
    """

    def __init__(self, images: ImageSet, protocol: Mapping[str, Any] | None = None, pixels: PixelSource | None = None):
        """``pixels``: the split at :func:`eval_scale` of the protocol (default: decoded on demand)."""
        self.images = images
        self.protocol = dict(protocol) if protocol else images.card.eval_protocol()
        self.mode = self.protocol.get("mode", "full")
        short = self.protocol.get("short_side")
        self.short = int(short) if short else None
        if self.mode == "tiles":
            if self.short is None:
                raise ValueError(f"{images.name}: evaluation mode tiles needs short_side (the side of the centre square)")
            self.tile = int(self.protocol["tile"])
            self.per_image = (self.short // self.tile) ** 2
        elif self.mode == "center_crop":
            self.crop = int(self.protocol["size"])
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
    def work_size(self) -> int | None:
        """The shorter side at which full images are predicted (None: their own resolution)."""
        return self.short if self.mode == "full" else None

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

    def scaled_image(self, i: int) -> Tensor:
        """Image ``i`` at the protocol's scale, before any crop (full images: as they are); it may be a view on
        shared memory (the pixel cache): copy what you keep."""
        return self.pixels.image(i)

    def _image(self, i: int) -> Tensor:
        img = self.scaled_image(i)
        return TF.center_crop(img, [self.short, self.short]) if self.mode != "full" and self.short is not None else img

    def __getitem__(self, k: int) -> tuple[Tensor, int]:
        img = self._image(k // self.per_image)
        if self.mode == "tiles":
            n, t = self.short // self.tile, k % self.per_image
            r, c = divmod(t, n)
            img = img[:, r * self.tile : (r + 1) * self.tile, c * self.tile : (c + 1) * self.tile]
        elif self.mode == "center_crop":
            img = TF.center_crop(img, [self.crop, self.crop])
        return img.contiguous(), k
