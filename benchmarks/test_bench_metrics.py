"""Metric throughput: batched PSNR + SSIM + CIEDE2000 (bench.metrics) vs a scikit-image per-image loop.

256 pairs of 96 x 96 uint8 photo crops (outputs vs ground truth), on BENCH_DEVICE (CPU by default). Both
sides compute the same numbers (PSNR and SSIM on RGB, mean CIEDE2000 of CIELAB); ours includes the Lab
conversion, as the evaluation does. The ratio (scikit-image time / ours, medians of this run) and the
1-minute load average are stored in the benchmark JSON's ``extra_info``: a second busy process on a
2-core machine slows small torch operations several-fold, so read the ratio beside the load. Ours runs at
torch's default thread count and at 1 thread (the latter is the one that holds up on a loaded machine).
As the ``bench`` CLI does at start-up, glibc is told to keep freed memory (bench.sysutil).

    make bench    # or: pytest benchmarks/test_bench_metrics.py --benchmark-only --benchmark-json=out.json
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from skimage import color, data, metrics

from bench.metrics import Batch, build_metrics
from bench.sysutil import keep_freed_memory

keep_freed_memory()
DEVICE = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
THREADS = sorted({1, torch.get_num_threads()})
N, SIZE = 256, 96
_MEDIANS: dict[str, float] = {}


def photo_pairs() -> tuple[np.ndarray, np.ndarray]:
    """(targets, preds) as (N, 96, 96, 3) uint8: crops of skimage's photos, preds colour-shifted and noisy."""
    rng = np.random.default_rng(0)
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    targets = []
    for i in range(N):
        im = photos[i % len(photos)]
        y, x = rng.integers(0, im.shape[0] - SIZE), rng.integers(0, im.shape[1] - SIZE)
        targets.append(im[y : y + SIZE, x : x + SIZE])
    targets = np.stack(targets)
    preds = np.clip(targets + rng.normal(0, 8, targets.shape) + rng.normal(0, 15, (N, 1, 1, 3)), 0, 255).astype(np.uint8)
    return targets, preds


TARGETS, PREDS = photo_pairs()


def skimage_loop() -> np.ndarray:
    out = np.empty((N, 3))
    for i, (t, p) in enumerate(zip(TARGETS, PREDS)):
        out[i, 0] = metrics.peak_signal_noise_ratio(t, p, data_range=255)
        out[i, 1] = metrics.structural_similarity(t, p, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                                  data_range=255, channel_axis=-1)
        out[i, 2] = color.deltaE_ciede2000(color.rgb2lab(t), color.rgb2lab(p)).mean()
    return out


METRICS = build_metrics(["psnr", "ssim", "ciede2000"])
PRED_T = torch.from_numpy(PREDS).permute(0, 3, 1, 2).contiguous().to(DEVICE)
TARGET_T = torch.from_numpy(TARGETS).permute(0, 3, 1, 2).contiguous().to(DEVICE)


def batched(batch_size: int = 64) -> torch.Tensor:
    cols = []
    for s in range(0, N, batch_size):
        b = Batch(PRED_T[s : s + batch_size], TARGET_T[s : s + batch_size])
        cols.append(torch.stack([m.score_batch(b) for m in METRICS.values()], 1))
    out = torch.cat(cols)
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return out


def test_same_numbers() -> None:
    np.testing.assert_allclose(batched().cpu().numpy(), skimage_loop(), atol=1e-4, rtol=0)


def test_skimage_per_image_loop(benchmark) -> None:
    benchmark.group = "metrics: PSNR+SSIM+CIEDE2000, 256 pairs of 96x96"
    benchmark.extra_info.update(images=N, size=SIZE, load_avg_1min=os.getloadavg()[0])
    benchmark.pedantic(skimage_loop, rounds=3, warmup_rounds=1)
    _MEDIANS["skimage"] = benchmark.stats.stats.median


@pytest.mark.parametrize("threads", THREADS)
def test_batched_torch(benchmark, threads: int) -> None:
    benchmark.group = "metrics: PSNR+SSIM+CIEDE2000, 256 pairs of 96x96"
    default = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        benchmark.extra_info.update(images=N, size=SIZE, device=str(DEVICE), threads=threads,
                                    load_avg_1min=os.getloadavg()[0])
        benchmark.pedantic(batched, rounds=5, warmup_rounds=1)
    finally:
        torch.set_num_threads(default)
    if "skimage" not in _MEDIANS:
        pytest.skip("run with test_skimage_per_image_loop to get the ratio")
    ratio = _MEDIANS["skimage"] / benchmark.stats.stats.median
    benchmark.extra_info["speedup_vs_skimage"] = round(ratio, 2)
    print(f"\nbatched PSNR+SSIM+CIEDE2000 on {DEVICE}, {threads} thread(s): {ratio:.2f}x a scikit-image per-image loop "
          f"({N} pairs of {SIZE}x{SIZE}; load average {os.getloadavg()[0]:.1f})")
