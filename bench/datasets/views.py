"""Training crops and evaluation protocols on top of an :class:`ImageSet`.

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

import functools
from typing import Any, Mapping

import numpy as np
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


def train_crops(images: ImageSet, size: int, seed: int) -> TrainCrops:
    """The training crops of a split, cut from its images at the card's one scale (``short_side``)."""
    return TrainCrops(images, size, seed, resize_to=images.card.short_side)


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

    def __init__(self, images: ImageSet, protocol: Mapping[str, Any] | None = None):
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
        self._last: tuple[int, Tensor] | None = None

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
        """Image ``i`` at the protocol's scale, before any crop (full images: as they are)."""
        img = self.images.load(i)
        return resize_short(img, self.short) if self.short is not None and self.mode != "full" else img

    def _image(self, i: int) -> Tensor:
        if self._last is None or self._last[0] != i:  # tiles of one image come in a row: decode once
            img = self.scaled_image(i)
            if self.mode != "full" and self.short is not None:
                img = TF.center_crop(img, [self.short, self.short])
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
