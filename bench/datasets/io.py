"""Decoding image files into (3, H, W) uint8 RGB tensors, with errors that name the file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from bench.datasets.base import BadImage

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def read_image(path: str | Path) -> Tensor:
    """Read ``path`` as RGB, honouring EXIF orientation. Raises :class:`BadImage` naming the file."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im)
                im.load()  # decode now: a truncated file must fail here, not later in a worker
                rgb = im.convert("RGB")
    except FileNotFoundError:
        raise BadImage(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"{path}: cannot decode as an image ({exc}); remove or replace the file") from None
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).contiguous()


def write_png(path: str | Path, image: Tensor) -> None:
    """Write a (3, H, W) uint8 tensor as PNG atomically."""
    from bench.store import atomic_path

    arr = image.detach().cpu().permute(1, 2, 0).numpy()
    with atomic_path(Path(path)) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
