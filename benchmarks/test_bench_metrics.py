"""Metric throughput: batched PSNR + SSIM (+ CIEDE2000) (bench.metrics) vs a scikit-image per-image loop.

256 pairs of 96 x 96 uint8 photo crops (outputs vs ground truth), on BENCH_DEVICE (CPU by default). Two
sets: PSNR + SSIM on RGB (target >= 3x on 2 CPU cores), and those plus mean CIEDE2000 of CIELAB (ours
includes the Lab conversion, as the evaluation does). Both sides compute the same numbers. The ratio
(scikit-image time / ours, medians of this run) and the load of other processes during each timing (see
conftest.py) are stored in the benchmark JSON's ``extra_info``: a second busy process on a 2-core machine
slows small torch operations several-fold, so read the ratio beside the load. Ours runs at torch's default
thread count and at 1 thread (the latter is the one that holds up on a loaded machine).
As the ``bench`` CLI does at start-up, glibc is told to keep freed memory (bench.sysutil).

    make bench    # or: pytest benchmarks/test_bench_metrics.py --benchmark-only --benchmark-json=out.json
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from skimage import color, metrics

from _photos import photo_crops
from bench.metrics import Batch, build_metrics

DEVICE = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
THREADS = sorted({1, torch.get_num_threads()})
N, SIZE = 256, 96
_MEDIANS: dict[str, float] = {}


def photo_pairs() -> tuple[np.ndarray, np.ndarray]:
    """(targets, preds) as (N, 96, 96, 3) uint8: crops of skimage's photos, preds colour-shifted and noisy."""
    rng = np.random.default_rng(0)
    targets = photo_crops(N, SIZE, rng)
    preds = np.clip(targets + rng.normal(0, 8, targets.shape) + rng.normal(0, 15, (N, 1, 1, 3)), 0, 255).astype(np.uint8)
    return targets, preds


TARGETS, PREDS = photo_pairs()


SETS = {"psnr+ssim": ["psnr", "ssim"], "psnr+ssim+ciede2000": ["psnr", "ssim", "ciede2000"]}


def skimage_loop(which: str) -> np.ndarray:
    names = SETS[which]
    out = np.empty((N, len(names)))
    for i, (t, p) in enumerate(zip(TARGETS, PREDS)):
        out[i, 0] = metrics.peak_signal_noise_ratio(t, p, data_range=255)
        out[i, 1] = metrics.structural_similarity(t, p, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                                  data_range=255, channel_axis=-1)
        if "ciede2000" in names:
            out[i, 2] = color.deltaE_ciede2000(color.rgb2lab(t), color.rgb2lab(p)).mean()
    return out


PRED_T = torch.from_numpy(PREDS).permute(0, 3, 1, 2).contiguous().to(DEVICE)
TARGET_T = torch.from_numpy(TARGETS).permute(0, 3, 1, 2).contiguous().to(DEVICE)


def batched(which: str, batch_size: int = 64) -> torch.Tensor:
    metric_set = build_metrics(SETS[which])
    cols = []
    for s in range(0, N, batch_size):
        b = Batch(PRED_T[s : s + batch_size], TARGET_T[s : s + batch_size])
        cols.append(torch.stack([m.score_batch(b) for m in metric_set.values()], 1))
    out = torch.cat(cols)
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return out


@pytest.mark.parametrize("which", SETS)
def test_same_numbers(which: str) -> None:
    np.testing.assert_allclose(batched(which).cpu().numpy(), skimage_loop(which), atol=1e-4, rtol=0)


@pytest.mark.parametrize("which", SETS)
def test_skimage_per_image_loop(benchmark, timed, which: str) -> None:
    benchmark.group = f"metrics: {which}, 256 pairs of 96x96"
    _MEDIANS[which] = timed(lambda: skimage_loop(which), rounds=3, images=N, size=SIZE)


@pytest.mark.parametrize("which", SETS)
@pytest.mark.parametrize("threads", THREADS)
def test_batched_torch(benchmark, timed, threads: int, which: str) -> None:
    benchmark.group = f"metrics: {which}, 256 pairs of 96x96"
    default = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t = timed(lambda: batched(which), rounds=5, images=N, size=SIZE, device=str(DEVICE), threads=threads)
    finally:
        torch.set_num_threads(default)
    if which not in _MEDIANS:
        pytest.skip("run with test_skimage_per_image_loop to get the ratio")
    ratio = _MEDIANS[which] / t
    benchmark.extra_info["speedup_vs_skimage"] = round(ratio, 2)
    target = " (target >= 3x)" if which == "psnr+ssim" else ""
    timed.note(f"batched {which} on {DEVICE}, {threads} thread(s): {ratio:.2f}x a scikit-image per-image loop{target}")
