"""Data loading: a unet training step fed by the trainer's DataLoader vs the same step on a preloaded batch.

One step = batch of uint8 crops -> ``rgb_to_lab`` -> the method's updates (zero_grad / backward / step),
unet's BENCH_RECIPE recipe (``cpu`` by default: 64 px crops, batch 16; ``gpu``: 256 px, batch 32, 8 workers,
bf16 autocast), on BENCH_DEVICE (CPU by default). Three feeds, one run:

* preloaded: the same uint8 batch from memory every step (no data loading at all);
* loader: ``DataLoader(TrainCrops(samples train split))`` as ``bench.train`` builds it (the recipe's
  num_workers, pinned memory and prefetch on CUDA): decoded and resized photos are cached (samples: decoded once per process; TrainCrops:
  64 prepared images), so this is cropping, flipping, collation;
* decoding: the same loader, but every sample decodes and resizes its photo again (what a dataset far
  larger than the cache costs per sample).

Ratios: preloaded step time / the feed's step time (1.0 = data loading is free). The load of other
processes during each timing is recorded beside it (see conftest.py).

    make bench    # or: pytest benchmarks/test_bench_data.py --benchmark-only -s
"""

from __future__ import annotations

import os
from itertools import count

import pytest
import torch
from torch.utils.data import DataLoader

from bench.color import rgb_to_lab
from bench.datasets import DATASETS
from bench.datasets.base import open_split
from bench.datasets.io import read_image
from bench.datasets.views import TrainCrops
from bench.recipes import build_method, load_recipe
from bench.train import autocast_for, autocast_updates

DEVICE = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
STEPS = 5
RECIPE = load_recipe("unet", os.environ.get("BENCH_RECIPE", "cpu"), {})
CFG = RECIPE.train
DATA = open_split(DATASETS.get("samples"), "train", None)
RESIZE = DATA.card.short_side  # the card's one scale, as bench.train cuts crops
_TIMES: dict[str, float] = {}


class Undecoded:
    """The samples split without its decode cache: every ``load`` reads the file again."""

    def __init__(self, images):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> torch.Tensor:
        return read_image(self.images.paths[self.images.names[i]])


def loader(images, cache: int) -> DataLoader:
    """As bench.train builds it (sampler over sample numbers, num_workers from the recipe), endless."""
    crops = TrainCrops(images, CFG.image_size, 0, resize_to=RESIZE, cache=cache)
    return DataLoader(crops, batch_size=CFG.batch_size, sampler=range(10**9), num_workers=CFG.num_workers,
                      pin_memory=DEVICE.type == "cuda", prefetch_factor=4 if CFG.num_workers else None,
                      drop_last=True, generator=torch.Generator().manual_seed(0))


def feeds():
    first = next(iter(loader(DATA, 64))).to(DEVICE)
    return {
        "preloaded": iter(lambda: first, None),
        "loader": iter(loader(DATA, 64)),
        "decoding": iter(loader(Undecoded(DATA), 0)),
    }


@pytest.mark.parametrize("feed", ["preloaded", "loader", "decoding"])
def test_step_time(benchmark, timed, feed: str) -> None:
    benchmark.group = "data: unet step fed by the DataLoader vs a preloaded batch"
    torch.manual_seed(0)
    method = build_method(RECIPE).to(DEVICE).train()
    if CFG.channels_last and DEVICE.type == "cuda":  # as the trainer converts it
        method = method.to(memory_format=torch.channels_last)
    optimizers = method.configure_optimizers()
    autocast, _ = autocast_for(DEVICE, CFG.amp)
    batches, steps = feeds()[feed], count()

    def step() -> None:
        rgb = next(batches).to(DEVICE, non_blocking=True)
        with torch.no_grad():
            lab = rgb_to_lab(rgb)
        L, ab = lab[:, :1].contiguous(memory_format=torch.channels_last), lab[:, 1:]
        for upd in autocast_updates(method.training_step(L, ab, next(steps)), autocast):
            optimizers[upd.optimizer].zero_grad(set_to_none=True)
            upd.loss.backward()
            optimizers[upd.optimizer].step()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()

    t = timed(step, rounds=STEPS, warmup=1, feed=feed, batch_size=CFG.batch_size, image_size=CFG.image_size,
              num_workers=CFG.num_workers)
    _TIMES[feed] = t
    benchmark.extra_info["step_seconds"] = round(t, 4)
    if feed != "preloaded":
        if "preloaded" not in _TIMES:
            pytest.skip("run with the preloaded case to get the ratio")
        ratio = _TIMES["preloaded"] / t
        benchmark.extra_info["ratio_to_preloaded"] = round(ratio, 3)
        timed.note(f"unet step fed by {feed}: {t:.3f} s vs {_TIMES['preloaded']:.3f} s preloaded = {ratio:.2f}")
