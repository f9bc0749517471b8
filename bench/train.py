"""The one training loop for every method.

The trainer owns device, precision, seeding, logging, checkpoints and resume (the files themselves are
:mod:`bench.checkpoint`'s); a method only turns a batch
into optimiser updates (see :mod:`bench.methods.base`). Resume is bit-identical on CPU because the data
stream is a pure function of (seed, sample number) and checkpoints hold weights, optimisers, the AMP
scaler, the step and every RNG state (and the weight EMA when there is one; the learning rate is a
function of the step, :mod:`bench.schedules`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from bench import distributed
from bench.averaging import WeightEMA
from bench.checkpoint import (
    CHECKPOINT, LOSSES, TRAIN_JSON, CheckpointError, checkpoint_sha256, is_trained, load_checkpoint, rng_state,
    run_identity, save_checkpoint, set_rng_state,
)
from bench.color import rgb_to_lab
from bench.config import MethodRecipe, to_plain
from bench.datasets.base import ImageSet
from bench.datasets.pixels import loader_options, pixel_source
from bench.datasets.views import PixelSubset, train_crops, train_scale
from bench.device import pick_device
from bench.methods import METHODS, Method
from bench.progress import Progress, progress_mode
from bench.recipes import build_method
from bench.schedules import apply_schedules, check_optimizer_names, remember_base_lr, schedule_for
from bench.store import atomic_path, environment, now, short_hash, train_dir, write_json_atomic
from bench.validation import VALIDATION, Validator, hold_out


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says which checkpoint is kept and that the same command resumes."""


def seed_everything(seed: int, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic mode also NaN-fills every new tensor (profiled: aten::fill_ 0.3 -> 34 ms per unet
        # step); results do not depend on it, so the fill is skipped.
        torch.utils.deterministic.fill_uninitialized_memory = False
    elif device.type == "cuda":
        # Crops have one size for a whole run, so cuDNN's autotuner pays for itself after a few steps (CUDA
        # runs are seeded, not bit-reproducible: atomics in the backward kernels reorder float sums anyway).
        torch.backends.cudnn.benchmark = True


# --------------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainOutcome:
    run_dir: Path
    status: str  # "done", "skipped" (already trained), "untrained" (method needs no training)
    steps: int = 0
    seconds: float = 0.0
    images_per_s: float | None = None
    resumed_from: int = 0  # the step an interrupted run was resumed from (0: a fresh run)


class LossLog:
    """``losses.csv``: one row per log interval, appended and flushed so a crash loses at most one row."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        self.fields: list[str] | None = None
        if resume_step > 0 and path.exists():  # keep only rows the resumed weights have seen
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
            if rows:
                self.fields = list(rows[0])
                with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
                    w = csv.DictWriter(fh, self.fields)
                    w.writeheader()
                    w.writerows(rows)
        elif path.exists():
            path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        new = not self.path.exists()
        if self.fields is None:
            self.fields = list(row)
        elif set(row) - set(self.fields) and not new:
            # A column first seen now (a GAN whose generator steps every n-th step): rewrite with it.
            with open(self.path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            self.fields += [k for k in row if k not in self.fields]
            with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, self.fields)
                w.writeheader()
                w.writerows(rows)
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


def autocast_for(device: torch.device, enabled: bool) -> tuple[Any, torch.amp.GradScaler | None]:
    """bf16 autocast where supported (no scaler needed), fp16 with a GradScaler otherwise; CUDA only.

    CPU runs stay float32, so their results do not hinge on whether the CPU has bf16 instructions (with
    AVX512-BF16, CPU bf16 autocast measured 1.4x faster on a unet step and 1.7x on kmeans32; without them
    bf16 is emulated)."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext, None
    return mixed_precision("cuda", train_dtype(device, enabled))


def train_dtype(device: torch.device, amp: bool) -> torch.dtype:
    """The dtype autocast_for computes in (the matmul peak a run is compared with is measured in it)."""
    if amp and device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def mixed_precision(device_type: str, dtype: torch.dtype) -> tuple[Any, torch.amp.GradScaler | None]:
    """An autocast factory for ``dtype``, and the GradScaler fp16 needs (its range underflows small
    gradients; bf16 has float32's range and needs none)."""
    scaler = torch.amp.GradScaler(device_type) if dtype == torch.float16 else None
    return (lambda: torch.autocast(device_type, dtype=dtype)), scaler


class SampleRange(Dataset):
    """Samples ``first``, ``first + 1``, ... of the endless crop stream, as a sized dataset for a sampler."""

    def __init__(self, crops: Dataset, first: int, n: int):
        self.crops, self.first, self.n = crops, first, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, p: int) -> Tensor:
        return self.crops[self.first + p]


def train(
    recipe: MethodRecipe,
    data: ImageSet,
    *,
    results: Path,
    seed: int = 0,
    device: torch.device | None = None,
    resume: bool = True,
    progress: bool | None = None,
    pixel_cache: bool = True,
) -> TrainOutcome:
    """Train ``recipe`` on ``data`` (the train split) into its run folder, resuming if a checkpoint exists.
    ``pixel_cache=False`` (``--no-cache``) decodes crops from the files instead (same crops, slower).

    Started by torchrun, every process runs this with the same arguments: each takes ``batch_size /
    WORLD_SIZE`` of every global batch, gradients are averaged (:mod:`bench.distributed`), and only rank 0
    writes the run folder.
    """
    device = device or pick_device()
    identity = run_identity(recipe, data, seed)
    ident_hash = short_hash(identity, 64)
    run_dir = train_dir(results, recipe.name, data.name, seed, identity)
    if not recipe.trainable or not METHODS.get(recipe.adapter).needs_training:
        return TrainOutcome(run_dir, "untrained")
    d = distributed.init(device)
    # Decided together: a process that skipped while the others trained would leave them waiting.
    if all(distributed.gather_objects(resume and is_trained(run_dir), d)):
        return TrainOutcome(run_dir, "skipped", recipe.train.steps)
    cfg = recipe.train
    if cfg.batch_size % (d.world * cfg.accumulate):
        unit = d.world * cfg.accumulate
        raise ValueError(f"{recipe.name}: train.batch_size {cfg.batch_size} is the global batch and must divide "
                         f"among the {d.world} processes x {cfg.accumulate} micro-batches (train.accumulate); "
                         f"use --set train.batch_size={cfg.batch_size // unit * unit or unit}")
    local_batch = cfg.batch_size // d.world
    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / CHECKPOINT

    seed_everything(seed, device)  # before the networks are built: their initial weights are drawn here
    method = build_method(recipe).to(device)
    if d.enabled and device.type == "cuda":
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    if cfg.channels_last and device.type == "cuda":
        # cuDNN's NHWC kernels want NHWC weights too (else a transpose per conv). oneDNN on CPU reorders
        # weights itself: converting them there changed nothing measurable (unet 456-492 ms a step either way).
        method = method.to(memory_format=torch.channels_last)
    optimizers = method.configure_optimizers()
    check_optimizer_names(cfg, optimizers, recipe.source or recipe.name)
    remember_base_lr(optimizers)
    if d.is_main:
        for name in optimizers:
            if far := schedule_for(cfg, name).beyond(cfg.steps):
                print(f"train {recipe.name}: the {name} schedule's {', '.join(far)} lie beyond train.steps {cfg.steps}: "
                      "never reached in this run", file=sys.stderr)
    autocast, scaler = autocast_for(device, cfg.amp)
    start, before = 0, 0.0  # before: training seconds of earlier sessions up to the checkpoint resumed from
    pixels = pixel_source(data, train_scale(data, cfg.image_size), cache=pixel_cache and cfg.pixel_cache,
                          device=device, progress=progress)
    train_data, train_pixels, validator = data, pixels, None
    if cfg.val_every:  # the held-out slice never reaches training; only the main process scores it
        train_data, held = hold_out(data, cfg.val_images)
        train_pixels = PixelSubset(pixels, train_data.indices)
        if d.is_main:
            validator = Validator(held, cfg.image_size, data.card.short_side, device, local_batch)
    crops = train_crops(train_data, cfg.image_size, seed, train_pixels)  # at the card's one scale, as evaluation predicts
    # A run is resumed only from a checkpoint every process can see (the results folder is shared).
    have_ckpt = resume and all(distributed.gather_objects(ckpt_path.exists(), d))
    if have_ckpt:
        ckpt = load_checkpoint(ckpt_path, device)
        if ckpt["identity"] != ident_hash:
            raise CheckpointError(f"{ckpt_path}: belongs to another configuration; delete the folder {run_dir}")
        method.load_state_dict(ckpt["model"])
        for name, opt in optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][name])
        ema = WeightEMA(method, cfg.ema_decay) if cfg.ema_decay else None
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        if scaler is not None and ckpt["scaler"] is not None:
            scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt["rng"]
        set_rng_state(rng[d.rank % len(rng)] if isinstance(rng, list) else rng)
        start = int(ckpt["step"])
        before = float(ckpt.get("seconds") or 0.0)
    else:
        method.prepare_split(train_data)
        # A separate stream of crops (negative sample numbers) so preparation never shifts training data.
        n = cfg.prepare_images
        with torch.no_grad():
            batches = [
                rgb_to_lab(torch.stack([crops[-1 - k] for k in range(i, min(i + cfg.batch_size, n))]).to(device))
                for i in range(0, n, cfg.batch_size)
            ]
            method.prepare(batches)
        del batches
        distributed.broadcast_state(method, d)  # one starting point, whatever preparation did on each process
        if d.enabled:  # same weights everywhere, but each process its own noise (GAN interpolates, dropout)
            torch.manual_seed(seed * 1_000_003 + d.rank)
        ema = WeightEMA(method, cfg.ema_decay) if cfg.ema_decay else None  # starts from the prepared weights

    flops = _flops_per_image(method, recipe, device, autocast)
    meta = {
        "schema_version": 1,
        "status": "running",
        "method": recipe.name,
        "dataset": data.identity(),
        "seed": seed,
        "identity": identity,
        "identity_hash": ident_hash,
        "recipe": recipe.to_dict(),
        "recipe_source": recipe.source,
        "environment": {**environment(str(device)), "processes": d.world,
                        **({"batchnorm": "synchronised" if device.type == "cuda" else "per process"} if d.enabled else {})},
        "started": _first_start(run_dir / TRAIN_JSON) if start else now(),
        "resumed_from_step": start,
        "method_info": method.extra_info(),
        "pixels": train_pixels.describe(),
        "schedules": {name: to_plain(schedule_for(cfg, name)) for name in optimizers},
        **({"ema": {"decay": cfg.ema_decay, "scored": cfg.ema_eval}} if ema is not None else {}),
        **({"validation": {"every": cfg.val_every, **validator.describe(), "log": VALIDATION}} if validator is not None else {}),
    }
    if d.is_main:
        write_json_atomic(run_dir / TRAIN_JSON, meta)
    # What the checkpoint file carries about itself: enough to evaluate it alone (bench run --checkpoint).
    file_meta = {"recipe": meta["recipe"], "identity": identity, "identity_hash": ident_hash, "weights": "trained"}
    log = LossLog(run_dir / LOSSES, start) if d.is_main else None
    val_log = LossLog(run_dir / VALIDATION, start) if validator is not None else None
    if cfg.compile:
        for net in method.children():  # in place: the state_dict keys stay those of the eager modules
            net.compile()

    stream = SampleRange(crops, start * cfg.batch_size, (cfg.steps - start) * cfg.batch_size)
    loader = DataLoader(
        stream,
        batch_size=local_batch,
        # Process r takes samples r, r + W, r + 2W, ...: global batch i is samples i*B .. (i+1)*B - 1 on any
        # number of processes, so N processes see what one process would.
        sampler=DistributedSampler(stream, num_replicas=d.world, rank=d.rank, shuffle=False, drop_last=True),
        **loader_options(pixels, device, cfg.num_workers),  # workers, pinned batches on CUDA, prefetch
        persistent_workers=False,
        drop_last=True,
        # Its own generator: a loader otherwise draws a seed from the global RNG when it starts, which a
        # resumed run would draw again after restoring that RNG (methods that sample noise then diverge).
        generator=torch.Generator().manual_seed(seed),
    )
    bar = Progress(progress_mode(progress, d.is_main), cfg.steps, start, f"train {recipe.name}", "step")
    method.train()
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    bad = torch.zeros((), dtype=torch.bool, device=device)
    last_good = start if have_ckpt else None
    t0, t_window, n_window = time.perf_counter(), time.perf_counter(), 0
    step = start
    try:
        for step, rgb in enumerate(loader, start):
            apply_schedules(optimizers, cfg, step)
            rgb = rgb.to(device, non_blocking=True)
            with torch.no_grad():
                lab = rgb_to_lab(rgb)
            L, ab = lab[:, :1], lab[:, 1:]
            if cfg.channels_last:
                L = L.contiguous(memory_format=torch.channels_last)
            for name, loss, logs in take_step(method, optimizers, L, ab, step, cfg, autocast, scaler, d):
                bad |= ~torch.isfinite(loss)
                for k, v in {f"loss_{name}": loss, **logs}.items():
                    sums[k] = sums.get(k, 0) + v
                    counts[k] = counts.get(k, 0) + 1
            if scaler:
                scaler.update()
            if ema is not None:
                ema.update(method)
            n_window += 1
            bar.advance()
            done = step + 1
            at_log = done % cfg.log_every == 0 or done == cfg.steps
            at_ckpt = done % cfg.ckpt_every == 0 or done == cfg.steps
            if device.type == "cpu" or at_log or at_ckpt:  # a sync per step only where it is free
                if distributed.any_process(bad, d):
                    where = f"at step {done}" if device.type == "cpu" else f"between steps {done - n_window + 1} and {done}"
                    kept = f"the last good checkpoint (step {last_good}) is kept at {ckpt_path}" if last_good is not None else "no checkpoint was written yet"
                    raise TrainingDiverged(
                        f"{recipe.name}: the loss became NaN or inf {where}; {kept}. "
                        "Lower the learning rate (--set train.lr=...) or enable gradient clipping (--set train.grad_clip=1.0)."
                    )
            if at_log:
                dt = time.perf_counter() - t_window
                ips = n_window * cfg.batch_size / max(dt, 1e-9)
                # each value is averaged over the updates that logged it (not every step has every update)
                means = distributed.mean_over_processes({k: v / counts[k] for k, v in sums.items()}, d)
                row = {"step": done, **{k: round(float(v), 6) for k, v in means.items()}, "images_per_s": round(ips, 2)}
                if log is not None:
                    log.write(row)
                bar.report({k: v for k, v in row.items() if k.startswith("loss")} | {"img/s": round(ips, 1)})
                sums, counts, t_window, n_window = {}, {}, time.perf_counter(), 0
            if validator is not None and (done % cfg.val_every == 0 or done == cfg.steps):
                with ema.swapped_into(method) if ema is not None and cfg.ema_eval else contextlib.nullcontext():
                    val_log.write({"step": done, **{k: round(v, 6) for k, v in validator(method).items()}})
            if at_ckpt:
                rngs = distributed.gather_objects(rng_state(), d)
                if d.is_main:
                    extras = {"ema": ema.state_dict() if ema is not None else None,
                              "seconds": before + time.perf_counter() - t0,
                              "lr": {name: opt.param_groups[0]["lr"] for name, opt in optimizers.items()}}
                    save_checkpoint(ckpt_path, method, optimizers, scaler, done, ident_hash, rngs if d.enabled else rngs[0], extras,
                                    meta=file_meta)
                last_good = done
    except BaseException as exc:
        meta.update(status="failed" if not isinstance(exc, KeyboardInterrupt) else "interrupted", error=f"{type(exc).__name__}: {exc}", ended=now())
        if d.is_main:
            write_json_atomic(run_dir / TRAIN_JSON, meta)
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, TrainingInterrupted):
            raise TrainingInterrupted(_interrupted(recipe.name, bar.done, cfg, ckpt_path, last_good)) from exc
        raise
    finally:
        bar.close()
    session = time.perf_counter() - t0
    seconds = before + session  # every session's time up to its last checkpoint: the training behind these weights
    trained = cfg.steps - start
    ips = trained * cfg.batch_size / session if trained else None
    meta.update(status="done", steps=cfg.steps, seconds=round(seconds, 3), images_per_s=ips, ended=now(),
                **({"session_seconds": round(session, 3)} if start else {}),
                throughput=_throughput(ips, flops, device, cfg.amp, d.world))
    if d.is_main:
        # The checkpoint this run finished with: is_trained() refuses one that differs (e.g. truncated).
        meta["checkpoint_sha256"] = checkpoint_sha256(ckpt_path)
        write_json_atomic(run_dir / TRAIN_JSON, meta)
    distributed.barrier(d)  # nobody evaluates before the main process has written the checkpoint
    return TrainOutcome(run_dir, "done", cfg.steps, seconds, ips, resumed_from=start)


def _interrupted(name: str, done: int, cfg: Any, ckpt_path: Path, last_good: int | None) -> str:
    """What a person needs after Ctrl-C: where training stopped, what is kept, how to go on."""
    head = f"{name}: training interrupted after step {done} of {cfg.steps}"
    if last_good is None:
        return (f"{head}; no checkpoint was written yet (the first comes at step {min(cfg.ckpt_every, cfg.steps)}): "
                "the same command starts it again from step 0")
    return f"{head}; the checkpoint of step {last_good} is kept at {ckpt_path}: run the same command again to resume from step {last_good}"


def _flops_per_image(method: Method, recipe: MethodRecipe, device: torch.device, autocast: Any) -> float | None:
    """Model FLOPs per training image at the recipe's crop size (forward + backward; see :mod:`bench.flops`)."""
    from bench.flops import train_flops_per_image

    size = recipe.train.image_size
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        L = torch.rand(2, 1, size, size, device=device) * 100
        ab = torch.randn(2, 2, size, size, device=device) * 20
    try:
        return train_flops_per_image(method, L, ab, cycle=getattr(method, "step_cycle", 1), autocast=autocast)
    except Exception as exc:  # counting is a report, never a reason to fail a run
        print(f"train: could not count {recipe.name}'s FLOPs ({type(exc).__name__}: {exc}); throughput is recorded without them", file=sys.stderr)
        return None


def _throughput(ips: float | None, flops: float | None, device: torch.device, amp: bool, world: int) -> dict[str, Any]:
    """Images/s (all processes), model FLOP/s, and their fraction of what a large matmul reaches on this
    process's device in the training dtype, times the number of processes."""
    from bench.flops import matmul_flops_per_s

    dtype = train_dtype(device, amp)
    out: dict[str, Any] = {"images_per_s": ips, "train_flops_per_image": flops, "matmul_dtype": str(dtype).removeprefix("torch.")}
    if ips and flops:
        peak = matmul_flops_per_s(device, dtype)
        achieved = ips * flops
        out.update(achieved_flops_per_s=achieved, matmul_flops_per_s=peak, fraction_of_matmul=round(achieved / (peak * world), 4))
    return out


def take_step(method: Method, optimizers: dict[str, torch.optim.Optimizer], L: Tensor, ab: Tensor, step: int, cfg: Any,
              autocast: Any, scaler: Any, d: distributed.Dist) -> Iterator[tuple[str, Tensor, dict[str, Tensor]]]:
    """One training step: each update the method yields is a backward and an optimiser step; yields
    (optimiser, loss, logs) of each once it is stepped (the loss and logs as floats, detached).

    With ``train.accumulate`` = n the batch is cut into n micro-batches: each backward adds 1/n of its loss's
    gradient and the optimiser steps once all n have, so n micro-batches equal one batch n times as large
    (networks without batch statistics: to float rounding). With n = 1 this is the plain step, bit for bit.
    """
    n = cfg.accumulate
    streams = [method.training_step(L, ab, step)] if n == 1 else \
        [method.training_step(l_, a_, step) for l_, a_ in zip(L.chunk(n), ab.chunk(n))]
    for i, upd in micro_updates([autocast_updates(s, autocast) for s in streams]):
        if i == 0:
            name, opt = upd.optimizer, optimizers[upd.optimizer]
            params = [p for g in opt.param_groups for p in g["params"]]
            opt.zero_grad(set_to_none=True)
            loss_sum, logs_sum = None, {}
        elif upd.optimizer != name:
            raise RuntimeError(f"micro-batch {i} yielded an update of {upd.optimizer!r} where micro-batch 0 yielded one of "
                               f"{name!r}; train.accumulate needs every micro-batch to yield the same sequence of updates")
        loss = upd.loss if n == 1 else upd.loss / n
        (scaler.scale(loss) if scaler else loss).backward()
        loss_sum = loss.detach().float() if loss_sum is None else loss_sum + loss.detach().float()
        for k, v in upd.logs.items():
            v = v.detach().float() if n == 1 else v.detach().float() / n
            logs_sum[k] = v if k not in logs_sum else logs_sum[k] + v
        if i < n - 1:
            continue
        distributed.average_gradients(params, d)
        if cfg.grad_clip:
            if scaler:
                scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(opt) if scaler else opt.step()
        yield name, loss_sum, logs_sum


def _first_start(train_json: Path) -> str:
    """When a resumed run first started (its train.json's ``started``); now where that is unreadable."""
    try:
        return str(json.loads(train_json.read_text())["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return now()


def micro_updates(streams: list[Iterator]) -> Iterator[tuple[int, Any]]:
    """(i, update) of micro-batch i = 0..n-1, update by update: update k of every micro-batch before
    update k + 1 of any (a GAN's generator step sees the discriminator stepped on all micro-batches), and
    each micro-batch's update is handed out as soon as it is built, so its backward can free its graph."""
    while True:
        for i, stream in enumerate(streams):
            upd = next(stream, None)
            if upd is None:
                if i > 0:
                    raise RuntimeError(f"micro-batch {i} yielded fewer updates than micro-batch 0")
                longer = [j for j, s in enumerate(streams[1:], 1) if next(s, None) is not None]
                if longer:
                    raise RuntimeError(f"micro-batch {longer[0]} yielded more updates than micro-batch 0")
                return
            yield i, upd


def autocast_updates(steps: Iterator, autocast: Any) -> Iterator:
    """Advance the method's update generator under autocast; backward and the step happen outside it."""
    while True:
        with autocast():
            upd = next(steps, None)
        if upd is None:
            return
        yield upd



