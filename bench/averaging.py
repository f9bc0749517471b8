"""An exponential moving average of a method's weights (``train.ema_decay``), saved and resumed with the run.

Every floating-point entry of the method's ``state_dict`` (parameters and BatchNorm running statistics)
follows ``ema = decay * ema + (1 - decay) * current`` after each training step; integer and boolean
entries (step counters, flags, pixel counts) are copied. Kept here rather than with
``torch.optim.swa_utils.AveragedModel``: with ``use_buffers=True`` that averages integer buffers in float
and truncates them (a counter of 1000 can come back as 999), and with ``use_buffers=False`` the EMA
weights would be evaluated with the raw weights' BatchNorm statistics.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn


class WeightEMA:
    """The EMA of ``module``'s state, starting from its current values."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = float(decay)
        self.weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.updates = 0

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for k, v in module.state_dict().items():
            avg = self.weights[k]
            if avg.is_floating_point():
                avg.lerp_(v.detach(), 1.0 - self.decay)
            else:
                avg.copy_(v)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "weights": self.weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["weights"]) != set(self.weights):
            raise ValueError("the checkpoint's EMA holds other weights than this method has")
        for k, v in state["weights"].items():
            self.weights[k].copy_(v)
        self.decay, self.updates = float(state["decay"]), int(state["updates"])

    @contextlib.contextmanager
    def swapped_into(self, module: nn.Module) -> Iterator[nn.Module]:
        """``module`` holds the EMA weights inside the block and exactly its own weights again after it."""
        own = {k: v.detach().clone() for k, v in module.state_dict().items()}
        module.load_state_dict(self.weights)
        try:
            yield module
        finally:
            module.load_state_dict(own)
