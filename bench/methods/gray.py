"""``gray``: predicts ab = 0, i.e. returns the grayscale input as the colour output.

The floor every method must beat, and shown on every leaderboard: on photo sets it already scores about
22 dB PSNR / 0.94 SSIM, which is why colourisation PSNR needs this reference beside it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.methods.base import METHODS, Method


@METHODS.register("gray", "Gray baseline: ab = 0 (no colour); the floor every method must beat")
class Gray(Method):
    needs_training = False

    def predict_ab(self, L: Tensor) -> Tensor:
        return torch.zeros(L.shape[0], 2, *L.shape[2:], dtype=L.dtype, device=L.device)
