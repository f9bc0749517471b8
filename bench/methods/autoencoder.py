"""``autoencoder``: colourisation as plain reconstruction, a convolutional encoder-decoder trained with MSE.

The reconstruction baseline of the STL-10 study this benchmark was designed from, which reports PSNR
30.44 / Inception Score 12.12 for it, against 25.28 / 18.69 for classification into a 361-bin ab grid
(``grid361-*``, the ``zhang`` adapter) and 23.21 / 17.11 for WGAN-GP: regression to the mean scores best
on PSNR and worst on colourfulness, which is the comparison worth reproducing.

Two outputs, chosen by ``params.output``:

- ``ab``: L in, ab out (AB_RANGE * tanh), joined with the input's L; MSE on ab / AB_RANGE.
- ``rgb``: L in, sRGB out (sigmoid, [0, 1]); MSE on RGB against the ground truth. The colourised image
  is that RGB as it is, its own lightness included (``predicts_lightness``), so the ``psnr_l`` metric
  shows how far the predicted L drifts from the input's: the cost of not keeping L.

The network: a 3x3 conv stem, ``depth`` levels of (stride-2 3x3 conv, 3x3 conv) doubling the channels,
then ``depth`` levels of (bilinear x2 upsampling, two 3x3 convs) halving them, each conv followed by
BatchNorm and ReLU, and a 1x1 conv to the output: no skip connections (a plain autoencoder, unlike
``unet``). Any input size works (reflect-padded to a multiple of 2^depth, cropped back).

Departures: the study's own layer counts, widths and optimiser settings could not be confirmed (the
study was not found in the sources searched); the architecture above and the recipes' sizes are ours.
Bilinear upsampling replaces transposed convolutions (no checkerboard artefacts, as in ``unet``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.color import AB_RANGE, lab_to_rgb, rgb_to_lab
from bench.methods._nets import conv_bn_relu
from bench.methods.base import METHODS, Method, Update

OUTPUTS = ("ab", "rgb")


@dataclass(frozen=True)
class AutoencoderParams:
    output: str = "ab"  # "ab" (joined with the input's L) or "rgb" (the image as predicted, its own L)
    width: int = 32  # channels of the stem; x2 per level down
    depth: int = 3  # downsampling levels: the code is at 1/2^depth of the input size

    def __post_init__(self):
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if self.width < 1 or not 1 <= self.depth <= 6:
            raise ValueError(f"width must be >= 1 and depth in 1..6, got width {self.width}, depth {self.depth}")


class ConvAutoencoder(nn.Module):
    """L in [0, 100] -> ``out_channels`` raw outputs at the input size, through a 1/2^depth bottleneck."""

    def __init__(self, out_channels: int, width: int, depth: int):
        super().__init__()
        self.factor = 2**depth
        chans = [width * 2**i for i in range(depth + 1)]
        down: list[nn.Module] = [conv_bn_relu(1, width)]
        for cin, cout in zip(chans, chans[1:]):
            down.append(nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                                      nn.ReLU(inplace=True), conv_bn_relu(cout, cout)))
        self.encoder = nn.Sequential(*down)
        self.decoder = nn.ModuleList(nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))
                                     for cin, cout in zip(chans[::-1], chans[::-1][1:]))
        self.head = nn.Conv2d(width, out_channels, 1)

    def forward(self, L: Tensor) -> Tensor:
        h, w = L.shape[-2:]
        ph, pw = -h % self.factor, -w % self.factor
        x = L / 50.0 - 1.0
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=mode)
        y = self.encoder(x)
        for level in self.decoder:
            y = level(F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False))
        return self.head(y)[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]


@METHODS.register("autoencoder", "Plain convolutional encoder-decoder trained with MSE, ab or RGB output")
class Autoencoder(Method):
    Params = AutoencoderParams

    def __init__(self, params: AutoencoderParams, train):
        super().__init__(params, train)
        self.net = ConvAutoencoder(2 if params.output == "ab" else 3, params.width, params.depth)
        self.predicts_lightness = params.output == "rgb"

    def _rgb(self, L: Tensor) -> Tensor:
        return torch.sigmoid(self.net(L).float())

    def training_step(self, L: Tensor, ab: Tensor, step: int) -> Iterator[Update]:
        if self.params.output == "ab":
            pred = torch.tanh(self.net(L).float())
            loss = F.mse_loss(pred, ab.float() / AB_RANGE)
        else:
            with torch.no_grad():
                target = lab_to_rgb(torch.cat([L, ab], 1).float())
            loss = F.mse_loss(self._rgb(L), target)
        yield Update("main", loss, {"mse": loss.detach()})

    def predict_lab(self, L: Tensor) -> Tensor:
        if self.params.output == "rgb":
            return rgb_to_lab(self._rgb(L)).to(L.dtype)
        return super().predict_lab(L)

    def predict_ab(self, L: Tensor) -> Tensor:
        if self.params.output == "rgb":
            return self.predict_lab(L)[:, 1:]
        return (torch.tanh(self.net(L).float()) * AB_RANGE).to(L.dtype)
