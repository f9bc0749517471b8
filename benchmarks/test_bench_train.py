"""Training throughput per method: the harness end to end vs the bare model step, and FLOP/s vs a matmul.

For kmeans32, unet, cgan, wgan_gp and zhang-small at their BENCH_RECIPE recipe (``cpu`` by default: 64 px
crops, batch 16; ``gpu``: the full-size recipes), on BENCH_DEVICE (CPU by default), in one run:

* bare: the method's training step on one preloaded batch (L, ab already on the device, channels_last and
  autocast as the trainer makes them: bf16 on CUDA), zero_grad / backward / step for every Update, as the
  trainer does; nothing else.
  Images/s over STEPS_BARE steps (a multiple of wgan_gp's n_critic = 5, so its generator steps are in).
* harness: ``bench.train.train`` on the ``samples`` train split for 100 steps: crops from decoded photos,
  DataLoader, colour conversion, NaN guard, loss logging every 10 steps, a checkpoint every 100 (the
  recipes' log_every and ckpt_every; the checkpoint's cost alone is recorded too). Images/s of its loop
  (``TrainOutcome``); setup (building, palettes, priors) is outside that figure, as in a long run.
* ratio harness / bare (target >= 0.9), against the mean of the bare figure taken just before and one
  taken just after the harness run (the machine's speed drifts by several % over minutes here);
* the bare step's FLOP/s (``bench.flops.train_flops_per_image``, averaged over the method's step cycle)
  as a share of a large matmul's in the training dtype (``bench.flops.matmul_flops_per_s``; fp32 on CPU,
  bf16 on CUDA), measured in this run.

The load of other processes during each timing is recorded beside it (see conftest.py).

    make bench    # or: pytest benchmarks/test_bench_train.py --benchmark-only -s
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from bench.checkpoint import CHECKPOINT
from bench.color import rgb_to_lab
from bench.datasets import DATASETS
from bench.datasets.base import open_split
from bench.datasets.views import TrainCrops
from bench.recipes import build_method, load_recipe
from bench.store import atomic_path
from bench.train import autocast_for, autocast_updates, train, train_dtype

DEVICE = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
RECIPE = os.environ.get("BENCH_RECIPE", "cpu")
METHODS = ["kmeans32", "unet", "cgan", "wgan_gp", "zhang-small"]
STEPS_BARE, STEPS_HARNESS = 5, 100
_DATA = {}


def samples():
    if "train" not in _DATA:
        _DATA["train"] = open_split(DATASETS.get("samples"), "train", None)
    return _DATA["train"]


def recipe_for(name: str, steps: int):
    return load_recipe(name, RECIPE, {"train.steps": str(steps)})


def one_batch(recipe, data) -> tuple[torch.Tensor, torch.Tensor]:
    """The first training batch of the recipe, as Lab on the device (L channels_last as in the trainer)."""
    cfg = recipe.train
    crops = TrainCrops(data, cfg.image_size, 0, resize_to=data.card.short_side)
    with torch.no_grad():
        lab = rgb_to_lab(torch.stack([crops[k] for k in range(cfg.batch_size)]).to(DEVICE))
    L, ab = lab[:, :1], lab[:, 1:]
    return (L.contiguous(memory_format=torch.channels_last) if cfg.channels_last else L), ab


def prepared_method(recipe, data, L: torch.Tensor, ab: torch.Tensor):
    torch.manual_seed(0)
    method = build_method(recipe).to(DEVICE)
    if recipe.train.channels_last and DEVICE.type == "cuda":  # as the trainer converts it
        method = method.to(memory_format=torch.channels_last)
    method.prepare_split(data)
    method.prepare([torch.cat([L, ab], 1)])
    return method.train(), method.configure_optimizers()


class BareStep:
    """The method's updates on one preloaded batch, zero_grad / backward / step each, as the trainer does."""

    def __init__(self, recipe, data):
        self.L, self.ab = one_batch(recipe, data)
        self.method, self.optimizers = prepared_method(recipe, data, self.L, self.ab)
        # The trainer's autocast; its fp16 GradScaler (GPUs without bf16) is left out of the bare step.
        self.autocast, _ = autocast_for(DEVICE, recipe.train.amp)
        self.step = 0

    def __call__(self) -> None:
        for _ in range(STEPS_BARE):
            for upd in autocast_updates(self.method.training_step(self.L, self.ab, self.step), self.autocast):
                opt = self.optimizers[upd.optimizer]
                opt.zero_grad(set_to_none=True)
                upd.loss.backward()
                opt.step()
            self.step += 1
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()

    def images_per_s(self, rounds: int) -> float:
        """Median over ``rounds`` of STEPS_BARE steps (outside pytest-benchmark: the re-measurement)."""
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            self()
            times.append(time.perf_counter() - t0)
        return STEPS_BARE * len(self.L) / sorted(times)[len(times) // 2]


@pytest.mark.parametrize("name", METHODS)
def test_train_throughput(benchmark, timed, scratch, name: str) -> None:
    """Bare step (the pytest-benchmark timing), then the harness, then the bare step again: the ratio is
    against the mean of the two bare figures, so a machine drifting over the minute cancels out."""
    from bench.flops import matmul_flops_per_s, train_flops_per_image

    benchmark.group = "train: bare step on a preloaded batch (harness figures in extra_info)"
    data = samples()
    recipe = recipe_for(name, STEPS_HARNESS)
    bare = BareStep(recipe, data)
    t = timed(bare, rounds=3, warmup=1, method=name, steps=STEPS_BARE, batch_size=len(bare.L), image_size=bare.L.shape[-1])
    bare_ips = STEPS_BARE * len(bare.L) / t
    # per step, averaged over the method's step cycle (wgan_gp: 5 critic steps, the last with the generator's)
    flops = train_flops_per_image(bare.method, bare.L, bare.ab, cycle=bare.method.step_cycle, autocast=bare.autocast) * len(bare.L)
    dtype = train_dtype(DEVICE, recipe.train.amp)
    dtype_name = str(dtype).removeprefix("torch.")
    matmul_rate = matmul_flops_per_s(DEVICE, dtype)  # here, next to the timing it is compared with
    share = flops * bare_ips / len(bare.L) / matmul_rate
    info = benchmark.extra_info
    info.update(images_per_s=round(bare_ips, 2), gflop_per_step=round(flops / 1e9, 2),
                gflop_per_s=round(flops * bare_ips / len(bare.L) / 1e9, 1), matmul_gflop_per_s=round(matmul_rate / 1e9, 1),
                share_of_matmul=round(share, 3), matmul_dtype=dtype_name)
    timed.note(f"{name} bare step: {bare_ips:.1f} images/s, {flops / 1e9:.2f} GFLOP/step, "
               f"{100 * share:.0f}% of a large {dtype_name} matmul's {matmul_rate / 1e9:.0f} GFLOP/s")

    deterministic = torch.are_deterministic_algorithms_enabled()
    load = timed.load()
    try:  # the trainer turns deterministic algorithms on for CPU runs; leave the process as it was
        out = train(recipe, data, results=scratch / "train", seed=0, device=DEVICE, resume=False, progress=False)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    harness_load = load.stop()
    assert out.status == "done"
    load = timed.load()
    bare_after = bare.images_per_s(rounds=2)
    ratio = out.images_per_s / ((bare_ips + bare_after) / 2)
    ckpt_s = _checkpoint_seconds(out.run_dir, scratch)
    info.update(harness_images_per_s=round(out.images_per_s, 2), harness_loop_seconds=round(out.seconds, 2),
                harness_steps=STEPS_HARNESS, log_every=recipe.train.log_every, ckpt_every=recipe.train.ckpt_every,
                harness_load=harness_load, checkpoint_seconds=round(ckpt_s, 3),
                bare_after_images_per_s=round(bare_after, 2), bare_after_load=load.stop(), harness_ratio_to_bare=round(ratio, 3))
    print(f"{name} harness: {out.images_per_s:.1f} images/s = {ratio:.2f} of the bare step (target >= 0.9; bare before "
          f"{bare_ips:.1f}, after {bare_after:.1f}); its checkpoint took {ckpt_s:.2f} s of {out.seconds:.1f} s "
          f"(other processes: {harness_load['other_cpu_cores']} cores busy)")


def _checkpoint_seconds(run_dir, scratch) -> float:
    """Time to write the run's final checkpoint payload again, as save_checkpoint does (torch.save, fsync, rename)."""
    payload = torch.load(run_dir / CHECKPOINT, weights_only=True)
    t0 = time.perf_counter()
    with atomic_path(scratch / "checkpoint-probe.pt") as tmp:
        torch.save(payload, tmp)
    return time.perf_counter() - t0
