"""The metric registry and the weight-free metrics, against scikit-image and closed forms.

Oracles: skimage.metrics (PSNR, SSIM), skimage.color (rgb2ycbcr, rgb2lab, deltaE_ciede2000), and plain
numpy transcriptions of the papers' definitions (colourfulness, AuC) -- per image, in float64.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from skimage import color, data, filters, metrics, util

from bench.metrics import DEFAULT_METRICS, METRICS, Batch, MetricOptions, build_metrics, parse_metric_names
from bench.metrics.functional import AUC_THRESHOLDS, ab_error_area, ciede2000, colorfulness, rgb_to_y_bt601
from bench.metrics.stats import Bootstrap

DEVICE = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
TOL = 1e-4


def photo_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """(target, pred) uint8 HWC pairs: real photos vs degraded copies (noise, blur, colour shift, desaturation,
    a gray output as a colourisation baseline gives), random images, a pair of identical images."""
    rng = np.random.default_rng(0)
    pairs = []
    for name in ("astronaut", "chelsea", "coffee"):
        im = getattr(data, name)()[100:164, 120:184]
        noisy = np.clip(im + rng.normal(0, 12, im.shape), 0, 255).astype(np.uint8)
        blurred = util.img_as_ubyte(filters.gaussian(im, sigma=1.5, channel_axis=-1))
        shifted = np.clip(im.astype(int) + [25, -15, 10], 0, 255).astype(np.uint8)
        gray = util.img_as_ubyte(color.gray2rgb(color.rgb2gray(im)))
        pairs += [(im, noisy), (im, blurred), (im, shifted), (im, gray)]
    pairs.append(tuple(rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)))
    same = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pairs.append((same, same.copy()))
    return pairs


PAIRS = photo_pairs()


def to_batch(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().to(DEVICE)


@pytest.fixture(scope="module")
def batch() -> Batch:
    targets, preds = zip(*PAIRS)
    return Batch(to_batch(list(preds)), to_batch(list(targets)))


def scores(name: str, b: Batch) -> np.ndarray:
    out = METRICS.get(name)().score_batch(b)
    assert out.shape == (len(b),) and out.dtype == torch.float64
    return out.cpu().numpy()


def sk_ssim(t: np.ndarray, p: np.ndarray, data_range: float, channel_axis: int | None) -> float:
    return metrics.structural_similarity(t, p, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                         data_range=data_range, channel_axis=channel_axis)


def sk_psnr(t: np.ndarray, p: np.ndarray, data_range: float) -> float:
    with np.errstate(divide="ignore"):
        return min(metrics.peak_signal_noise_ratio(t, p, data_range=data_range), 100.0)


# ---- PSNR / SSIM and their named variants ------------------------------------------------------------


def test_rgb_psnr_ssim_match_skimage(batch: Batch) -> None:
    np.testing.assert_allclose(scores("psnr", batch), [sk_psnr(t, p, 255) for t, p in PAIRS], atol=TOL, rtol=0)
    np.testing.assert_allclose(scores("ssim", batch), [sk_ssim(t, p, 255, -1) for t, p in PAIRS], atol=TOL, rtol=0)


def test_y_channel_variants_match_skimage_rgb2ycbcr(batch: Batch) -> None:
    ys = [(color.rgb2ycbcr(t)[..., 0], color.rgb2ycbcr(p)[..., 0]) for t, p in PAIRS]
    np.testing.assert_allclose(scores("psnr_y", batch), [sk_psnr(t, p, 255) for t, p in ys], atol=TOL, rtol=0)
    np.testing.assert_allclose(scores("ssim_y", batch), [sk_ssim(t, p, 255, None) for t, p in ys], atol=TOL, rtol=0)


def test_y_is_bt601_studio_range() -> None:
    rgb = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=torch.uint8)
    y = rgb_to_y_bt601(rgb.T.reshape(1, 3, 1, 5)).flatten()
    np.testing.assert_allclose(y.numpy(), [16, 235, 16 + 65.481, 16 + 128.553, 16 + 24.966], atol=1e-9)


def test_ab_variants_match_skimage_rgb2lab(batch: Batch) -> None:
    abs_ = [(color.rgb2lab(t)[..., 1:], color.rgb2lab(p)[..., 1:]) for t, p in PAIRS]
    np.testing.assert_allclose(scores("psnr_ab", batch), [sk_psnr(t, p, 255) for t, p in abs_], atol=TOL, rtol=0)
    np.testing.assert_allclose(scores("ssim_ab", batch), [sk_ssim(t, p, 255, -1) for t, p in abs_], atol=TOL, rtol=0)


def test_lightness_check_matches_skimage_rgb2lab(batch: Batch) -> None:
    ls = [(color.rgb2lab(t)[..., 0], color.rgb2lab(p)[..., 0]) for t, p in PAIRS]
    np.testing.assert_allclose(scores("psnr_l", batch), [sk_psnr(t, p, 100) for t, p in ls], atol=TOL, rtol=0)


def test_identical_images_are_capped_never_inf(batch: Batch) -> None:
    for name in ("psnr", "psnr_y", "psnr_ab", "psnr_l"):
        assert scores(name, batch)[-1] == 100.0
    assert np.all(np.isfinite(scores("psnr_ab", batch)))


# ---- CIEDE2000 ------------------------------------------------------------------------------------


def test_ciede2000_matches_skimage_per_image(batch: Batch) -> None:
    expected = [color.deltaE_ciede2000(color.rgb2lab(t), color.rgb2lab(p)).mean() for t, p in PAIRS]
    np.testing.assert_allclose(scores("ciede2000", batch), expected, atol=TOL, rtol=0)
    assert scores("ciede2000", batch)[-1] == 0.0


# Sharma, Wu & Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes, supplementary
# test data, and mathematical observations", Color Res. Appl. 30(1), Table 1: all 34 pairs
# (L1, a1, b1, L2, a2, b2, published dE00). Each value checked against skimage.color.deltaE_ciede2000 in
# float64 (which agrees with every published value to 5e-5).
SHARMA = [
    (50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425),
    (50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615),
    (50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412),
    (50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669),
    (50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461),
    (50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065),
    (50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492),
    (50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977),
    (50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030),
    (50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000),
    (60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644),
    (63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630),
    (61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731),
    (35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645),
    (22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373),
    (36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146),
    (90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441),
    (90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381),
    (6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377),
    (2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082),
]


def test_ciede2000_per_pixel_on_hard_lab_pairs() -> None:
    """Random Lab pairs including zero chroma and hue wrap-around, against skimage in float64."""
    rng = np.random.default_rng(3)
    n = 4000
    lab1 = np.stack([rng.uniform(0, 100, n), rng.uniform(-110, 110, n), rng.uniform(-110, 110, n)], -1)
    lab2 = lab1 + rng.normal(0, 8, lab1.shape)
    lab1[:200, 1:] = 0  # zero chroma
    lab2[200:400, 1] = -lab1[200:400, 1]  # across the negative a axis: hue differences near pi
    lab2[200:400, 2] = lab1[200:400, 2] * 1e-3
    ours = ciede2000(torch.from_numpy(lab1.T[None, :, :, None]), torch.from_numpy(lab2.T[None, :, :, None]))[0, :, 0].numpy()
    np.testing.assert_allclose(ours, color.deltaE_ciede2000(lab1, lab2), atol=1e-9, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ciede2000_matches_the_34_published_pairs(dtype) -> None:
    """The table to 1e-4 at the precision the metric runs at (float32 Lab from uint8 sRGB) and in float64,
    both orders of each pair. Pair 14 has hues exactly 180 degrees apart: computed wholly in float32 its
    hue branch flipped on rounding (0.058 off)."""
    table = np.array(SHARMA)
    np.testing.assert_allclose(color.deltaE_ciede2000(table[:, :3], table[:, 3:6]), table[:, 6], atol=5e-5, rtol=0)
    first = torch.tensor(table[:, :3].T[:, :, None], dtype=dtype)  # (3, 34, 1): the 34 pairs as one image column
    second = torch.tensor(table[:, 3:6].T[:, :, None], dtype=dtype)
    for a, b in ((first, second), (second, first)):
        ours = ciede2000(a, b)[:, 0]
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours.double().numpy(), table[:, 6], atol=1e-4, rtol=0)


# ---- Colourfulness --------------------------------------------------------------------------------


def hasler(img: np.ndarray, absolute: bool) -> float:
    r, g, b = (img[..., c].astype(np.float64) for c in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    if absolute:
        rg, yb = np.abs(rg), np.abs(yb)
    return float(np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


@pytest.mark.parametrize("absolute", [False, True])
def test_colorfulness_matches_definition_for_outputs_and_truth(batch: Batch, absolute: bool) -> None:
    suffix = "_abs" if absolute else ""
    np.testing.assert_allclose(scores(f"colorfulness{suffix}", batch), [hasler(p, absolute) for _, p in PAIRS], atol=1e-9)
    np.testing.assert_allclose(scores(f"colorfulness{suffix}_gt", batch), [hasler(t, absolute) for t, _ in PAIRS], atol=1e-9)


def test_colorfulness_closed_forms() -> None:
    gray = torch.full((1, 3, 8, 8), 77, dtype=torch.uint8)
    assert colorfulness(gray).item() == 0.0
    flat = torch.tensor([200, 50, 20], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    rg, yb = 150.0, 0.5 * 250 - 20
    assert colorfulness(flat).item() == pytest.approx(0.3 * np.hypot(rg, yb), abs=1e-9)
    # Half red, half green: the signed rg has mean 0 and std 255; the absolute one mean 255 and std 0.
    half = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    half[0, 0, :, :2] = 255
    half[0, 1, :, 2:] = 255
    assert colorfulness(half).item() == pytest.approx(np.hypot(255, 0) + 0.3 * np.hypot(0, 127.5), abs=1e-9)
    assert colorfulness(half, absolute=True).item() == pytest.approx(0.3 * np.hypot(255, 127.5), abs=1e-9)


# ---- AuC (Zhang et al. 2016) ------------------------------------------------------------------------


def auc_by_definition(target: np.ndarray, pred: np.ndarray) -> float:
    err = np.linalg.norm(color.rgb2lab(pred)[..., 1:] - color.rgb2lab(target)[..., 1:], axis=-1)
    return float(np.mean([(err <= t).mean() for t in range(0, 151)]))


def test_auc_matches_its_definition(batch: Batch) -> None:
    # Lab is float32 here, float64 in skimage: an error within ~1e-5 of an integer threshold can land on the
    # other side of it, moving one pixel's share by up to 1/151 (measured: 2 of 14 images off by 1.6e-6).
    np.testing.assert_allclose(scores("auc", batch), [auc_by_definition(t, p) for t, p in PAIRS], atol=1e-5, rtol=0)
    assert scores("auc", batch)[-1] == 1.0  # a perfect prediction


@pytest.mark.parametrize("d, expected", [(0.0, 1.0), (10.0, 141 / 151), (10.5, 140 / 151), (150.0, 1 / 151), (150.5, 0.0), (400.0, 0.0)])
def test_auc_of_a_constant_error(d: float, expected: float) -> None:
    # Integer ab and offsets along (1, 0), (0, -1) and the 3-4-5 direction, so the error is exactly d.
    target = torch.randint(-100, 100, (3, 2, 5, 7)).to(torch.float64)
    direction = torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.6, 0.8]], dtype=torch.float64).view(3, 2, 1, 1)
    pred = target + d * direction
    area = ab_error_area(pred, target)
    assert AUC_THRESHOLDS == 151
    np.testing.assert_allclose(area.mean(dim=(1, 2)).numpy(), [expected] * 3, atol=1e-12)


def rebalanced_by_definition(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Pixel weights 1/p(bin of the true ab), p over all pixels of the set; weighted cumulative curve."""
    errs, bins = [], []
    for t, p in pairs:
        ab_t, ab_p = color.rgb2lab(t)[..., 1:], color.rgb2lab(p)[..., 1:]
        errs.append(np.linalg.norm(ab_p - ab_t, axis=-1).ravel())
        q = np.clip(np.round(ab_t / 10), -11, 11).astype(int) + 11
        bins.append((q[..., 0] * 23 + q[..., 1]).ravel())
    err, q = np.concatenate(errs), np.concatenate(bins)
    p = np.bincount(q, minlength=23 * 23) / len(q)
    w = 1.0 / p[q]
    return float(np.mean([(w * (err <= t)).sum() / w.sum() for t in range(0, 151)]))


def test_rebalanced_auc_matches_its_definition(batch: Batch) -> None:
    metric = METRICS.get("auc_rebalanced")()
    metric.reset()
    metric.update(batch)
    metric.take_chunk()
    out = metric.compute(Bootstrap(resamples=200))
    assert out["n"] == len(PAIRS)
    assert out["mean"] == pytest.approx(rebalanced_by_definition(PAIRS), abs=1e-6)
    assert out["ci95"][0] <= out["mean"] <= out["ci95"][1]


def test_rebalanced_auc_weights_rare_colours_up() -> None:
    """A big perfectly predicted area and a small badly predicted one: plain AuC is near 1, the rebalanced
    one is the mean of the two per-bin AuCs."""
    target = torch.zeros(1, 3, 20, 20, dtype=torch.uint8)
    target[:, :] = torch.tensor([120, 120, 120], dtype=torch.uint8).view(1, 3, 1, 1)
    target[0, :, :2, :2] = torch.tensor([200, 30, 30], dtype=torch.uint8).view(3, 1, 1)  # 4 red pixels
    pred = target.clone()
    pred[0, :, :2, :2] = 120  # the red patch predicted gray
    b = Batch(pred, target)
    metric = METRICS.get("auc_rebalanced")()
    metric.reset()
    metric.update(b)
    metric.take_chunk()
    red_auc = ab_error_area(b.lab("pred")[:, 1:, :2, :2], b.lab("target")[:, 1:, :2, :2]).mean().item()
    # (per-bin sums are stored as float32: 1e-7 relative)
    assert metric.compute(Bootstrap(resamples=0))["mean"] == pytest.approx((1 + red_auc) / 2, abs=1e-6)
    plain = METRICS.get("auc")().score_batch(b).item()
    assert plain == pytest.approx((396 + 4 * red_auc) / 400, abs=1e-12) and plain > (1 + red_auc) / 2


# ---- Registry ---------------------------------------------------------------------------------------


def test_every_metric_declares_its_contract() -> None:
    assert set(DEFAULT_METRICS) <= set(METRICS.names())
    for name in METRICS.names():
        m = METRICS.get(name)()
        assert m.name == name
        assert m.higher_is_better in (True, False, None) and isinstance(m.per_image, bool)
        assert len(m.convention) > 40, f"{name}: state the convention"
        ok, why = m.available()
        assert ok or why, f"{name}: an unavailable metric must say why"
        d = m.describe()
        assert d["convention"] == m.convention and d["needs_weights"] == (m.needs_weights is not None)
    needs = {n for n in METRICS.names() if METRICS.get(n).needs_weights}
    assert needs == {"is", "fid", "lpips"}
    no_direction = {n for n in METRICS.names() if METRICS.get(n).higher_is_better is None}
    assert no_direction == {"colorfulness", "colorfulness_gt", "colorfulness_abs", "colorfulness_abs_gt"}


def test_metric_names_parsing() -> None:
    assert parse_metric_names("psnr, ssim,psnr") == ["psnr", "ssim"]
    assert parse_metric_names("default") == list(DEFAULT_METRICS)
    assert set(parse_metric_names("all")) == set(METRICS.names())
    assert set(build_metrics(["psnr", "is"], MetricOptions())) == {"psnr", "is"}
