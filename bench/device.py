"""Which device a command runs on. Training, evaluation and ``bench colorize`` all choose it here."""

from __future__ import annotations

import torch

from bench import distributed


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA, then Apple's MPS, then CPU. Under torchrun, plain ``cuda`` is the
    process's own GPU, ``cuda:$LOCAL_RANK``."""
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"--device {name}: MPS is not available on this machine; use --device cpu")
        if dev.type == "cuda" and dev.index is None and distributed.launched_by_torchrun():
            dev = torch.device("cuda", distributed.local_rank())
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", distributed.local_rank()) if distributed.launched_by_torchrun() else torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
