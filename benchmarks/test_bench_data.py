"""Data loading from DIV2K-sized files: crops per second per loader core, with and without the pixel cache,
and the unet training step fed by the real loader vs the same step on a preloaded batch.

The benchmark writes N_IMAGES PNGs of DIV2K's typical size (2040 x 1356) in DIV2K's layout into its scratch
folder: scikit-image photos upscaled, with Gaussian noise (sigma 3) so that the files are about as large as
DIV2K's (4.4 MB on average: 3.53 GB of PNGs for 800 images) and take as long to decode. They are read by
the ``div2k`` loader (full size, no resize), as a DIV2K run reads them.

* crops per second per loader core: ``DataLoader(TrainCrops)`` of 256-px crops (the ``gpu`` recipe's
  size) in batches, in this process with one torch thread (a DataLoader worker runs with one), from the
  pixel cache and from decoding. Decoding keeps no image: DIV2K has 800, and the 64 a worker keeps are hit
  by 8% of the crops, so nearly every crop decodes a whole 2K PNG. From the two rates, the loader cores
  that GPU rates of BENCH_GPU_RATES images/s (default 1000, 3000, 10000) would need.
* unet step (BENCH_RECIPE's size: ``cpu`` 64 px, batch 16; ``gpu`` 256 px, batch 32, 8 workers, bf16) fed
  by ``DataLoader(TrainCrops(...))`` as ``bench.train`` builds it (the recipe's workers; pinned memory and
  non-blocking copies on CUDA): preloaded (one batch from memory every step), cache, decoding. Ratio:
  preloaded step time / the feed's step time (1.0: loading is free; the aim for the cache is 0.95).
* on CUDA, also JPEG copies of the same photos decoded by nvJPEG (``--no-cache`` on a JPEG dataset).

The load of other processes is recorded beside each timing (see conftest.py).

    make bench    # or: pytest benchmarks/test_bench_data.py --benchmark-only -s
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from bench.color import rgb_to_lab
from bench.datasets import DATASETS
from bench.datasets.base import open_split
from bench.datasets.pixels import CudaJpegPixels, loader_options, pixel_source
from bench.datasets.views import DecodedPixels, TrainCrops, train_crops, train_scale
from bench.recipes import build_method, load_recipe
from bench.train import autocast_for, autocast_updates

DEVICE = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
RECIPE = load_recipe("unet", os.environ.get("BENCH_RECIPE", "cpu"), {})
CFG = RECIPE.train
N_IMAGES, DIV2K_SIZE, CROP = 6, (1356, 2040), 256
GPU_RATES = [float(r) for r in os.environ.get("BENCH_GPU_RATES", "1000,3000,10000").split(",")]
STEPS = 5
_RATES: dict[str, float] = {}


def _write_png(path: Path, photo: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    big = np.asarray(Image.fromarray(photo).resize(DIV2K_SIZE[::-1], Image.BICUBIC)).astype(np.int16)
    noisy = (big + rng.normal(0, 3, big.shape).round().astype(np.int16)).clip(0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(path)


@pytest.fixture(scope="module")
def div2k(scratch) -> dict:
    """N_IMAGES DIV2K-sized PNGs in DIV2K's layout, the loader's split, and the time one decode takes."""
    from skimage import data

    root = scratch / "div2k"
    folder = root / "DIV2K_train_HR"
    folder.mkdir(parents=True, exist_ok=True)
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    paths = [folder / f"{k + 1:04d}.png" for k in range(N_IMAGES)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # Pillow's encoder releases the GIL
        list(pool.map(lambda k: _write_png(paths[k], photos[k % len(photos)], k), range(N_IMAGES)))
    images = open_split(DATASETS.get("div2k"), "train", root)
    decode = []
    for k in range(3):
        t0 = time.perf_counter()
        images.load(k)
        decode.append(time.perf_counter() - t0)
    return {"root": root, "images": images, "decode_ms": 1000 * sorted(decode)[1],
            "png_mb": float(np.mean([p.stat().st_size for p in paths]) / 1e6)}


def crop_loader(crops: TrainCrops, batch_size: int, workers: int) -> DataLoader:
    """As bench.train builds it (sampler over sample numbers, pinned memory on CUDA), endless."""
    return DataLoader(crops, batch_size=batch_size, sampler=range(10**9), **loader_options(crops.pixels, DEVICE, workers),
                      drop_last=True, generator=torch.Generator().manual_seed(0))


def sources(images, size: int) -> dict:
    scale = train_scale(images, size)  # the card's short_side, as bench.train reads them
    return {"cache": lambda: pixel_source(images, scale, progress=False),
            "decoding": lambda: DecodedPixels(images, scale, keep=0)}


@pytest.mark.parametrize("source", ["decoding", "cache"])
def test_crops_per_loader_core(benchmark, timed, div2k, source: str) -> None:
    benchmark.group = "data: 256-px crops per second per loader core from DIV2K-sized PNGs"
    pixels = sources(div2k["images"], CROP)[source]()
    batch, n_batches = (8, 1) if source == "decoding" else (32, 32)
    batches = iter(crop_loader(train_crops(div2k["images"], CROP, 0, pixels), batch, 0))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one loader core: a DataLoader worker runs with one torch thread
    try:
        t = timed(lambda: [next(batches) for _ in range(n_batches)], rounds=3, warmup=1, source=source, crop=CROP,
                  images=N_IMAGES, image_size=list(DIV2K_SIZE), png_mb=round(div2k["png_mb"], 2),
                  decode_ms_median_of_3=round(div2k["decode_ms"], 1))
    finally:
        torch.set_num_threads(threads)
    rate = batch * n_batches / t
    _RATES[source] = rate
    benchmark.extra_info["crops_per_s_per_core"] = round(rate, 1)
    timed.note(f"{CROP}-px crops from DIV2K-sized PNGs ({div2k['png_mb']:.1f} MB each), {source}: {rate:,.0f} crops/s per loader core")
    if source == "cache" and "decoding" in _RATES:
        cores = {f"{r:g}": {s: round(r / _RATES[s], 2) for s in ("cache", "decoding")} for r in GPU_RATES}
        benchmark.extra_info.update(ratio_to_decoding=round(rate / _RATES["decoding"], 1), loader_cores_needed=cores)
        print(f"cache / decoding: {rate / _RATES['decoding']:,.0f}x. Loader cores a GPU consuming R images/s needs:")
        for r, need in cores.items():
            print(f"  R = {float(r):>7,.0f}/s: {need['cache']:>6.2f} cores from the cache, {need['decoding']:>8,.0f} decoding")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nvJPEG)")
def test_crops_from_gpu_jpeg_decoding(benchmark, timed, div2k) -> None:
    benchmark.group = "data: 256-px crops per second per loader core from DIV2K-sized PNGs"
    folder = div2k["root"] / "jpeg" / "DIV2K_train_HR"
    folder.mkdir(parents=True, exist_ok=True)
    for p in sorted((div2k["root"] / "DIV2K_train_HR").glob("*.png")):
        Image.open(p).save(folder / f"{p.stem}.jpg", quality=95)
    images = open_split(DATASETS.get("div2k"), "train", div2k["root"] / "jpeg")
    crops = train_crops(images, CROP, 0, CudaJpegPixels(images, train_scale(images, CROP), torch.device("cuda"), keep=0))
    batches = iter(crop_loader(crops, 32, 0))

    def run() -> None:
        next(batches)
        torch.cuda.synchronize()

    t = timed(run, rounds=3, warmup=1, source="gpu-jpeg", crop=CROP, images=N_IMAGES)
    benchmark.extra_info["crops_per_s"] = round(32 / t, 1)
    timed.note(f"{CROP}-px crops, JPEGs decoded by nvJPEG in the training process: {32 / t:,.0f} crops/s")


FEEDS = ("preloaded", "cache", "decoding")


class FedStep:
    """One unet training step per call, its batch from ``feed``; each feed trains its own copy of the model."""

    def __init__(self, images, feed: str):
        torch.manual_seed(0)
        self.method = build_method(RECIPE).to(DEVICE).train()
        if CFG.channels_last and DEVICE.type == "cuda":  # as the trainer converts it
            self.method = self.method.to(memory_format=torch.channels_last)
        self.optimizers = self.method.configure_optimizers()
        self.autocast, _ = autocast_for(DEVICE, CFG.amp)
        pixels = sources(images, CFG.image_size)["cache" if feed == "preloaded" else feed]()
        loader = crop_loader(train_crops(images, CFG.image_size, 0, pixels), CFG.batch_size, CFG.num_workers)
        if feed == "preloaded":
            first = next(iter(loader)).to(DEVICE)
            self.batches = iter(lambda: first, None)
        else:
            self.batches = iter(loader)
        self.steps = count()
        self.seconds: list[float] = []
        self.waits: list[float] = []  # of each step, the time spent getting its batch

    def __call__(self) -> None:
        t0 = time.perf_counter()
        rgb = next(self.batches).to(DEVICE, non_blocking=True)
        self.waits.append(time.perf_counter() - t0)
        with torch.no_grad():
            lab = rgb_to_lab(rgb)
        L, ab = lab[:, :1].contiguous(memory_format=torch.channels_last), lab[:, 1:]
        for upd in autocast_updates(self.method.training_step(L, ab, next(self.steps)), self.autocast):
            self.optimizers[upd.optimizer].zero_grad(set_to_none=True)
            upd.loss.backward()
            self.optimizers[upd.optimizer].step()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - t0)


def test_unet_step_fed_by_the_loader(benchmark, timed, div2k) -> None:
    """Without loader workers (the ``cpu`` recipe) the three feeds take turns, one step each, so that a change
    in the machine's load (other processes come and go within seconds here) falls on all three alike. With
    workers they run one after another: workers loading ahead while another feed's step runs would flatter
    their feed. Each feed's figure is the median of its steps after the first (a warm-up)."""
    benchmark.group = "data: unet step fed by the DataLoader (DIV2K-sized PNGs) vs a preloaded batch"
    fed = {feed: FedStep(div2k["images"], feed) for feed in FEEDS}
    rounds = range(STEPS + 1)
    schedule = [f for _ in rounds for f in FEEDS] if CFG.num_workers == 0 else [f for f in FEEDS for _ in rounds]
    timed(lambda: [fed[f]() for f in schedule], rounds=1, warmup=0, feeds=list(FEEDS), steps_per_feed=STEPS,
          interleaved=CFG.num_workers == 0, batch_size=CFG.batch_size, image_size=CFG.image_size,
          num_workers=CFG.num_workers, images=N_IMAGES, image_pixels=list(DIV2K_SIZE))
    median = {f: float(np.median(fed[f].seconds[1:])) for f in FEEDS}
    # The time a step waited for its batch, as a share of the step: the cost of loading alone, which other
    # processes' load blurs far less than the ratio of two step times.
    wait = {f: float(np.median(fed[f].waits[1:])) for f in FEEDS}
    benchmark.extra_info["step_seconds"] = {f: round(t, 4) for f, t in median.items()}
    benchmark.extra_info["batch_wait_seconds"] = {f: round(t, 5) for f, t in wait.items()}
    benchmark.extra_info["ratio_to_preloaded"] = {f: round(median["preloaded"] / median[f], 3) for f in FEEDS[1:]}
    for f in FEEDS[1:]:
        timed.note(f"unet step fed by the loader ({f}): {median[f]:.3f} s vs {median['preloaded']:.3f} s preloaded "
                   f"= {median['preloaded'] / median[f]:.2f}; waiting for the batch: {1000 * wait[f]:.1f} ms a step "
                   f"({wait[f] / median[f]:.1%})")
    consumed = CFG.batch_size / median["preloaded"]
    if {"cache", "decoding"} <= set(_RATES):  # this device's own rate, in loader cores (at 256-px crops)
        cores = {s: round(consumed / _RATES[s], 3) for s in ("cache", "decoding")}
        benchmark.extra_info.update(images_per_s_preloaded=round(consumed, 1), loader_cores_needed=cores)
        print(f"this {DEVICE.type} unet step consumes {consumed:,.1f} images/s: {cores['cache']:.2f} loader cores from "
              f"the cache, {cores['decoding']:.1f} decoding")
