"""Evaluation throughput: ``bench.evaluate.evaluate`` on samples vs bare predict + metrics on preloaded tiles.

gray, kmeans32 (untrained network; palette fitted on training crops, as ``prepare`` does), unet and
zhang-small (untrained; cgan and wgan_gp predict with unet's generator, so they evaluate at its cost) on
the samples test split under its card's protocol (48 tiles of 64 px), the weight-free default metrics,
batch 16 (the CPU recipe's; BENCH_RECIPE=gpu: the GPU recipe's), on BENCH_DEVICE (CPU by default).
Harness: ``evaluate`` as ``bench run`` calls it (the pixel cache opened, an EvalView that tiles the cached
photos, batches loaded ahead in a thread while the last is scored, colourisation, metrics, per-image rows,
bootstrap intervals). Bare: the same tiles preloaded as one uint8 tensor, then per batch only ``colorize``
+ every metric's scoring. Ratio: harness images/s / bare images/s (aim: at least 0.9). The load of other
processes during each timing is recorded beside it (see conftest.py).

    make bench    # or: pytest benchmarks/test_bench_eval.py --benchmark-only -s
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from bench.color import rgb_to_lab
from bench.datasets import DATASETS
from bench.datasets.base import open_split
from bench.datasets.pixels import pixel_source
from bench.datasets.views import EvalView, TrainCrops, eval_scale
from bench.evaluate import colorize, evaluate
from bench.metrics import DEFAULT_METRICS, Batch, availability, build_metrics
from bench.recipes import build_method, load_recipe

DEVICE = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
METHODS = ["gray", "kmeans32", "unet", "zhang-small"]
ALL_METRICS = build_metrics(list(DEFAULT_METRICS))
METRIC_NAMES = [n for n in DEFAULT_METRICS if n not in availability(ALL_METRICS)]  # weight-free ones here
ROUNDS = 5


def method_for(name: str):
    recipe = load_recipe(name, os.environ.get("BENCH_RECIPE", "cpu"), {})
    torch.manual_seed(0)
    method = build_method(recipe).to(DEVICE)
    if recipe.trainable:
        train = open_split(DATASETS.get("samples"), "train", None)
        crops = TrainCrops(train, recipe.train.image_size, 0, resize_to=train.card.short_side)
        with torch.no_grad():
            method.prepare([rgb_to_lab(torch.stack([crops[-1 - k] for k in range(128)]).to(DEVICE))])
    return method.eval(), recipe.train.batch_size


def test_samples_view_is_48_tiles() -> None:
    test = open_split(DATASETS.get("samples"), "test", None)
    view = EvalView(test)
    assert view.fixed_size and len(view) == 48


@pytest.mark.parametrize("name", METHODS)
def test_evaluate_vs_bare_predict_and_metrics(benchmark, timed, scratch, name: str) -> None:
    """Bare and harness take turns (which goes first alternates), so that a change in the machine's load
    (other processes come and go within seconds here) falls on both alike; each figure is a median."""
    benchmark.group = "eval: bench.evaluate.evaluate vs bare predict + metrics on samples tiles"
    method, batch_size = method_for(name)
    test = open_split(DATASETS.get("samples"), "test", None)
    view = EvalView(test)
    tiles = torch.stack([view[k][0] for k in range(len(view))]).to(DEVICE)
    metrics = build_metrics(METRIC_NAMES)
    times: dict[str, list[float]] = {"bare": [], "harness": []}

    def bare() -> None:
        for m in metrics.values():
            m.reset()
        for s in range(0, len(tiles), batch_size):
            rgb = tiles[s : s + batch_size]
            batch = Batch(colorize(method, rgb), rgb)
            for m in metrics.values():
                if m.per_image:
                    m.score_batch(batch)
                else:
                    m.update(batch)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()

    def harness() -> None:
        # As bench run does: open the pixel cache (built in the warm-up round), a fresh view on it.
        pixels = pixel_source(test, eval_scale(test.card.eval_protocol()), device=DEVICE, progress=False, keep=1)
        evaluate(method, EvalView(test, pixels=pixels), metrics, device=DEVICE,
                 batch_size=batch_size, progress=False)

    def both() -> None:
        order = [("bare", bare), ("harness", harness)]
        for key, fn in order if len(times["bare"]) % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)

    timed(both, rounds=ROUNDS, warmup=1, method=name, images=len(tiles), batch_size=batch_size, metrics=METRIC_NAMES)
    median = {k: float(np.median(v[1:])) for k, v in times.items()}  # the warm-up round left out
    ratio = median["bare"] / median["harness"]
    benchmark.extra_info.update(bare_images_per_s=round(len(tiles) / median["bare"], 1),
                                images_per_s=round(len(tiles) / median["harness"], 1), ratio_to_bare=round(ratio, 3))
    timed.note(f"{name} evaluate: {len(tiles) / median['harness']:.0f} images/s = {ratio:.2f} of bare predict + metrics "
               f"({len(tiles) / median['bare']:.0f} images/s)")
