"""Data-parallel training across the processes ``torchrun`` starts (one per GPU, on one or more nodes).

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; every process runs the same ``bench`` command,
joins the process group (NCCL on CUDA, gloo on CPU), builds the same initial weights from the same seed,
and takes its share of every global batch. Gradients are averaged over the processes after each
backward, before the optimiser named by the update steps.

Why not ``torch.nn.parallel.DistributedDataParallel``: its reducer expects one forward and one backward
per iteration over one module, with a fixed set of parameters receiving gradients. Our methods yield
several updates per step (a GAN's discriminator then generator, each with its own optimiser and the
other network frozen) and a WGAN-GP critic loss holds a double backward (the gradient penalty), which
DDP does not support. Averaging each update's gradients in one flat all-reduce is what StyleGAN2-ADA
does for the same reasons; it gives up DDP's overlap of communication with backward.

BatchNorm: on CUDA the trainer converts it to ``SyncBatchNorm``, so a run on N GPUs normalises over the
global batch as one process would. SyncBatchNorm has no CPU kernels: on CPU (gloo) each process
normalises over its own share, as DDP without SyncBatchNorm does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import Tensor


@dataclass(frozen=True)
class Dist:
    """This process's place among the training processes (``world == 1``: not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and results."""
        return self.rank == 0


SINGLE = Dist()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """False in the processes torchrun started beside rank 0 (read from the environment: no process group
    needed): they train, but print and write nothing."""
    return int(os.environ.get("RANK", "0")) == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init(device: torch.device) -> Dist:
    """Join torchrun's process group (once per process); :data:`SINGLE` when not started by torchrun."""
    if not launched_by_torchrun():
        return SINGLE
    import torch.distributed as dist

    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank())


def average_gradients(params: Iterable[Tensor], d: Dist) -> None:
    """Replace each parameter's gradient by its mean over the processes, in one flat all-reduce."""
    if not d.enabled:
        return
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= d.world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_over_processes(values: dict[str, Tensor], d: Dist) -> dict[str, Tensor]:
    """Logged scalars averaged over the processes (every process logs the same keys)."""
    if not d.enabled or not values:
        return values
    import torch.distributed as dist

    keys = sorted(values)
    stacked = torch.stack([values[k].float().reshape(()) for k in keys])
    dist.all_reduce(stacked)
    stacked /= d.world
    return dict(zip(keys, stacked.unbind()))


def any_process(flag: Tensor, d: Dist) -> bool:
    """True when ``flag`` (a bool tensor) is true on any process: all of them stop together."""
    if not d.enabled:
        return bool(flag)
    import torch.distributed as dist

    t = flag.to(torch.int32).reshape(1)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_state(module: torch.nn.Module, d: Dist) -> None:
    """Make every process hold the main process's weights and buffers (in place)."""
    if not d.enabled:
        return
    import torch.distributed as dist

    for t in module.state_dict().values():
        dist.broadcast(t, 0)


def gather_objects(obj: Any, d: Dist) -> list[Any]:
    """``obj`` of every process, in rank order, on every process."""
    if not d.enabled:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, d: Dist) -> Any:
    """The main process's ``obj`` on every process (what the others pass is ignored)."""
    if not d.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        dist.barrier()
