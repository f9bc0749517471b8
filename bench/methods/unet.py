"""``unet``: ab regression with a ResNet34-encoder U-Net, loss L1 + lambda (1 - SSIM).

The encoder-decoder regression design common to modern colourisers (a pretrained ResNet encoder with a
U-Net decoder, as in fastai/DeOldify-style models), reduced to its parts: torchvision's ResNet34 trunk
with a 1-channel stem (ImageNet weights optional, conv1's RGB filters summed), a decoder of bilinear
upsampling + two 3x3 convs per level with concatenation skips (no transposed convolutions, so no
checkerboard artefacts), ab = AB_RANGE * tanh(.) out.

Loss (on ab / AB_RANGE): L1 + ``ssim_weight`` * (1 - SSIM), SSIM taken over the a and b channels with the
metric's 11x11 Gaussian window (see ``_nets.ssim_loss``). Optional second phase from step
``phase2_from_step``: MSE + ``ssim_weight`` * (1 - SSIM), a fine-tune that trades L1's median-like
desaturation for the mean. Departures: no self-attention or spectral norm (DeOldify), and no
progressive resizing: the trainer uses one image size per recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch.nn.functional as F
from torch import Tensor

from bench.config import ranged
from bench.methods._nets import GeneratorMethod, GeneratorParams, normalized_ab, ssim_loss
from bench.methods.base import METHODS, Update


@dataclass(frozen=True)
class UNetParams(GeneratorParams):
    ssim_weight: float = ranged(1e-3, low=0)  # lambda in L1 + lambda (1 - SSIM)
    phase2_from_step: int | None = ranged(None, low=0)  # from this step on: MSE + lambda (1 - SSIM); None = no phase 2
    # ranges are checked by GeneratorParams.__post_init__ (bench.config.check_ranges covers every field)


@METHODS.register("unet", "ResNet34-UNet regressing ab, loss L1 + 1e-3 (1 - SSIM)")
class UNet(GeneratorMethod):
    Params = UNetParams

    def training_step(self, L: Tensor, ab: Tensor, step: int) -> Iterator[Update]:
        p = self.params
        pred = self.generator(L)
        phase2 = p.phase2_from_step is not None and step >= p.phase2_from_step
        x, y = normalized_ab(pred.float()), normalized_ab(ab.float())
        l1, mse = F.l1_loss(x, y), F.mse_loss(x, y)
        structure = ssim_loss(pred, ab)
        loss = (mse if phase2 else l1) + p.ssim_weight * structure
        yield Update("main", loss, {"l1": l1.detach(), "mse": mse.detach(), "ssim_loss": structure.detach()})
