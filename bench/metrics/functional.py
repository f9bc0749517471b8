"""Per-image PSNR and SSIM for a batch, in torch, with scikit-image's conventions.

Conventions (say them in every result): both are computed per image and returned per image, shape (B,);
a dataset score is the mean of these, never a PSNR of the pooled MSE. Values are on the ``data_range``
scale (255 for uint8 sRGB). PSNR is over all channels at once; SSIM is per channel, then averaged.
Tested against ``skimage.metrics`` to 1e-4 in tests/test_metrics_functional.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.blockwise import run_blocks

__all__ = [
    "psnr", "ssim", "ssim_map", "SSIM_WINDOW", "rgb_to_y_bt601", "ciede2000", "colorfulness", "ab_error_area", "ab_bin_index",
    "per_bin_sums", "AUC_THRESHOLDS",
]

# skimage structural_similarity(gaussian_weights=True): sigma 1.5 truncated at 3.5 sigma ->
# radius int(3.5 * 1.5 + 0.5) = 5 -> an 11-tap window, as in Wang et al. 2004.
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = int(3.5 * _SSIM_SIGMA + 0.5)
SSIM_WINDOW: int = 2 * _SSIM_RADIUS + 1
_K1, _K2 = 0.01, 0.03


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape; got pred {tuple(pred.shape)} and target {tuple(target.shape)}"
        )
    if pred.dim() != 4:
        raise ValueError(f"expected images as (B, C, H, W); got shape {tuple(pred.shape)}")


def psnr(pred: Tensor, target: Tensor, data_range: float = 255.0, cap: float = 100.0) -> Tensor:
    """Per-image PSNR in dB, (B,) float64: 10 log10(data_range**2 / MSE), MSE over one image's C, H, W.

    Computed in float64 like ``skimage.metrics.peak_signal_noise_ratio``. Clamped at ``cap`` so identical
    images give ``cap`` instead of ``inf`` (which JSON cannot hold and which would swamp any mean).
    """
    _check_pair(pred, target)
    diff = pred.to(torch.float64) - target.to(torch.float64)
    mse = diff.square().mean(dim=(1, 2, 3))
    return (10.0 * torch.log10(data_range**2 / mse)).clamp(max=cap)


def _gaussian_taps(dtype: torch.dtype, device: torch.device) -> Tensor:
    """scipy.ndimage's 1-D Gaussian (``_gaussian_kernel1d``): exp(-x^2 / 2 sigma^2), normalised to sum 1."""
    x = torch.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * x.square() / _SSIM_SIGMA**2)
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def ssim(pred: Tensor, target: Tensor, data_range: float = 255.0) -> Tensor:
    """Per-image SSIM, (B,) float64, equal to skimage's Gaussian SSIM of Wang et al. 2004.

    That is ``structural_similarity(t, p, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=data_range, channel_axis=-1)`` on HWC images: 11-tap Gaussian local statistics, K1 0.01,
    K2 0.03, the 5-px border cropped (here: a "valid" convolution, which never computes it), mean over
    pixels, then over channels. Images must be at least 11 x 11.
    """
    if _fast_ssim_applies(pred, target):
        _check_ssim_inputs(pred, target)
        return _fast_ssim(pred, target, data_range, per_image_mean=True)
    return ssim_map(pred, target, data_range).to(torch.float64).mean(dim=(1, 2, 3))


def ssim_map(pred: Tensor, target: Tensor, data_range: float = 255.0) -> Tensor:
    """The SSIM map behind :func:`ssim`, (B, C, H - 10, W - 10), differentiable (training losses use it).

    Float64 inputs give float64, anything else float32; the 5-px border is never computed ("valid"
    convolutions), exactly skimage's cropped region.
    """
    _check_ssim_inputs(pred, target)
    if _fast_ssim_applies(pred, target):
        return _fast_ssim(pred, target, data_range, per_image_mean=False)
    # Precision: float32 unless an input is float64. Raw float32 loses digits in E[x^2] - E[x]^2 (terms up
    # to 255^2 = 65025, against C2 = 58.5): measured up to 7.5e-5 off skimage. So we first subtract a
    # per-image, per-channel offset (the mean of both images), which leaves every variance and covariance
    # unchanged, and add it back to the local means. Measured max deviation from skimage (float64) then:
    # 9e-7 on photo pairs, 6e-6 on adversarial ones (flat 254 +- noise, 0/253 halves). float64 reaches 2e-14
    # but its depthwise conv has no oneDNN kernel: ~20x slower on CPU, so only float64 inputs get it.
    channels = pred.shape[1]
    dtype = torch.float64 if torch.float64 in (pred.dtype, target.dtype) else torch.float32
    # channels_last makes the depthwise convs below ~2x faster on CPU; everything after inherits it.
    x = pred.to(dtype, memory_format=torch.channels_last)
    y = target.to(dtype, memory_format=torch.channels_last)
    offset = (x.mean(dim=(2, 3), keepdim=True) + y.mean(dim=(2, 3), keepdim=True)) / 2
    x = x - offset
    y = y - offset

    # One separable Gaussian pass ("valid": no padding, so exactly skimage's cropped region) over the five
    # local statistics of every channel at once.
    stats = _gaussian_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1))
    ux, uy, uxx, uyy, uxy = stats.split(channels, dim=1)

    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    ux = ux + offset
    uy = uy + offset
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    smap = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return smap


def _check_ssim_inputs(pred: Tensor, target: Tensor) -> None:
    _check_pair(pred, target)
    _, _, height, width = pred.shape
    if height < SSIM_WINDOW or width < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (its Gaussian window); "
            f"got {height}x{width} (shape {tuple(pred.shape)})"
        )


def _gaussian_valid(stats: Tensor) -> Tensor:
    """The separable 11-tap Gaussian of every channel of (B, K, H, W), "valid" (no padding) -> (B, K, H-10, W-10)."""
    taps = _gaussian_taps(stats.dtype, stats.device)
    groups = stats.shape[1]
    stats = F.conv2d(stats, taps.view(1, 1, 1, -1).expand(groups, 1, 1, -1), groups=groups)
    return F.conv2d(stats, taps.view(1, 1, -1, 1).expand(groups, 1, -1, 1), groups=groups)


# The fast path: float32, no autograd, CPU blocks of a few images (see bench.blockwise) so the statistics
# stay in cache; the same numbers as above up to float32 rounding. Differences from the reference: the
# offset is subtracted while converting (one pass from uint8), and four local statistics instead of five:
# SSIM needs only vx + vy = E[x^2 + y^2] - ux^2 - uy^2, not vx and vy apart. Measured on 256 photo pairs of
# 96 px, 1 thread: 200 -> 106 ms.
_SSIM_BLOCK = 2**16  # pixels per block (7 images of 96 x 96; 2 threads: 2**15 90 ms, 2**16 76 ms, 2**14 188 ms)


def _fast_ssim_applies(pred: Tensor, target: Tensor) -> bool:
    needs_grad = torch.is_grad_enabled() and (pred.requires_grad or target.requires_grad)
    return torch.float64 not in (pred.dtype, target.dtype) and not needs_grad and not torch.compiler.is_compiling()


def _fast_ssim(pred: Tensor, target: Tensor, data_range: float, per_image_mean: bool) -> Tensor:
    b, c, h, w = pred.shape
    if per_image_mean:
        out = torch.empty(b, dtype=torch.float64, device=pred.device)
    else:
        out = torch.empty((b, c, h - 2 * _SSIM_RADIUS, w - 2 * _SSIM_RADIUS), dtype=torch.float32, device=pred.device)
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    step = max(1, _SSIM_BLOCK // (h * w)) if pred.device.type == "cpu" else b

    def block(rows: slice) -> None:
        p, t = pred[rows], target[rows]
        n = p.shape[0]
        offset = ((p.sum(dim=(2, 3), dtype=torch.float64) + t.sum(dim=(2, 3), dtype=torch.float64)) / (2 * h * w)).float()
        # x, y, x^2 + y^2, x y (offset-centred) as (n, 4C, H, W); contiguous for the elementwise ops, channels-last
        # for the depthwise convolutions (oneDNN's NCHW depthwise kernel is ~10x slower here).
        s = torch.empty((n, 4 * c, h, w), dtype=torch.float32, device=p.device)
        x, y, sq, xy = s.split(c, dim=1)
        torch.sub(p.to(torch.float32), offset.view(n, c, 1, 1), out=x)
        torch.sub(t.to(torch.float32), offset.view(n, c, 1, 1), out=y)
        # No addcmul below: a fused multiply-add would round x*x + y*y differently from 2*x*y, and identical
        # images must score exactly 1.
        torch.mul(x, x, out=sq).add_(y * y)
        torch.mul(x, y, out=xy)
        stats = _gaussian_valid(s.contiguous(memory_format=torch.channels_last)).contiguous()
        ux, uy, usq, uxy = stats.split(c, dim=1)
        offset = offset.view(n, c, 1, 1)
        mx, my = ux + offset, uy + offset
        num = torch.mul(mx, my).mul_(2.0).add_(c1).mul_(torch.mul(ux, uy).neg_().add_(uxy).mul_(2.0).add_(c2))
        den = torch.mul(mx, mx).add_(my * my).add_(c1)
        den.mul_(torch.mul(ux, ux).add_(uy * uy).neg_().add_(usq).add_(c2))
        smap = num.div_(den)
        if per_image_mean:
            out[rows] = smap.sum(dim=(1, 2, 3), dtype=torch.float64) / smap[0].numel()
        else:
            out[rows] = smap

    run_blocks(block, [slice(r, r + step) for r in range(0, b, step)])
    return out


# --------------------------------------------------------------------------------------------------
# Colour-space helpers and colour metrics. All batched over (B, C, H, W), no per-image Python loop.

# skimage.color.rgb2ycbcr's first row (ITU-R BT.601, "studio swing"): Y = 16 + (65.481 R' + 128.553 G'
# + 24.966 B') with R', G', B' in [0, 1], so Y lies in [16, 235].
_BT601_Y = (65.481, 128.553, 24.966)


def rgb_to_y_bt601(rgb: Tensor) -> Tensor:
    """uint8 (0..255) or float (0..255 scale) RGB (B, 3, H, W) -> BT.601 luma Y (B, 1, H, W), float64, 16..235.

    Equal to ``skimage.color.rgb2ycbcr(img)[..., 0]`` (the MATLAB ``rgb2ycbcr`` convention), kept as a float:
    MATLAB rounds Y to uint8 for uint8 input; we do not.
    """
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"expected RGB images as (B, 3, H, W); got shape {tuple(rgb.shape)}")
    x = rgb.to(torch.float64) / 255.0
    w = torch.tensor(_BT601_Y, dtype=torch.float64, device=rgb.device).view(1, 3, 1, 1)
    return 16.0 + (x * w).sum(dim=1, keepdim=True)


def ciede2000(lab1: Tensor, lab2: Tensor, kL: float = 1.0, kC: float = 1.0, kH: float = 1.0) -> Tensor:
    """Per-pixel CIEDE2000 colour difference of Lab images (..., 3, H, W) -> (..., H, W).

    Sharma, Wu & Dalal 2005, written step for step as ``skimage.color.deltaE_ciede2000`` (same branch
    rules for hue differences and zero chroma) so that the two agree to rounding; here batched in torch
    and ``torch.where`` instead of masked assignment. Computed in the input's dtype except the hue terms,
    which are float64 (see :func:`_ciede2000_hue`): so float32 Lab matches Sharma et al.'s 34 published
    pairs to 1e-4 and stays within 1e-5 of skimage's float64 mean per image (tests/test_metrics.py).
    """
    if lab1.shape != lab2.shape or lab1.dim() < 3 or lab1.shape[-3] != 3:
        raise ValueError(f"expected two Lab tensors (..., 3, H, W) of one shape; got {tuple(lab1.shape)} and {tuple(lab2.shape)}")
    L1, a1, b1 = lab1.unbind(dim=-3)
    L2, a2, b2 = lab2.unbind(dim=-3)
    pow25_7 = 25.0**7

    cbar = 0.5 * (torch.hypot(a1, b1) + torch.hypot(a2, b2))
    c7 = cbar**7
    scale = 1 + 0.5 * (1 - torch.sqrt(c7 / (c7 + pow25_7)))
    a1, a2 = a1 * scale, a2 * scale
    C1, C2 = torch.hypot(a1, b1), torch.hypot(a2, b2)

    lbar = 0.5 * (L1 + L2)
    tmp = (lbar - 50) ** 2
    SL = 1 + 0.015 * tmp / torch.sqrt(20 + tmp)
    L_term = (L2 - L1) / (kL * SL)

    cbar = 0.5 * (C1 + C2)
    SC = 1 + 0.045 * cbar
    C_term = (C2 - C1) / (kC * SC)

    # The hue terms in float64 whatever the input's dtype: their branches (|h2 - h1| > 180 degrees) flip on
    # float32 rounding for hues 180 degrees apart (Sharma et al.'s pair 14: 0.058 off in float32).
    h_sin, T, dtheta = _ciede2000_hue(a1.double(), b1.double(), a2.double(), b2.double())
    CC = C1 * C2
    dH_term = 2 * torch.sqrt(CC) * h_sin.to(CC.dtype)
    SH = 1 + 0.015 * cbar * T.to(cbar.dtype)
    H_term = dH_term / (kH * SH)

    c7 = cbar**7
    Rc = 2 * torch.sqrt(c7 / (c7 + pow25_7))
    R_term = -torch.sin(2 * dtheta).to(Rc.dtype) * Rc * C_term * H_term

    dE2 = L_term**2 + C_term**2 + H_term**2 + R_term
    return torch.sqrt(dE2.clamp(min=0))


def _ciede2000_hue(a1: Tensor, b1: Tensor, a2: Tensor, b2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """sin(dH/2), T and the rotation angle of CIEDE2000 from the rescaled a' and b (float64), with
    skimage's branch rules for hue differences and zero chroma."""
    two_pi = 2 * math.pi
    h1 = torch.atan2(b1, a1)
    h1 = torch.where(h1 < 0, h1 + two_pi, h1)
    h2 = torch.atan2(b2, a2)
    h2 = torch.where(h2 < 0, h2 + two_pi, h2)
    h_diff = h2 - h1
    h_sum = h1 + h2
    zero = (torch.hypot(a1, b1) * torch.hypot(a2, b2)) == 0
    dH = torch.where(h_diff > math.pi, h_diff - two_pi, torch.where(h_diff < -math.pi, h_diff + two_pi, h_diff))
    dH = torch.where(zero, torch.zeros_like(dH), dH)
    wrap = ~zero & (h_diff.abs() > math.pi)
    hbar = torch.where(wrap & (h_sum < two_pi), h_sum + two_pi, torch.where(wrap & (h_sum >= two_pi), h_sum - two_pi, h_sum))
    hbar = torch.where(zero, hbar * 2, hbar) * 0.5
    T = (
        1
        - 0.17 * torch.cos(hbar - math.radians(30))
        + 0.24 * torch.cos(2 * hbar)
        + 0.32 * torch.cos(3 * hbar + math.radians(6))
        - 0.20 * torch.cos(4 * hbar - math.radians(63))
    )
    dtheta = math.radians(30) * torch.exp(-(((torch.rad2deg(hbar) - 275) / 25) ** 2))
    return torch.sin(dH / 2), T, dtheta


def colorfulness(rgb: Tensor, absolute: bool = False) -> Tensor:
    """Hasler & Suesstrunk 2003 colourfulness M of RGB images (B, 3, H, W) on the 0..255 scale -> (B,) float64.

    rg = R - G, yb = (R + G) / 2 - B (sRGB values as stored, not linearised); M = sqrt(std_rg^2 + std_yb^2)
    + 0.3 sqrt(mean_rg^2 + mean_yb^2), population std over the image's pixels. ``absolute=True`` takes
    |rg| and |yb| first, as the widely copied implementation that DDColor reports does; that variant is
    not the paper's definition (its mean term grows, its spread term shrinks: measured on the samples
    ground truth 33.9 vs M = 36.9).
    """
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"expected RGB images as (B, 3, H, W); got shape {tuple(rgb.shape)}")
    x = rgb.to(torch.float64)
    r, g, b = x.unbind(dim=1)
    rg = r - g
    yb = 0.5 * (r + g) - b
    if absolute:
        rg, yb = rg.abs(), yb.abs()
    dims = (1, 2)
    std = torch.sqrt(rg.var(dim=dims, correction=0) + yb.var(dim=dims, correction=0))
    mean = torch.sqrt(rg.mean(dim=dims) ** 2 + yb.mean(dim=dims) ** 2)
    return std + 0.3 * mean


# Zhang et al. 2016, "Colorful Image Colorization", sec. 3.1: the fraction of pixels whose ab error is
# within a threshold, swept over thresholds 0..150 and normalised. We use the 151 integer thresholds
# t = 0, 1, ..., 150 (both ends included), "within" meaning error <= t, and AuC = the mean of the 151
# fractions (so a perfect prediction scores exactly 1 and a constant error d scores (151 - ceil(d)) / 151).
AUC_THRESHOLDS: int = 151
# Zhang's ab grid: bins of 10 ab units centred on multiples of 10; sRGB ab lies within +-110.
AB_BIN = 10.0
AB_BINS_PER_AXIS = 23  # round(ab / 10) in -11..11
AB_BINS = AB_BINS_PER_AXIS**2


def ab_error_area(pred_ab: Tensor, target_ab: Tensor) -> Tensor:
    """Per-pixel share of the 151 thresholds t = 0..150 with ||ab_pred - ab_true||_2 <= t: (B, 2, H, W) -> (B, H, W).

    The number of integers t in [0, 150] with err <= t is 151 - ceil(err) (0 once err > 150); the mean
    of this per-pixel value over pixels is the AuC of the cumulative error curve, without building the
    151 curves.
    """
    err = torch.linalg.vector_norm(pred_ab.to(torch.float64) - target_ab.to(torch.float64), dim=-3)
    return (AUC_THRESHOLDS - torch.ceil(err)).clamp(0, AUC_THRESHOLDS) / AUC_THRESHOLDS


def ab_bin_index(ab: Tensor) -> Tensor:
    """Zhang's 10-unit ab grid: (B, 2, H, W) -> (B, H, W) int64 bin ids in [0, 23*23)."""
    q = torch.round(ab.to(torch.float64) / AB_BIN).clamp(-11, 11).to(torch.int64) + 11
    return q[:, 0] * AB_BINS_PER_AXIS + q[:, 1]


def per_bin_sums(values: Tensor, bins: Tensor, n_bins: int = AB_BINS) -> tuple[Tensor, Tensor]:
    """Per image, per bin: pixel count and sum of ``values`` ((B, H, W) each) -> two (B, n_bins) float64."""
    b = values.shape[0]
    flat_bins = (bins.reshape(b, -1) + torch.arange(b, device=bins.device).unsqueeze(1) * n_bins).reshape(-1)
    counts = torch.bincount(flat_bins, minlength=b * n_bins).view(b, n_bins).to(torch.float64)
    sums = torch.bincount(flat_bins, weights=values.reshape(-1).to(torch.float64), minlength=b * n_bins).view(b, n_bins)
    return counts, sums
