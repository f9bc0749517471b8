"""Decoding image files into (3, H, W) uint8 RGB tensors, with errors that name the file.

Unusual files are converted the same way everywhere (scans, training, evaluation):

* EXIF orientation is applied (the pixels are turned the way a viewer shows them);
* alpha (RGBA, LA, PA, palette or gray with a transparent colour) is composited on white, as a viewer
  shows it; dropping alpha instead would expose whatever colour the transparent pixels happen to hold;
* palette and 1-bit images are expanded; gray (L) is replicated into R = G = B;
* 16-bit gray PNGs are scaled with round(v * 255 / 65535) (Pillow's own conversion clips them to white);
  16-bit RGB(A) PNGs are reduced by Pillow to their high byte (floor(v / 256)), within one level of that;
* CMYK uses Pillow's conversion (R = (255 - C)(255 - K) / 255, ...; embedded ICC profiles are ignored);
* anything else (float, 32-bit integer TIFFs, ...) is refused as unsupported: its range is unknown.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from bench.datasets.base import BadImage

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

# "Truly grayscale": at most 0.1% of pixels have a channel spread (max - min of R, G, B) above 6 levels.
# The tolerance absorbs JPEG chroma noise in gray photos saved as RGB; a sepia or faded photo exceeds it.
GRAY_SPREAD = 6
GRAY_FRACTION = 0.001

_ORIENTATION = 0x0112
_SIXTEEN_BIT_RGB = {"RGB;16B", "RGBA;16B", "RGB;16L", "RGBA;16L"}


@dataclass
class ImageInfo:
    """What decoding found: the stored pixel mode, the size after orientation, the conversions applied."""

    mode: str
    width: int
    height: int
    conversions: list[str] = field(default_factory=list)
    gray: bool = False


def _colourful(hwc: np.ndarray) -> int:
    r, g, b = hwc[..., 0], hwc[..., 1], hwc[..., 2]  # element-wise max/min: 10x faster than .max(axis=2)
    return int(np.count_nonzero(np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b) > GRAY_SPREAD))


def is_grayscale(hwc: np.ndarray) -> bool:
    """Whether an (H, W, 3) uint8 image carries (almost) no colour; see GRAY_SPREAD."""
    allowed = GRAY_FRACTION * hwc.shape[0] * hwc.shape[1]
    if _colourful(hwc[::4, ::4]) > allowed:  # decides almost every photo from 1/16 of its pixels, exactly
        return False
    return _colourful(hwc) <= allowed


def _scale16(arr: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 with rounding (integer arithmetic: exact)."""
    a = arr.astype(np.uint32)
    return ((a * 255 + 32767) // 65535).astype(np.uint8)


def _to_rgb(im: Image.Image, path: Path, info: ImageInfo, rawmode: str | None) -> np.ndarray:
    mode = im.mode
    if rawmode in _SIXTEEN_BIT_RGB:
        info.conversions.append("16-bit: high byte")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N") or (mode == "I" and im.format == "PNG"):
        gray = _scale16(np.asarray(im).astype(np.int64).clip(0, 65535))
        info.conversions.append("16-bit: scaled")
        return np.repeat(gray[..., None], 3, axis=2)
    has_alpha = "A" in im.getbands() or (mode in ("P", "L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        info.conversions.append("alpha: composited on white")
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode == "RGB":
        return np.asarray(im)
    if mode in ("L", "1", "P", "CMYK", "YCbCr", "RGBX"):
        info.conversions.append({"L": "gray: replicated", "1": "1-bit: expanded", "P": "palette: expanded"}.get(mode, f"{mode}: converted"))
        return np.asarray(im.convert("RGB"))
    raise BadImage(f"{path}: unsupported pixel mode {mode!r} (its value range is unknown); convert it to an 8-bit RGB PNG or JPEG")


def decode_image(path: str | Path) -> tuple[Tensor, ImageInfo]:
    """Decode ``path`` fully as RGB (see the module docstring). Raises :class:`BadImage` naming the file."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                tile = getattr(im, "tile", None) or []
                rawmode = tile[0][3] if tile and len(tile[0]) > 3 and isinstance(tile[0][3], str) else None
                im.load()  # decode now: a truncated file must fail here, not later in a worker
                info = ImageInfo(mode=im.mode, width=im.width, height=im.height)
                if im.getexif().get(_ORIENTATION, 1) not in (0, 1):
                    im = ImageOps.exif_transpose(im)
                    info.conversions.append("exif: rotated")
                    info.width, info.height = im.width, im.height
                arr = _to_rgb(im, path, info, rawmode)
    except BadImage:
        raise
    except FileNotFoundError:
        raise BadImage(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"{path}: cannot decode as an image ({exc}); remove or replace the file") from None
    info.gray = info.mode in ("L", "LA", "1", "I", "I;16", "I;16L", "I;16B", "I;16N") or is_grayscale(arr)
    arr = arr if arr.flags.writeable else arr.copy()  # Pillow hands out read-only views
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), info


def read_image(path: str | Path) -> Tensor:
    """Read ``path`` as a (3, H, W) uint8 RGB tensor (see :func:`decode_image`)."""
    return decode_image(path)[0]


def write_png(path: str | Path, image: Tensor) -> None:
    """Write a (3, H, W) uint8 tensor as PNG atomically."""
    from bench.store import atomic_path

    arr = image.detach().cpu().permute(1, 2, 0).numpy()
    with atomic_path(Path(path)) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
