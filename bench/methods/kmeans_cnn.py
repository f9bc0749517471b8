"""``kmeans_cnn``: per-pixel classification into a k-means palette of ab colours (``kmeans32``: k = 32).

Colourisation as classification, in the spirit of Zhang et al. 2016 but with a palette fitted to the
training split by k-means instead of a fixed gamut grid, a small encoder-decoder CNN instead of VGG,
plain cross-entropy on the nearest palette entry (no soft encoding, no rebalancing). Decoding is Zhang's
annealed mean over the palette (temperature 0.38) by default, or the arg-max palette colour.
It is the cheapest learned method here: a sanity check that the harness learns anything at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.config import check_ranges, ranged
from bench.methods.base import METHODS, Method, Update
from bench.quantize import kmeans, nearest


@dataclass(frozen=True)
class KMeansParams:
    n_colors: int = ranged(32, low=2, high=1024)  # a palette of k ab colours
    width: int = ranged(32, low=1)
    kmeans_iters: int = ranged(30, low=1)
    kmeans_pixels: int = ranged(200_000, low=2)  # ab samples the palette is fitted on
    decode: str = "annealed"  # "annealed" (Zhang's annealed mean) or "argmax"
    temperature: float = ranged(0.38, low=0, low_open=True)

    def __post_init__(self):
        if self.decode not in ("annealed", "argmax"):
            raise ValueError(f"decode must be 'annealed' or 'argmax', got {self.decode!r}")
        check_ranges(self, "params.")
        if self.kmeans_pixels < self.n_colors:
            raise ValueError(f"kmeans_pixels {self.kmeans_pixels} is fewer than n_colors {self.n_colors}: "
                             "k-means needs at least one ab sample per colour")


def conv_bn(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class PaletteNet(nn.Module):
    """Small encoder-decoder: full-resolution features, a dilated half-resolution context branch, a skip."""

    def __init__(self, width: int, n_out: int):
        super().__init__()
        w = width
        self.enc = nn.Sequential(conv_bn(1, w), conv_bn(w, w))
        self.ctx = nn.Sequential(conv_bn(w, 2 * w, stride=2), conv_bn(2 * w, 2 * w, dilation=2), conv_bn(2 * w, 2 * w, dilation=4))
        self.dec = nn.Sequential(conv_bn(3 * w, w), nn.Conv2d(w, n_out, 1))

    def forward(self, x: Tensor) -> Tensor:
        f = self.enc(x)
        c = F.interpolate(self.ctx(f), size=f.shape[-2:], mode="bilinear", align_corners=False)
        return self.dec(torch.cat([f, c], 1))


@METHODS.register("kmeans_cnn", "CNN classifying each pixel into a k-means palette of ab colours")
class KMeansCNN(Method):
    Params = KMeansParams

    def __init__(self, params: KMeansParams, train):
        super().__init__(params, train)
        self.net = PaletteNet(params.width, params.n_colors)
        self.register_buffer("palette", torch.zeros(params.n_colors, 2))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def prepare(self, lab_batches: Iterable[Tensor]) -> None:
        ab = torch.cat([lab[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2) for lab in lab_batches])
        if ab.shape[0] > self.params.kmeans_pixels:
            ab = ab[torch.randperm(ab.shape[0], device=ab.device)[: self.params.kmeans_pixels]]
        self.palette.copy_(kmeans(ab, self.params.n_colors, self.params.kmeans_iters))
        self.fitted.fill_(True)

    def training_step(self, L: Tensor, ab: Tensor, step: int) -> Iterator[Update]:
        with torch.no_grad():
            target = nearest(ab, self.palette)
        logits = self.net(L / 50.0 - 1.0)
        loss = F.cross_entropy(logits.float(), target)
        yield Update("main", loss, {"ce": loss.detach()})

    def predict_ab(self, L: Tensor) -> Tensor:
        if not bool(self.fitted):
            raise RuntimeError("kmeans_cnn: the palette is not fitted; train the method (or load a checkpoint) first")
        logits = self.net(L / 50.0 - 1.0).float()
        if self.params.decode == "argmax":
            return self.palette[logits.argmax(1)].permute(0, 3, 1, 2).to(L.dtype)
        # annealed mean: softmax(log p / T) = softmax(logits / T); T -> 0 is the mode, T = 1 the mean
        w = torch.softmax(logits / self.params.temperature, dim=1)
        return torch.einsum("bkhw,kc->bchw", w, self.palette).to(L.dtype)
