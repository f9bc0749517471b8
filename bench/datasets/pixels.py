"""Where a split's pixels come from, for training crops and evaluation: one choice, made here.

1. The pixel cache (:mod:`bench.datasets.cache`, the default): decoded once per machine, memory-mapped.
2. With the cache off (``--no-cache``, ``train.pixel_cache: false``) on CUDA, when every file is a JPEG:
   nvJPEG on the GPU (``torchvision.io.decode_jpeg(device="cuda")``), in the training process (a
   DataLoader worker cannot use CUDA), the resize on the GPU too. Files that need Pillow's conversions
   (EXIF orientation, CMYK, gray, anything but plain RGB) are decoded on the CPU as everywhere else.
   nvJPEG's IDCT and chroma upsampling round differently from libjpeg: pixels may differ by a few levels
   from the CPU's, as CUDA training differs from CPU training anyway.
3. Otherwise, decoding on demand on the CPU (:class:`bench.datasets.views.DecodedPixels`).

Loaders whose pixels are already uint8 on disk behind a memory map (STL-10) are read as they are: a cache
would only copy them.
"""

from __future__ import annotations

import functools
import sys
import warnings
from typing import Any, Callable

import torch
from torch import Tensor

from bench.datasets.base import ImageSet
from bench.datasets.cache import ensure_cache
from bench.datasets.io import read_image
from bench.datasets.views import DecodedPixels, PixelSource, resize_short

JPEG_SUFFIXES = (".jpg", ".jpeg")


def pixel_source(images: ImageSet, scale: int | None, *, cache: bool = True, device: torch.device | str | None = None,
                 progress: bool | None = None, keep: int = 64, echo: Callable[[str], None] | None = None) -> PixelSource:
    """The split's images at ``scale`` (see the module docstring for the choice). ``keep``: images a decoding
    source keeps per process; ``echo``: where the cache's announcements go (default stderr)."""
    device = torch.device(device or "cpu")
    if images.memory_mapped and scale is None:
        return DecodedPixels(images, None, keep=0)
    if uses_cache(images, scale, cache):
        return ensure_cache(images, scale, progress=progress, **({"echo": echo} if echo else {}))[0]
    if gpu_jpeg_applies(images, device):
        return CudaJpegPixels(images, scale, device, keep)
    return DecodedPixels(images, scale, keep)


def uses_cache(images: ImageSet, scale: int | None, cache: bool = True) -> bool:
    """Whether :func:`pixel_source` reads ``images`` at ``scale`` from the pixel cache."""
    return cache and not (images.memory_mapped and scale is None)


def loader_options(pixels: PixelSource, device: torch.device, num_workers: int) -> dict[str, Any]:
    """DataLoader settings for crops of ``pixels`` headed for ``device``: whole batches in pinned host memory
    (so that ``.to(device, non_blocking=True)`` copies them asynchronously) for CPU pixels on CUDA; no
    workers for pixels already on the GPU (a worker process cannot use CUDA)."""
    workers = num_workers if pixels.device.type == "cpu" else 0
    return {"num_workers": workers, "pin_memory": device.type == "cuda" and pixels.device.type == "cpu",
            "prefetch_factor": 4 if workers > 0 else None}


def gpu_jpeg_applies(images: ImageSet, device: torch.device) -> bool:
    """Whether the split's images are JPEG files that ``device`` (a CUDA GPU) can decode."""
    files = getattr(images, "files", None)
    return device.type == "cuda" and bool(files) and all(p.suffix.lower() in JPEG_SUFFIXES for p in files)


def plain_rgb_jpeg(path) -> bool:
    """A baseline RGB JPEG without EXIF rotation: what nvJPEG decodes as Pillow does (header only, no decode)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.format == "JPEG" and im.mode == "RGB" and im.getexif().get(0x0112, 1) in (0, 1)
    except OSError:
        return False  # the CPU decoder names the file in its error


class CudaJpegPixels(PixelSource):
    """JPEG files decoded on the GPU, resized there; the last ``keep`` images stay on the GPU."""

    def __init__(self, images: ImageSet, scale: int | None, device: torch.device, keep: int = 64):
        self.files, self.scale, self.device = list(images.files), scale, torch.device(device)
        self._warned = False
        self._prepared = functools.lru_cache(maxsize=keep)(self._prepare) if keep else self._prepare

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, path) -> Tensor:
        if plain_rgb_jpeg(path):
            from torchvision.io import ImageReadMode, decode_jpeg, read_file

            try:
                with warnings.catch_warnings():
                    # torchvision 0.29 deprecates its decoders in favour of TorchCodec; this range pins torchvision.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    return decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB, device=self.device)
            except RuntimeError as exc:  # a JPEG nvJPEG does not support: the CPU decodes it
                if not self._warned:
                    print(f"note: the GPU could not decode {path} ({exc}); such files are decoded on the CPU", file=sys.stderr)
                    self._warned = True
        return read_image(path).to(self.device)

    def _prepare(self, i: int) -> Tensor:
        img = self._decode(self.files[i])
        return resize_short(img, self.scale) if self.scale is not None else img

    def image(self, i: int) -> Tensor:
        return self._prepared(i)

    def describe(self) -> dict[str, Any]:
        return {"source": "gpu-jpeg", "scale": self.scale, "device": str(self.device)}
