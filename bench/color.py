"""Batched sRGB <-> CIELAB (D65, 2-degree observer) in pure torch, matching scikit-image.

Every colorization method here predicts ab from L, and every metric and saved image goes back to sRGB,
so the conversion must be the one the field uses: ``skimage.color.rgb2lab`` / ``lab2rgb``. We copy its
constants, not the exact CIE ones: the 0.04045 / 0.0031308 sRGB thresholds, its rounded sRGB -> XYZ
matrix, the white (0.95047, 1, 1.08883), and the f(t) knee at 0.008856 with slope 7.787 (CIE's exact
216/24389 = 0.0088565 and 841/108 = 7.78704 would move dark colours by up to 1.6e-4 in Lab).
Agreement with skimage 0.26 is tested to 1e-3 (see tests/test_color.py).

Images are channel-first: (..., 3, H, W), channel dim -3. No numpy, no data-dependent Python control flow,
so the functions run on any device, under autograd (the pow branches are clamped, so no NaN gradients
leak out of the branch torch.where discards) and under torch.compile.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["AB_RANGE", "rgb_to_lab", "lab_to_rgb", "lab_to_rgb_uint8", "split_lab", "merge_lab"]

# Typical bound on |a|, |b| used to scale regressor outputs (ab / AB_RANGE lies in [-1, 1]).
# Measured with rgb_to_lab over all 256**3 sRGB colours (float64):
#   a in [-86.183, 98.234] (min at (0, 255, 0), max at (255, 0, 255)),
#   b in [-107.857, 94.478] (min at (0, 0, 255), max at (255, 255, 0)),
# so max |ab| = 107.86, and 110 covers the whole sRGB gamut with a small margin; 128 (the Lab
# "int8" range) would waste 15% of the output range on colours sRGB cannot show.
AB_RANGE: float = 110.0

# skimage.color.colorconv.xyz_from_rgb ("From sRGB specification"); skimage inverts it for the way back.
_XYZ_FROM_RGB = torch.tensor(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=torch.float64,
)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)
# skimage.color.xyz_tristimulus_values(illuminant="D65", observer="2")
_D65_WHITE = (0.95047, 1.0, 1.08883)


def _work_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64; everything else (uint8, half, float32) is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _check_channels(x: Tensor, name: str) -> None:
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"{name} must have shape (..., 3, H, W) with channels at dim -3; got {tuple(x.shape)}")


def _per_channel(values: tuple[float, float, float], like: Tensor) -> Tensor:
    """A (3, 1, 1) tensor of per-channel constants that broadcasts over (..., 3, H, W)."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(3, 1, 1)


def _mix_channels(matrix: Tensor, x: Tensor) -> Tensor:
    """out[..., i, h, w] = sum_j matrix[i, j] * x[..., j, h, w] (skimage's ``arr @ matrix.T``)."""
    return torch.einsum("ij,...jhw->...ihw", matrix.to(dtype=x.dtype, device=x.device), x)


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB (..., 3, H, W), uint8 0..255 or float 0..1, to CIELAB D65: L in [0, 100], a, b about [-108, 98].

    Same numbers as ``skimage.color.rgb2lab`` (to ~1e-4 in float32). Float64 input gives float64 output,
    anything else float32.
    """
    _check_channels(rgb, "rgb")
    dtype = _work_dtype(rgb)
    if rgb.dtype == torch.uint8:
        x = rgb.to(dtype) / 255.0
    elif rgb.is_floating_point():
        x = rgb.to(dtype)
    else:
        raise TypeError(f"rgb must be uint8 (0..255) or floating (0..1); got {rgb.dtype}")

    # sRGB companding -> linear RGB (skimage.color.rgb2xyz).
    gamma = ((x.clamp(min=0.04045) + 0.055) / 1.055).pow(2.4)
    linear = torch.where(x > 0.04045, gamma, x / 12.92)
    xyz = _mix_channels(_XYZ_FROM_RGB, linear) / _per_channel(_D65_WHITE, linear)

    # f(t) of CIELAB with skimage's constants (skimage.color.xyz2lab).
    f = torch.where(xyz > 0.008856, xyz.clamp(min=0.008856).pow(1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(dim=-3)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """CIELAB D65 (..., 3, H, W) to sRGB floats in [0, 1], out-of-gamut handled as ``skimage.color.lab2rgb``.

    Like skimage: a negative z = (L+16)/116 - b/200 is set to 0 (skimage also warns; we don't), the other
    channels are left alone, and the final sRGB is clipped to [0, 1]. Float64 in, float64 out; else float32.
    """
    _check_channels(lab, "lab")
    lab = lab.to(_work_dtype(lab))
    L, a, b = lab.unbind(dim=-3)

    # Inverse f(t) (skimage.color.colorconv._lab2xyz).
    fy = (L + 16.0) / 116.0
    fx = a / 500.0 + fy
    fz = (fy - b / 200.0).clamp(min=0.0)
    f = torch.stack([fx, fy, fz], dim=-3)
    xyz = torch.where(f > 0.2068966, f * f * f, (f - 16.0 / 116.0) / 7.787) * _per_channel(_D65_WHITE, f)

    # Linear RGB -> sRGB companding, then clip (skimage.color.xyz2rgb).
    linear = _mix_channels(_RGB_FROM_XYZ, xyz)
    gamma = 1.055 * linear.clamp(min=0.0031308).pow(1.0 / 2.4) - 0.055
    return torch.where(linear > 0.0031308, gamma, linear * 12.92).clamp(0.0, 1.0)


def lab_to_rgb_uint8(lab: Tensor) -> Tensor:
    """CIELAB to the uint8 sRGB a user would save: ``round(lab_to_rgb(lab) * 255)``.

    The rounding is skimage's ``img_as_ubyte`` on floats (skimage/util/dtype.py ``_convert``: multiply by
    255, ``np.rint``, clip): round half to even, which ``torch.round`` also does. With float64 Lab this
    equals ``img_as_ubyte(lab2rgb(lab))`` exactly; in float32 a value within ~1e-5 of a .5 boundary can
    land one step off (measured in tests/test_color.py).
    """
    return torch.round(lab_to_rgb(lab) * 255.0).to(torch.uint8)


def split_lab(lab: Tensor) -> tuple[Tensor, Tensor]:
    """(..., 3, H, W) Lab -> (L (..., 1, H, W), ab (..., 2, H, W)): the model's input and its target."""
    _check_channels(lab, "lab")
    return lab[..., :1, :, :], lab[..., 1:, :, :]


def merge_lab(L: Tensor, ab: Tensor) -> Tensor:
    """Inverse of ``split_lab``: L (..., 1, H, W) and ab (..., 2, H, W) -> Lab (..., 3, H, W)."""
    if L.dim() < 3 or L.shape[-3] != 1 or ab.dim() < 3 or ab.shape[-3] != 2:
        raise ValueError(f"expected L (..., 1, H, W) and ab (..., 2, H, W); got {tuple(L.shape)} and {tuple(ab.shape)}")
    return torch.cat([L, ab], dim=-3)
