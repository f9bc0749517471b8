"""Evaluation throughput: ``bench.evaluate.evaluate`` on samples vs bare predict + metrics on preloaded tiles.

gray and kmeans32 (untrained network; palette fitted on training crops, as ``prepare`` does) on the
samples test split under its card's protocol (48 tiles of 64 px), the weight-free default metrics, batch
16 (the CPU recipe's; BENCH_RECIPE=gpu: the GPU recipe's), on BENCH_DEVICE (CPU by default). Harness: ``evaluate`` as ``bench run`` calls it
(DataLoader over the EvalView, which decodes and tiles the photos, colourisation, metrics, per-image rows,
bootstrap intervals). Bare: the same tiles preloaded as one uint8 tensor, then per batch only
``colorize`` + every metric's scoring. Ratio: harness images/s / bare images/s. The load of other
processes during each timing is recorded beside it (see conftest.py).

    make bench    # or: pytest benchmarks/test_bench_eval.py --benchmark-only -s
"""

from __future__ import annotations

import os

import pytest
import torch

from bench.color import rgb_to_lab
from bench.datasets import DATASETS
from bench.datasets.base import open_split
from bench.datasets.views import EvalView, TrainCrops
from bench.evaluate import colorize, evaluate
from bench.metrics import DEFAULT_METRICS, Batch, availability, build_metrics
from bench.recipes import build_method, load_recipe

DEVICE = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
METHODS = ["gray", "kmeans32"]
ALL_METRICS = build_metrics(list(DEFAULT_METRICS))
METRIC_NAMES = [n for n in DEFAULT_METRICS if n not in availability(ALL_METRICS)]  # weight-free ones here
_BARE: dict[str, float] = {}


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
def test_bare_predict_and_metrics(benchmark, timed, name: str) -> None:
    benchmark.group = "eval: predict + metrics on samples tiles"
    method, batch_size = method_for(name)
    test = open_split(DATASETS.get("samples"), "test", None)
    view = EvalView(test)
    tiles = torch.stack([view[k][0] for k in range(len(view))]).to(DEVICE)
    metrics = build_metrics(METRIC_NAMES)

    def run() -> None:
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

    t = timed(run, rounds=5, warmup=1, method=name, images=len(tiles), batch_size=batch_size, metrics=METRIC_NAMES)
    _BARE[name] = len(tiles) / t
    benchmark.extra_info["images_per_s"] = round(_BARE[name], 1)
    timed.note(f"{name} bare predict + metrics: {_BARE[name]:.0f} images/s")


@pytest.mark.parametrize("name", METHODS)
def test_evaluate(benchmark, timed, name: str) -> None:
    benchmark.group = "eval: bench.evaluate.evaluate on samples"
    method, batch_size = method_for(name)
    test = open_split(DATASETS.get("samples"), "test", None)
    metrics = build_metrics(METRIC_NAMES)
    seconds = []

    def run() -> None:
        view = EvalView(test)  # a fresh view decodes the photos again, as a run does
        seconds.append(evaluate(method, view, metrics, device=DEVICE, batch_size=batch_size, progress=False).seconds)

    t = timed(run, rounds=5, warmup=1, method=name, images=48, batch_size=batch_size, metrics=METRIC_NAMES)
    ips = 48 / t
    benchmark.extra_info.update(images_per_s=round(ips, 1), loop_seconds_median=round(sorted(seconds)[len(seconds) // 2], 4))
    if name not in _BARE:
        pytest.skip("run with test_bare_predict_and_metrics to get the ratio")
    ratio = ips / _BARE[name]
    benchmark.extra_info["ratio_to_bare"] = round(ratio, 3)
    timed.note(f"{name} evaluate: {ips:.0f} images/s = {ratio:.2f} of bare predict + metrics")
