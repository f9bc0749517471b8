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

Two implementations of the same formulas. The reference one (``_reference_*``) is the textbook form; it
runs for float64 (agreeing with skimage to ~1e-13), whenever autograd needs a graph, and under
torch.compile. Everything else (uint8 and float32 images without grad: training, evaluation, metrics) takes
the fast one: the same arithmetic in float32 with far fewer passes over memory. Profiled on 256 photo crops
of 96 px (torch.profiler, 1 thread), the reference round trip spent its time in ``torch.where`` (~25 ms
per 7M floats on CPU, against ~1.3 ms for an in-place add), pow, temporaries and einsum's permute copies.
So the fast path has: a 256-entry table for uint8 sRGB -> linear; the colour matrices (white point folded
in) and the Lab affine maps as per-channel multiply-adds; every branch point ``t > k ? hi(t) : lo(t)``
(lo linear) as ``hi(max(t, k)) + slope * min(t - k, 0) + (lo(k) - hi(k)) * [t <= k]`` with the mask from
clamps, which is the selected branch up to float32 rounding; in-place ops; and cache-sized blocks shared
out to single-threaded workers (:mod:`bench.blockwise`). Measured against the float64 reference: Lab of all
256**3 sRGB colours within 6.3e-5 (the reference formulas in float32: 5.6e-5), sRGB of random Lab within
1.2e-5. Round trip, 1 thread, same images: 175 -> 82 ms of CPU time.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.blockwise import run_blocks

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
    if not (rgb.dtype == torch.uint8 or rgb.is_floating_point()):
        raise TypeError(f"rgb must be uint8 (0..255) or floating (0..1); got {rgb.dtype}")
    if _use_fast(rgb):
        return _fast_rgb_to_lab(rgb)
    return _reference_rgb_to_lab(rgb)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """CIELAB D65 (..., 3, H, W) to sRGB floats in [0, 1], out-of-gamut handled as ``skimage.color.lab2rgb``.

    Like skimage: a negative z = (L+16)/116 - b/200 is set to 0 (skimage also warns; we don't), the other
    channels are left alone, and the final sRGB is clipped to [0, 1]. Float64 in, float64 out; else float32.
    """
    _check_channels(lab, "lab")
    if _use_fast(lab):
        return _fast_lab_to_rgb(lab, 1.0)
    return _reference_lab_to_rgb(lab)


def lab_to_rgb_uint8(lab: Tensor) -> Tensor:
    """CIELAB to the uint8 sRGB a user would save: ``round(lab_to_rgb(lab) * 255)``.

    The rounding is skimage's ``img_as_ubyte`` on floats (skimage/util/dtype.py ``_convert``: multiply by
    255, ``np.rint``, clip): round half to even, which ``torch.round`` also does. With float64 Lab this
    equals ``img_as_ubyte(lab2rgb(lab))`` exactly; in float32 a value within ~1e-5 of a .5 boundary can
    land one step off (measured in tests/test_color.py).
    """
    _check_channels(lab, "lab")
    if _use_fast(lab):
        return _fast_lab_to_rgb(lab, 255.0, torch.uint8)
    return torch.round(_reference_lab_to_rgb(lab) * 255.0).to(torch.uint8)


# --------------------------------------------------------------------------------------------------
# Reference implementation: float64, and whatever autograd must differentiate.


def _use_fast(x: Tensor) -> bool:
    needs_grad = x.requires_grad and torch.is_grad_enabled()
    return x.dtype != torch.float64 and not needs_grad and not torch.compiler.is_compiling()


def _reference_rgb_to_lab(rgb: Tensor) -> Tensor:
    dtype = _work_dtype(rgb)
    x = rgb.to(dtype) / 255.0 if rgb.dtype == torch.uint8 else rgb.to(dtype)

    # sRGB companding -> linear RGB (skimage.color.rgb2xyz).
    gamma = ((x.clamp(min=0.04045) + 0.055) / 1.055).pow(2.4)
    linear = torch.where(x > 0.04045, gamma, x / 12.92)
    xyz = _mix_channels(_XYZ_FROM_RGB, linear) / _per_channel(_D65_WHITE, linear)

    # f(t) of CIELAB with skimage's constants (skimage.color.xyz2lab).
    f = torch.where(xyz > 0.008856, xyz.clamp(min=0.008856).pow(1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(dim=-3)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def _reference_lab_to_rgb(lab: Tensor) -> Tensor:
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


# --------------------------------------------------------------------------------------------------
# Fast implementation: float32, no autograd; the same formulas (see the module docstring).

_WHITE64 = torch.tensor(_D65_WHITE, dtype=torch.float64)
# xyz / white = (M / white[:, None]) @ linear; linear = (M^-1 * white[None, :]) @ (xyz / white)
_XYZN_FROM_RGB = (_XYZ_FROM_RGB / _WHITE64[:, None]).tolist()
_RGB_FROM_XYZN = (_RGB_FROM_XYZ * _WHITE64[None, :]).tolist()
_LUTS: dict[torch.device, Tensor] = {}
_CHUNK = 2**17  # pixels per block: its float32 temporaries (1.5 MB each) stay in cache (1 thread: 127 -> 82 ms)
_BIG = 2.0**40  # > 1 / (the smallest float32 step at any knee below), so the masks are exactly 0 or 1


def _srgb_to_linear_table(device: torch.device) -> Tensor:
    """uint8 sRGB value u -> linear RGB, (256,) float32: exactly what the float path gives for u / 255.0 in
    float32, so uint8 and float images convert alike (tests/test_color.py holds them to 1e-5)."""
    if device not in _LUTS:
        _LUTS[device] = _srgb_to_linear(torch.arange(256, dtype=torch.float32) / 255.0).to(device)
    return _LUTS[device]


def _srgb_to_linear(x: Tensor) -> Tensor:
    """skimage's sRGB decoding of float32 values, in place (``x`` is consumed)."""
    k = 0.04045
    return _branch(x, k, lambda t: t.add_(0.055).div_(1.055).pow_(2.4), 1.0 / 12.92, k / 12.92, ((k + 0.055) / 1.055) ** 2.4)


def _mix_into(matrix: list[list[float]], x: Tensor, out: Tensor) -> Tensor:
    """out[:, i] = sum_j matrix[i][j] * x[:, j] for x, out (N, 3, P); out must not overlap x."""
    for i, (m0, m1, m2) in enumerate(matrix):
        torch.mul(x[:, 0], m0, out=out[:, i]).add_(x[:, 1], alpha=m1).add_(x[:, 2], alpha=m2)
    return out


def _branch(t: Tensor, k: float, hi_: Any, slope: float, lo_at_k: float, hi_at_k: float) -> Tensor:
    """``hi(t) if t > k else lo(t)`` with lo linear (lo(t) = lo(k) + slope * (t - k)), without torch.where.

    ``hi_`` computes hi in place on ``max(t, k)``, which it receives; ``t`` is consumed. Where t > k the
    added terms are exact zeros (the result is hi(t) as computed); where t <= k it is
    hi(k) + slope * (t - k) + (lo(k) - hi(k)).
    """
    below = torch.sub(t, k).mul_(-_BIG).add_(1.0).clamp_(0.0, 1.0)  # 1.0 where t <= k, else 0.0
    lo_part = torch.sub(t, k).clamp_(max=0.0)
    out = hi_(t.clamp_(min=k))
    return out.add_(lo_part, alpha=slope).add_(below, alpha=lo_at_k - hi_at_k)


def _cube_(t: Tensor) -> Tensor:
    return t.mul_(t * t)  # not t.square(): that is pow(t, 2), ~15x slower than a multiply on CPU


def _blocks(n: int, p: int, device: torch.device) -> list[tuple[slice, slice]]:
    """Blocks of about ``_CHUNK`` pixels of an (n, 3, p) tensor: whole rows, else pieces of one row.
    One block off the CPU (a GPU wants big kernels, not cache-sized ones)."""
    if device.type != "cpu":
        return [(slice(None), slice(None))]
    rows = max(1, _CHUNK // p)
    cols = p if rows > 1 or p <= 2 * _CHUNK else _CHUNK
    return [(slice(r, r + rows), slice(c, c + cols)) for r in range(0, n, rows) for c in range(0, p, cols)]


def _fast_rgb_to_lab(rgb: Tensor) -> Tensor:
    shape = rgb.shape
    x = rgb.reshape(-1, 3, shape[-2] * shape[-1])
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)

    def block(where: tuple[slice, slice]) -> None:
        rows, cols = where
        xc, lab = x[rows, :, cols], out[rows, :, cols]
        if xc.dtype == torch.uint8:
            linear = _srgb_to_linear_table(xc.device).index_select(0, xc.reshape(-1).to(torch.int32)).view(xc.shape)
        else:
            linear = _srgb_to_linear(xc.to(torch.float32, copy=True))
        k = 0.008856
        t = _mix_into(_XYZN_FROM_RGB, linear, torch.empty_like(linear))
        fx, fy, fz = _branch(t, k, lambda t: t.pow_(1.0 / 3.0), 7.787, 7.787 * k + 16.0 / 116.0, k ** (1.0 / 3.0)).unbind(1)
        torch.mul(fy, 116.0, out=lab[:, 0]).sub_(16.0)
        torch.sub(fx, fy, out=lab[:, 1]).mul_(500.0)
        torch.sub(fy, fz, out=lab[:, 2]).mul_(200.0)

    _srgb_to_linear_table(x.device)  # made here, not by two workers at once
    run_blocks(block, _blocks(x.shape[0], x.shape[2], x.device))
    return out.view(shape)


def _fast_lab_to_rgb(lab: Tensor, scale: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """sRGB * ``scale``, clipped to [0, scale], of Lab; rounded first when ``dtype`` is uint8."""
    shape, s = lab.shape, scale
    x = lab.reshape(-1, 3, shape[-2] * shape[-1])
    out = torch.empty(x.shape, dtype=dtype, device=x.device)

    def block(where: tuple[slice, slice]) -> None:
        rows, cols = where
        L, a, b = x[rows, :, cols].to(torch.float32).unbind(1)
        f = torch.empty((L.shape[0], 3, L.shape[1]), dtype=torch.float32, device=x.device)
        fy = torch.add(L, 16.0, out=f[:, 1]).div_(116.0)
        torch.add(fy, a, alpha=1.0 / 500.0, out=f[:, 0])
        torch.sub(fy, b, alpha=1.0 / 200.0, out=f[:, 2]).clamp_(min=0.0)
        k = 0.2068966
        xyz = _branch(f, k, _cube_, 1.0 / 7.787, (k - 16.0 / 116.0) / 7.787, k**3)
        linear = _mix_into(_RGB_FROM_XYZN, xyz, torch.empty_like(xyz))
        k = 0.0031308
        srgb = _branch(linear, k, lambda t: t.pow_(1.0 / 2.4).mul_(1.055 * s).sub_(0.055 * s), 12.92 * s, 12.92 * k * s,
                       (1.055 * k ** (1.0 / 2.4) - 0.055) * s).clamp_(0.0, s)
        out[rows, :, cols] = srgb.round_() if dtype == torch.uint8 else srgb

    run_blocks(block, _blocks(x.shape[0], x.shape[2], x.device))
    return out.view(shape)


def split_lab(lab: Tensor) -> tuple[Tensor, Tensor]:
    """(..., 3, H, W) Lab -> (L (..., 1, H, W), ab (..., 2, H, W)): the model's input and its target."""
    _check_channels(lab, "lab")
    return lab[..., :1, :, :], lab[..., 1:, :, :]


def merge_lab(L: Tensor, ab: Tensor) -> Tensor:
    """Inverse of ``split_lab``: L (..., 1, H, W) and ab (..., 2, H, W) -> Lab (..., 3, H, W)."""
    if L.dim() < 3 or L.shape[-3] != 1 or ab.dim() < 3 or ab.shape[-3] != 2:
        raise ValueError(f"expected L (..., 1, H, W) and ab (..., 2, H, W); got {tuple(L.shape)} and {tuple(ab.shape)}")
    return torch.cat([L, ab], dim=-3)
