"""Colour round trip: batched sRGB -> Lab -> sRGB uint8 (bench.color) vs scikit-image per image.

256 uint8 photo crops of 96 x 96 (skimage's photos), on BENCH_DEVICE (CPU by default). Ours is
``lab_to_rgb_uint8(rgb_to_lab(batch))`` on the whole batch (what training and evaluation do); scikit-image's
is ``img_as_ubyte(lab2rgb(rgb2lab(image)))`` image by image. The ratio (scikit-image time / ours, medians
of this run; target >= 4x on 2 CPU cores) and the load of other processes during each timing are stored
in the benchmark JSON's ``extra_info`` (see conftest.py). Ours runs at torch's default thread count and at
1 thread. Eager torch only: no torch.compile, so there is no warm-up to hide.

    make bench    # or: pytest benchmarks/test_bench_color.py --benchmark-only -s
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from skimage import color, util

from _photos import photo_crops
from bench.color import lab_to_rgb_uint8, rgb_to_lab

DEVICE = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
THREADS = sorted({1, torch.get_num_threads()})
N, SIZE = 256, 96
GROUP = "colour: sRGB -> Lab -> sRGB uint8, 256 images of 96x96"
_MEDIANS: dict[str, float] = {}


IMAGES = photo_crops(N, SIZE, np.random.default_rng(0))
IMAGES_T = torch.from_numpy(IMAGES).permute(0, 3, 1, 2).contiguous().to(DEVICE)


def skimage_loop() -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # lab2rgb's negative-z warning (photos: none)
        return np.stack([util.img_as_ubyte(color.lab2rgb(color.rgb2lab(im))) for im in IMAGES])


def ours() -> torch.Tensor:
    out = lab_to_rgb_uint8(rgb_to_lab(IMAGES_T))
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return out


def test_same_output() -> None:
    np.testing.assert_array_equal(ours().permute(0, 2, 3, 1).cpu().numpy(), skimage_loop())


def test_skimage_per_image(benchmark, timed) -> None:
    benchmark.group = GROUP
    _MEDIANS["skimage"] = timed(skimage_loop, rounds=3, images=N, size=SIZE)
    timed.note(f"scikit-image round trip: {N / _MEDIANS['skimage']:.0f} images/s")


@pytest.mark.parametrize("threads", THREADS)
def test_batched_torch(benchmark, timed, threads: int) -> None:
    benchmark.group = GROUP
    default = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t = timed(ours, rounds=10, images=N, size=SIZE, device=str(DEVICE), threads=threads)
    finally:
        torch.set_num_threads(default)
    benchmark.extra_info["images_per_s"] = round(N / t, 1)
    if "skimage" not in _MEDIANS:
        pytest.skip("run with test_skimage_per_image to get the ratio")
    ratio = _MEDIANS["skimage"] / t
    benchmark.extra_info["speedup_vs_skimage"] = round(ratio, 2)
    timed.note(f"batched Lab round trip on {DEVICE}, {threads} thread(s): {N / t:.0f} images/s, "
                    f"{ratio:.2f}x scikit-image per image (target >= 4x)")
