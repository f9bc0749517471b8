"""Model FLOPs per training image and the FLOP/s a large matmul reaches: what a result file needs to say
how close training came to the device's peak.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` (matmuls and convolutions, forward
and backward; 1 multiply-add = 2 FLOPs) on a copy of the method, under a forked RNG, so counting changes
neither the weights, the BatchNorm statistics nor the random stream of the run that asked. The peak is
measured, not looked up: the rate of a large square matmul on the same device in the same process, in
the dtype training computes in.
"""

from __future__ import annotations

import contextlib
import copy
import time
from typing import Callable

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode


def _devices(t: Tensor) -> list[int]:
    return [t.device.index or 0] if t.device.type == "cuda" else []


def train_step_flops(method, L: Tensor, ab: Tensor, step: int = 0, autocast: Callable | None = None) -> float:
    """FLOPs of one training step (forward and backward of every update ``method.training_step`` yields at
    ``step``) on the batch ``(L, ab)``. The optimiser steps are not counted (element-wise, not matmul work)."""
    probe = copy.deepcopy(method).train()
    counter = FlopCounterMode(display=False)
    with torch.random.fork_rng(devices=_devices(L)), counter:
        steps = probe.training_step(L, ab, step)
        while True:
            with autocast() if autocast else contextlib.nullcontext():
                upd = next(steps, None)
            if upd is None:
                break
            for p in probe.parameters():
                p.grad = None
            upd.loss.backward()
    return float(counter.get_total_flops())


def train_flops_per_image(method, L: Tensor, ab: Tensor, cycle: int = 1, autocast: Callable | None = None) -> float:
    """Mean FLOPs per image of a training step, averaged over ``cycle`` consecutive steps (a WGAN-GP runs its
    generator every ``n_critic``-th step only)."""
    total = sum(train_step_flops(method, L, ab, step, autocast) for step in range(cycle))
    return total / (cycle * L.shape[0])


def matmul_flops_per_s(device: torch.device, dtype: torch.dtype = torch.float32, n: int | None = None, seconds: float = 0.3) -> float:
    """The FLOP/s of an ``n`` x ``n`` matmul on ``device`` (2 n^3 FLOPs each), the best of several timed runs."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 1024)
    with torch.random.fork_rng(devices=[]):
        gen = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(n, n, generator=gen).to(device, dtype)
        b = torch.randn(n, n, generator=gen).to(device, dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b  # warm-up: kernels chosen, memory touched
    sync()
    best, spent = float("inf"), 0.0
    while spent < seconds or best == float("inf"):
        t0 = time.perf_counter()
        a @ b
        sync()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return 2.0 * n**3 / best
