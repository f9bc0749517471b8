"""bench.metrics.functional against skimage.metrics, per image, on photo pairs and random pairs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from skimage import data, filters, metrics, util

from bench.metrics.functional import psnr, ssim, ssim_map

DEVICE = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
TOL = 1e-4  # the contract; measured: PSNR ~1e-14 (float64 throughout), SSIM ~1e-6 (float32, offset-centred)


def sk_ssim(target: np.ndarray, pred: np.ndarray, data_range: float = 255) -> float:
    channel_axis = -1 if target.ndim == 3 else None
    return metrics.structural_similarity(
        target, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=data_range, channel_axis=channel_axis,
    )


def to_batch(images: list[np.ndarray]) -> torch.Tensor:
    """HWC (or HW) numpy images of one size -> (B, C, H, W) torch on the test device."""
    arrays = [im[..., None] if im.ndim == 2 else im for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().to(DEVICE)


def photo_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """(target, pred) pairs: photos vs noisy, blurred and colour-shifted copies, random pairs, a flat pair."""
    rng = np.random.default_rng(0)
    pairs = []
    for name in ("astronaut", "chelsea", "coffee"):
        im = getattr(data, name)()[100:196, 100:196]
        noisy = np.clip(im + rng.normal(0, 12, im.shape), 0, 255).astype(np.uint8)
        blurred = util.img_as_ubyte(filters.gaussian(im, sigma=1.5, channel_axis=-1))
        shifted = np.clip(im.astype(int) + [25, -15, 10], 0, 255).astype(np.uint8)
        pairs += [(im, noisy), (im, blurred), (im, shifted)]
    pairs.append(tuple(rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)))
    # Bright, nearly flat: the worst case for float32 E[x^2] - E[x]^2 (uncentred float32 was 4e-5 off here).
    flat = [np.clip(254 + rng.normal(0, 0.5, (96, 96, 3)), 0, 255).astype(np.uint8) for _ in range(2)]
    pairs.append((flat[0], flat[1]))
    return pairs


PAIRS = photo_pairs()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    targets, preds = zip(*PAIRS)
    return to_batch(list(preds)), to_batch(list(targets))


def test_psnr_matches_skimage_per_image(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    pred, target = batch
    ours = psnr(pred, target)
    assert ours.dtype == torch.float64 and ours.shape == (len(PAIRS),)
    expected = [metrics.peak_signal_noise_ratio(t, p, data_range=255) for t, p in PAIRS]
    np.testing.assert_allclose(ours.cpu().numpy(), expected, rtol=0, atol=TOL)


def test_ssim_matches_skimage_per_image(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    pred, target = batch
    ours = ssim(pred, target)
    assert ours.dtype == torch.float64 and ours.shape == (len(PAIRS),)
    expected = [sk_ssim(t, p) for t, p in PAIRS]
    np.testing.assert_allclose(ours.cpu().numpy(), expected, rtol=0, atol=TOL)


def test_batch_is_per_image_not_pooled(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    pred, target = batch
    for i in (0, 4, len(PAIRS) - 1):
        one_pred, one_target = pred[i : i + 1], target[i : i + 1]
        torch.testing.assert_close(psnr(one_pred, one_target)[0], psnr(pred, target)[i])
        torch.testing.assert_close(ssim(one_pred, one_target)[0], ssim(pred, target)[i], rtol=0, atol=1e-6)


def test_float_input_on_unit_scale(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    pred, target = batch
    unit_pred, unit_target = pred.float() / 255, target.float() / 255
    torch.testing.assert_close(psnr(unit_pred, unit_target, data_range=1.0), psnr(pred, target), rtol=0, atol=1e-4)
    torch.testing.assert_close(ssim(unit_pred, unit_target, data_range=1.0), ssim(pred, target), rtol=0, atol=1e-5)


def test_float64_input_is_exact(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    pred, target = batch
    expected = [sk_ssim(t, p) for t, p in PAIRS[:3]]
    np.testing.assert_allclose(ssim(pred[:3].double(), target[:3].double()).cpu().numpy(), expected, rtol=0, atol=1e-10)


def test_fast_ssim_map_is_as_exact_as_the_differentiable_one(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    # Without autograd, uint8/float32 SSIM takes a blocked fast path; with it, the reference formulas. Per
    # pixel both float32 maps are ~2.5e-4 off the float64 one (measured); their means agree far closer.
    pred, target = batch
    fast = ssim_map(pred, target)
    reference = ssim_map(pred.float().requires_grad_(True), target.float()).detach()
    exact = ssim_map(pred.double(), target.double())
    assert fast.shape == exact.shape and fast.dtype == torch.float32
    torch.testing.assert_close(fast.double(), exact, rtol=0, atol=5e-4)
    torch.testing.assert_close(reference.double(), exact, rtol=0, atol=5e-4)
    torch.testing.assert_close(fast.double().mean(dim=(1, 2, 3)), exact.mean(dim=(1, 2, 3)), rtol=0, atol=1e-5)


def test_identical_images() -> None:
    image = to_batch([PAIRS[0][0], PAIRS[-2][0]])
    assert psnr(image, image).tolist() == [100.0, 100.0]
    assert psnr(image, image, cap=60.0).tolist() == [60.0, 60.0]
    assert ssim(image, image).tolist() == [1.0, 1.0]


def test_grayscale() -> None:
    rng = np.random.default_rng(1)
    gray = util.img_as_ubyte(data.camera()[200:264, 200:290])
    noisy = np.clip(gray + rng.normal(0, 10, gray.shape), 0, 255).astype(np.uint8)
    pred, target = to_batch([noisy]), to_batch([gray])
    assert pred.shape == (1, 1, 64, 90)
    assert abs(float(psnr(pred, target)[0]) - metrics.peak_signal_noise_ratio(gray, noisy, data_range=255)) < TOL
    assert abs(float(ssim(pred, target)[0]) - sk_ssim(gray, noisy)) < TOL


def test_smallest_image_is_11_pixels() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 256, (2, 11, 11, 3), dtype=np.uint8)
    assert abs(float(ssim(to_batch([b]), to_batch([a]))[0]) - sk_ssim(a, b)) < TOL
    small = torch.zeros(2, 3, 10, 64, device=DEVICE)
    with pytest.raises(ValueError, match=r"at least 11x11 .*got 10x64"):
        ssim(small, small)


def test_shape_errors() -> None:
    a, b = torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 33)
    for fn in (psnr, ssim):
        with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\).*\(2, 3, 32, 33\)"):
            fn(a, b)
        with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
            fn(a[0], a[0])
