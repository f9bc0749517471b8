"""``zhang``: Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016 (arXiv:1603.08511).

Colourisation as per-pixel classification over Q quantised ab bins (a grid of 10 ab units restricted to
the sRGB gamut), trained with a class-rebalanced multinomial cross-entropy against soft-encoded targets,
decoded with the annealed mean. The network is the paper's ECCV16 VGG-style net: 8 conv blocks
(conv-ReLU x2-3, then BatchNorm), stride-2 downsampling in blocks 1-3, dilation 2 in blocks 5-6, a
stride-2 transposed convolution in block 8 bringing features to 1/4 of the input resolution, a 1x1
convolution to Q logits; the decoded ab are upsampled bilinearly to the input size. L enters as
(L - 50) / 100, as in the authors' PyTorch port.

What follows the paper: soft encoding over the 5 nearest bins with a Gaussian of sigma 5; class
rebalancing weights w ∝ ((1 - λ) p~ + λ / Q)^-1 with λ = 1/2, p~ the training split's empirical ab
distribution smoothed with a Gaussian of sigma 5, normalised so that E_p~[w] = 1, each pixel weighted by
the weight of its nearest bin; the ground truth subsampled to the logits' grid; annealed-mean
decoding with T = 0.38; Adam with lr 3e-5, betas (0.9, 0.99), weight decay 1e-3, batch 40 of 176-px
crops, the learning rate dropped to 1e-5 and 3e-6 at 200k and 375k of 450k iterations (the ``gpu``
recipe, through the shared loop's ``train.schedule``).

Two variants the benchmark was designed from run through this adapter too:
- ``zhang-vgg19``: blocks 1-5 are torchvision's VGG19, started from its ImageNet weights when the torch
  hub cache holds them (``trunk: vgg19``, ``pretrained: true``; :mod:`bench.methods._vgg`), as a
  re-implementation that trained faster this way did.
- ``grid361-centroid`` / ``grid361-topk``: a plain ab grid instead of the in-gamut bins (``bins: grid``,
  cells of 12 over [-110, 118]: Q = 19 x 19 = 361), decoded by the centre of the arg-max bin
  (``decode: centroid``) or by the softmax over the top-k bins (``decode: topk``), the classifier of the
  STL-10 study that compared reconstruction, classification and WGAN-GP.

Where it departs from the paper:
- The bins. Zhang released a table of 313 in-gamut bins (``pts_in_hull.npy``) without the rule that
  made it, and no simple rule reproduces it. Here the table is computed from the sRGB gamut
  (:func:`bench.quantize.gamut_bins`): by default the grid points among the 5 nearest of at least one
  of the 16.7M sRGB colours (``gamut_rule: soft5``, Q = 322); ``gamut_rule: nearest`` keeps the grid
  points that are the nearest of some colour (Q = 261). ``bins_file`` loads any (Q, 2) ``.npy`` table,
  e.g. the published one, so that released weights could be used.
- The prior is the empirical ab distribution of the training split the run trains on (every image, or
  ``prior_images`` evenly spaced ones; each image's pixels subsampled with a regular stride to at most
  ``prior_pixels_per_image``), counted once per split and cached on disk keyed by the split's content
  hash and the bin table (:func:`split_ab_counts`), then smoothed by a Gaussian over the bin centres
  (mass re-normalised over the table). It is stored in a buffer, so checkpoints carry it and resume or
  evaluation never recompute it.
- The paper's filter of grayscale training images is not applied.
- The ``cpu`` recipes (small crops, few steps, a larger learning rate) and ``zhang-small`` (a width
  multiplier of 1/4 on every layer) are ours, so that the method trains on a laptop CPU in minutes.
- Options the paper does not have: one-hot targets (``targets: onehot``, the simplification some
  reimplementations use), no rebalancing (``rebalance: false``) and top-k decoding (``decode: topk``:
  the annealed distribution restricted to the k most likely bins and renormalised).
- The ground truth is brought to the logits' 1/4 grid by sampling at the centre of each 4x4 block
  (bilinear), which lines up with the bilinear upsampling of the decoded ab. The authors' training net
  takes the top-left pixel of each block (a 1.5-pixel shift against that upsampling); on the tests'
  4 tiny images, perfect 1/4-resolution targets upsampled score 17.3 dB PSNR centre-sampled and
  11.4 dB top-left-sampled (gray: 10.3 dB).
- Initialisation is PyTorch's default, not the authors' Caffe set-up.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.color import rgb_to_lab
from bench.methods._nets import PretrainedWeightsMissing
from bench.methods._vgg import load_vgg19_imagenet, vgg19_features, vgg19_file
from bench.methods.base import METHODS, Method, Update
from bench.quantize import GAMUT_RULES, cache_root, gamut_bins, grid_bins, load_bin_table, nearest_bin, soft_encode
from bench.store import atomic_path

TARGETS = ("soft", "onehot")
DECODERS = ("annealed", "topk", "centroid")
BIN_KINDS = ("gamut", "grid")
TRUNKS = ("eccv16", "vgg19")


@dataclass(frozen=True)
class ZhangParams:
    width: float = 1.0  # channel multiplier of every layer: 1.0 is the paper's network (64..512 channels)
    trunk: str = "eccv16"  # "eccv16" (the paper's blocks 1-5) or "vgg19" (torchvision's VGG19, bench.methods._vgg)
    pretrained: bool = False  # vgg19 trunk: start from torchvision's ImageNet vgg19 weights in the torch hub cache
    bins: str = "gamut"  # "gamut": in-gamut grid points (gamut_rule); "grid": every cell of a plain grid
    gamut_rule: str = "soft5"  # how the in-gamut bins are computed (bench.quantize.gamut_bins)
    bin_size: float = 12.0  # bins: grid -- cell size in ab units
    grid_range: tuple[float, float] = (-110.0, 118.0)  # bins: grid -- [lo, hi] on both a and b (12 -> Q = 361)
    bins_file: str | None = None  # a (Q, 2) .npy table of ab bin centres; overrides bins and gamut_rule
    targets: str = "soft"  # "soft" (5 nearest bins, Gaussian weights) or "onehot" (the nearest bin)
    soft_neighbours: int = 5
    soft_sigma: float = 5.0
    rebalance: bool = True  # class rebalancing by the inverse smoothed prior
    prior_sigma: float = 5.0
    prior_lambda: float = 0.5  # weight of the uniform distribution mixed into the prior
    decode: str = "annealed"  # "annealed" (annealed mean), "topk" (softmax over the top_k bins) or "centroid" (arg-max bin)
    temperature: float = 0.38  # T = 1: the mean; T -> 0: the mode
    top_k: int = 5
    prior_images: int | None = None  # images of the split the prior is counted on: None = all, else evenly spaced
    prior_pixels_per_image: int = 65536  # a regular pixel stride keeps at most this many per image
    # The number of bins when the table comes with the weights (an imported published model: the table is
    # then the checkpoint's ``bins`` buffer); such a recipe cannot train from scratch.
    n_bins: int | None = None

    def __post_init__(self):
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if self.gamut_rule not in GAMUT_RULES:
            raise ValueError(f"gamut_rule must be one of {', '.join(GAMUT_RULES)}, got {self.gamut_rule!r}")
        if self.targets not in TARGETS:
            raise ValueError(f"targets must be one of {', '.join(TARGETS)}, got {self.targets!r}")
        if self.decode not in DECODERS:
            raise ValueError(f"decode must be one of {', '.join(DECODERS)}, got {self.decode!r}")
        if self.bins not in BIN_KINDS:
            raise ValueError(f"bins must be one of {', '.join(BIN_KINDS)}, got {self.bins!r}")
        if self.bins == "grid":
            grid_bins(self.bin_size, *self.grid_range)  # a range that is not whole cells fails here, at recipe load
        if self.trunk not in TRUNKS:
            raise ValueError(f"trunk must be one of {', '.join(TRUNKS)}, got {self.trunk!r}")
        if self.pretrained and (self.trunk != "vgg19" or self.width != 1.0):
            raise ValueError(f"pretrained: true needs trunk: vgg19 at width 1.0 (torchvision's VGG19); got trunk "
                             f"{self.trunk}, width {self.width}")
        if (self.prior_images is not None and self.prior_images < 1) or self.prior_pixels_per_image < 1:
            raise ValueError(f"prior_images and prior_pixels_per_image must be >= 1, got {self.prior_images}, {self.prior_pixels_per_image}")
        if self.soft_neighbours < 1 or self.top_k < 1:
            raise ValueError(f"soft_neighbours and top_k must be >= 1, got {self.soft_neighbours}, {self.top_k}")
        for name in ("soft_sigma", "prior_sigma", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.prior_lambda <= 1:
            raise ValueError(f"prior_lambda must be in (0, 1], got {self.prior_lambda}")
        if self.n_bins is not None and (self.n_bins < 2 or self.bins_file is not None):
            raise ValueError(f"n_bins (the size of a table that comes with the weights) must be >= 2 and excludes bins_file, got {self.n_bins}")
        if self.bins_file is not None:
            load_bin_table(self.bins_file)  # fail at recipe load, naming the file, not at step 0

    def bin_table(self) -> Tensor:
        if self.n_bins is not None:  # filled in by load_state_dict from the weights that carry the table
            return torch.zeros(self.n_bins, 2)
        if self.bins_file is not None:
            return load_bin_table(self.bins_file)
        return grid_bins(self.bin_size, *self.grid_range) if self.bins == "grid" else gamut_bins(self.gamut_rule)

    def bins_label(self) -> str:
        if self.n_bins is not None:
            return f"from the weights ({self.n_bins} bins)"
        if self.bins_file is not None:
            return self.bins_file
        if self.bins == "grid":
            return f"grid:{self.bin_size:g} over [{self.grid_range[0]:g}, {self.grid_range[1]:g}]"
        return f"gamut:{self.gamut_rule}"


# --------------------------------------------------------------------------------------------------
# Prior, rebalancing and decoding: small pure functions, tested one by one


def empirical_prior(ab: Tensor, bins: Tensor) -> Tensor:
    """The fraction of ab points (N, 2) whose nearest bin is each bin: (Q,) summing to 1."""
    counts = torch.bincount(nearest_bin(ab, bins), minlength=len(bins)).double()
    return (counts / counts.sum().clamp_min(1)).float()


_PRIOR_ALGO_VERSION = "1"  # bump when the counting changes, so stale cache files are not reused


def bins_digest(bins: Tensor) -> str:
    return hashlib.sha256(bins.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()


def count_split_ab(data: Any, bins: Tensor, max_images: int | None = None, pixels_per_image: int = 65536) -> Tensor:
    """How many pixels of the split ``data`` fall nearest to each bin: (Q,) float64.

    Images are converted one at a time (sizes differ); a regular stride over each image's pixels keeps
    at most ``pixels_per_image`` of them (a stride, not a resize: averaging would desaturate the prior).
    """
    n = len(data)
    if n == 0:
        raise ValueError(f"zhang: the {data.name}/{data.split} split has no images to estimate the ab prior from")
    picks = range(n) if max_images is None or max_images >= n else np.linspace(0, n - 1, max_images).round().astype(int).tolist()
    counts = torch.zeros(len(bins), dtype=torch.float64, device=bins.device)
    with torch.no_grad():
        for i in picks:
            rgb = data.load(int(i)).to(bins.device).reshape(3, -1)
            rgb = rgb[:, :: math.ceil(rgb.shape[1] / pixels_per_image)]  # subsample before converting
            ab = rgb_to_lab(rgb.unsqueeze(-1))[1:].reshape(2, -1).T
            counts += torch.bincount(nearest_bin(ab, bins), minlength=len(bins)).double()
    return counts.cpu()


def prior_cache_file(data: Any, bins: Tensor, max_images: int | None, pixels_per_image: int) -> Path:
    """Where the counts of a split are kept: keyed by its content hash, the bin table and the sampling."""
    ident = data.identity()
    key = json.dumps([ident["name"], ident["split"], ident["content_hash"], bins_digest(bins), max_images,
                      pixels_per_image, _PRIOR_ALGO_VERSION]).encode()
    return cache_root() / "priors" / f"{ident['name']}-{ident['split']}-{hashlib.sha256(key).hexdigest()[:16]}.npy"


def split_ab_counts(data: Any, bins: Tensor, max_images: int | None = None, pixels_per_image: int = 65536) -> tuple[Tensor, Path, bool]:
    """:func:`count_split_ab`, computed once per split and cached on disk; returns (counts, file, from_cache)."""
    path = prior_cache_file(data, bins, max_images, pixels_per_image)
    if path.exists():
        try:
            arr = np.load(path, allow_pickle=False)
            if arr.shape == (len(bins),) and np.isfinite(arr).all() and arr.sum() > 0:
                return torch.from_numpy(arr.astype(np.float64)), path, True
        except (OSError, ValueError):
            pass  # a damaged cache file is recomputed and replaced
    counts = count_split_ab(data, bins.cpu(), max_images, pixels_per_image)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, counts.numpy())
    return counts, path, False


def smooth_prior(prior: Tensor, bins: Tensor, sigma: float) -> Tensor:
    """Gaussian smoothing of a distribution over bins (kernel over the bin centres), re-normalised to 1."""
    b = bins.to(prior.device, torch.float64)
    kernel = torch.exp(-torch.cdist(b, b).square() / (2.0 * sigma * sigma))
    out = kernel @ prior.double()
    return (out / out.sum()).float()


def rebalance_weights(prior: Tensor, lam: float) -> Tensor:
    """w ∝ ((1 - λ) p + λ / Q)^-1, scaled so that sum_q p_q w_q = 1 (the paper's Eq. 4)."""
    p = prior.double()
    w = 1.0 / ((1.0 - lam) * p + lam / len(p))
    return (w / (p * w).sum()).float()


def decode_annealed(logits: Tensor, bins: Tensor, temperature: float) -> Tensor:
    """(B, Q, H, W) logits -> (B, 2, H, W) ab: the mean of the bin centres under softmax(logits / T).

    softmax(log p / T) = softmax(logits / T), so this is Zhang's annealed mean: T = 1 gives the mean of
    the predicted distribution, T -> 0 its mode.
    """
    w = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("bqhw,qc->bchw", w, bins.to(w))


def decode_centroid(logits: Tensor, bins: Tensor) -> Tensor:
    """(B, Q, H, W) logits -> (B, 2, H, W) ab: the centre of each pixel's most likely bin (arg-max)."""
    return bins.to(logits.device, torch.float32)[logits.argmax(1)].permute(0, 3, 1, 2)


def decode_topk(logits: Tensor, bins: Tensor, k: int, temperature: float = 1.0) -> Tensor:
    """The annealed distribution restricted to the ``k`` most likely bins of each pixel and renormalised."""
    top, idx = logits.float().topk(min(k, logits.shape[1]), dim=1)
    w = torch.softmax(top / temperature, dim=1)  # (B, k, H, W)
    centres = bins.to(w)[idx]  # (B, k, H, W, 2)
    return torch.einsum("bkhw,bkhwc->bchw", w, centres)


# --------------------------------------------------------------------------------------------------
# The ECCV16 network


def _block(cin: int, cout: int, n: int, *, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    """``n`` 3x3 conv + ReLU (the last one strided), then BatchNorm: one block of the ECCV16 net."""
    layers: list[nn.Module] = []
    for i in range(n):
        s = stride if i == n - 1 else 1
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, stride=s, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]
    return layers + [nn.BatchNorm2d(cout)]


class ECCV16Net(nn.Module):
    """Zhang et al.'s colourisation network; ``width`` scales every layer's channels. Logits at 1/4 size."""

    def __init__(self, n_bins: int, width: float = 1.0):
        super().__init__()
        c = lambda ch: max(4, round(ch * width))  # noqa: E731
        c64, c128, c256, c512 = c(64), c(128), c(256), c(512)
        self.body = nn.Sequential(
            *_block(1, c64, 2, stride=2),  # 1/2
            *_block(c64, c128, 2, stride=2),  # 1/4
            *_block(c128, c256, 3, stride=2),  # 1/8
            *_block(c256, c512, 3),
            *_block(c512, c512, 3, dilation=2),
            *_block(c512, c512, 3, dilation=2),
            *_block(c512, c512, 3),
            *eccv16_tail(c512, c256, n_bins),  # back to 1/4, then the logits
        )

    def forward(self, L: Tensor) -> Tensor:
        return self.body((L - 50.0) / 100.0)


def eccv16_tail(c512: int, c256: int, n_bins: int) -> list[nn.Module]:
    """Block 8 (back to 1/4 resolution) and the 1x1 convolution to Q logits."""
    return [
        nn.ConvTranspose2d(c512, c256, 4, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c256, c256, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c256, c256, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c256, n_bins, 1),
    ]


class VGG19Net(nn.Module):
    """ECCV16 on torchvision's VGG19 trunk (:mod:`bench.methods._vgg`): blocks 1-5 VGG19's, then ECCV16's
    blocks 6-8; logits at 1/4 size. Input x = L / 100, the gray image VGG's folded conv1 expects."""

    def __init__(self, n_bins: int, width: float = 1.0):
        super().__init__()
        c = lambda ch: max(4, round(ch * width))  # noqa: E731
        self.features = vgg19_features(width)
        self.head = nn.Sequential(*_block(c(512), c(512), 3, dilation=2), *_block(c(512), c(512), 3),
                                  *eccv16_tail(c(512), c(256), n_bins))

    def forward(self, L: Tensor) -> Tensor:
        return self.head(self.features(L / 100.0))


# --------------------------------------------------------------------------------------------------
# The authors' released PyTorch weights


#: Zhang et al.'s released ECCV16 model (richzhang/colorization, ``colorizers/eccv16.py``). Its file name
#: carries the first hex digits of its SHA-256, as torch hub names files.
ECCV16_RELEASE = {
    "file": "colorization_release_v2-9b330a0b.pth",
    "url": "https://colorizers.s3.us-east-2.amazonaws.com/colorization_release_v2-9b330a0b.pth",
    "sha256_prefix": "9b330a0b",
    "ab_norm": 110.0,  # their unnormalize_ab; L enters as (L - 50) / 100 as in ECCV16Net
}

# Their net is eight Sequentials: blocks 1-7 are (conv, ReLU) x n then BatchNorm (n = 2, 2, 3, 3, 3, 3, 3),
# block 8 is transposed conv, ReLU, (conv, ReLU) x 2, then the 1x1 conv to 313 logits; ``model_out`` is a
# bias-free 1x1 conv from the softmax to ab / 110 whose weights are the bin centres. Ours is one Sequential
# with the same layers in the same order, so the parametrised layers pair up one to one.
_PUBLISHED_LAYERS = [f"model{k}.{2 * i}" for k, n in zip(range(1, 8), (2, 2, 3, 3, 3, 3, 3)) for i in range(n + 1)]
_PUBLISHED_LAYERS += [f"model8.{i}" for i in (0, 2, 4, 6)]


def state_from_published_eccv16(published: dict[str, Tensor], where: str = "the weights") -> dict[str, Tensor]:
    """Zhang et al.'s released ECCV16 state dict as the state dict of our ``zhang`` adapter.

    The logits layer is theirs key for key; the bin table is their ``model_out`` weight (2, Q, 1, 1) times
    110, so decoding with ``temperature: 1`` (the plain mean of the softmax) is their forward exactly. The
    prior buffers (used only in training) are left uniform.
    """
    def need(key: str) -> Tensor:
        if key not in published:
            raise ValueError(f"{where}: no {key!r}: not Zhang et al.'s ECCV16 release (expected keys model1.0.weight ... model_out.weight)")
        return published[key]

    out_w = need("model_out.weight")
    if out_w.dim() != 4 or out_w.shape[0] != 2 or out_w.shape[2:] != (1, 1):
        raise ValueError(f"{where}: model_out.weight has shape {tuple(out_w.shape)}; expected (2, Q, 1, 1)")
    q = out_w.shape[1]
    bins = out_w[:, :, 0, 0].T.double() * ECCV16_RELEASE["ab_norm"]
    with torch.device("meta"):  # names and shapes only: no memory, no random initialisation
        net = ECCV16Net(q)
    ours = [(name, m) for name, m in net.body.named_children() if any(True for _ in m.parameters(recurse=False))]
    if len(ours) != len(_PUBLISHED_LAYERS):  # the two lists describe one architecture
        raise AssertionError(f"ECCV16Net has {len(ours)} parametrised layers, the release {len(_PUBLISHED_LAYERS)}")
    state: dict[str, Tensor] = {}
    for (idx, module), theirs in zip(ours, _PUBLISHED_LAYERS):
        for key, value in module.state_dict().items():
            src = f"{theirs}.{key}"
            if key == "num_batches_tracked" and src not in published:
                state[f"net.body.{idx}.{key}"] = torch.zeros((), dtype=torch.long)  # files saved before torch 0.4.1 lack it; unused in eval
                continue
            got = need(src)
            if got.shape != value.shape:
                raise ValueError(f"{where}: {src} has shape {tuple(got.shape)}; the ECCV16 net needs {tuple(value.shape)}")
            state[f"net.body.{idx}.{key}"] = got.to(dtype=value.dtype)
    extra = sorted(set(published) - {f"{t}.{k}" for t in _PUBLISHED_LAYERS for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")} - {"model_out.weight"})
    if extra:
        raise ValueError(f"{where}: unexpected keys {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}: not the ECCV16 release")
    state["bins"] = bins.float()
    state["prior"] = torch.full((q,), 1.0 / q)
    state["prior_pixels"] = torch.zeros((), dtype=torch.long)
    return state


# --------------------------------------------------------------------------------------------------
# The adapter


@METHODS.register("zhang", "Zhang et al. 2016: ECCV16 net classifying ab into in-gamut bins, rebalanced, annealed mean")
class Zhang(Method):
    Params = ZhangParams

    def __init__(self, params: ZhangParams, train):
        super().__init__(params, train)
        bins = params.bin_table()
        self.net = (VGG19Net if params.trunk == "vgg19" else ECCV16Net)(len(bins), params.width)
        self.register_buffer("bins", bins)
        if params.trunk == "vgg19":  # in the state_dict: a checkpoint says how its trunk started
            self.register_buffer("trunk_imagenet", torch.zeros((), dtype=torch.bool))
        # The smoothed empirical prior of the training crops (uniform until prepare() runs).
        self.register_buffer("prior", torch.full((len(bins),), 1.0 / len(bins)))
        self.register_buffer("prior_pixels", torch.zeros((), dtype=torch.long))

    def prepare_split(self, data: Any) -> None:
        """The smoothed empirical ab prior of the training split (counted once per split, then cached)."""
        p = self.params
        if p.n_bins is not None:
            raise ValueError("zhang: params.n_bins means the bin table comes with imported weights; such a model "
                             "is evaluated (bench run --checkpoint FILE), not trained from scratch")
        counts, path, hit = split_ab_counts(data, self.bins, p.prior_images, p.prior_pixels_per_image)
        counts = counts.to(self.bins.device)
        self.prior.copy_(smooth_prior((counts / counts.sum()).float(), self.bins, p.prior_sigma))
        self.prior_pixels.fill_(int(counts.sum()))
        self._prior_source = {"prior_cache": str(path), "prior_from_cache": hit}

    def prepare(self, lab_batches) -> None:
        """Before step 0 of a fresh run: the ImageNet VGG19 trunk if asked for and present; never downloaded."""
        if not self.params.pretrained:
            return
        path = vgg19_file()
        if not path.is_file():
            warnings.warn(
                f"ImageNet VGG19 weights requested but {path} does not exist; training continues from random "
                f"initialisation (recorded as trunk_init: random). To use them, put torchvision's {path.name} at that "
                "path (set TORCH_HOME to move the cache); colorbench never downloads it.",
                PretrainedWeightsMissing,
                stacklevel=2,
            )
            return
        load_vgg19_imagenet(self.net.features, path)
        self.trunk_imagenet.fill_(True)

    def class_weights(self) -> Tensor:
        if not self.params.rebalance:
            return torch.ones_like(self.prior)
        return rebalance_weights(self.prior, self.params.prior_lambda)

    def training_step(self, L: Tensor, ab: Tensor, step: int) -> Iterator[Update]:
        logits = self.net(L).float()
        b, q, h, w = logits.shape
        with torch.no_grad():
            # ground truth on the logits' grid, sampled at the centre of each 4x4 block (bilinear, no
            # antialiasing) so that it lines up with the bilinear upsampling in predict_ab
            ab_small = F.interpolate(ab.float(), size=(h, w), mode="bilinear", align_corners=False)
            ab_small = ab_small.permute(0, 2, 3, 1).reshape(-1, 2)
            if self.params.targets == "soft":
                idx, wts = soft_encode(ab_small, self.bins, self.params.soft_neighbours, self.params.soft_sigma)
            else:
                idx, wts = nearest_bin(ab_small, self.bins).unsqueeze(1), torch.ones(len(ab_small), 1, device=ab.device)
            pixel_w = self.class_weights()[idx[:, 0]]  # the weight of each pixel's nearest bin
        logp = torch.log_softmax(logits, dim=1).permute(0, 2, 3, 1).reshape(-1, q)
        ce = -(wts * logp.gather(1, idx)).sum(1)  # cross-entropy against the (soft) target distribution
        loss = (pixel_w * ce).mean()
        yield Update("main", loss, {"ce": ce.mean().detach()})

    def decode(self, logits: Tensor) -> Tensor:
        if self.params.decode == "centroid":
            return decode_centroid(logits, self.bins)
        if self.params.decode == "topk":
            return decode_topk(logits, self.bins, self.params.top_k, self.params.temperature)
        return decode_annealed(logits, self.bins, self.params.temperature)

    def predict_ab(self, L: Tensor) -> Tensor:
        ab = self.decode(self.net(L))
        return F.interpolate(ab, size=L.shape[-2:], mode="bilinear", align_corners=False).to(L.dtype)

    def extra_info(self) -> dict[str, Any]:
        bins = self.bins
        p = self.params
        trunk = {}
        if p.trunk == "vgg19":
            trunk = {"trunk_init": "imagenet" if bool(self.trunk_imagenet) else "random", "pretrained_requested": p.pretrained,
                     **({"pretrained_file": str(vgg19_file())} if p.pretrained else {})}
        return {
            "trunk": p.trunk,
            **trunk,
            "n_bins": len(bins),
            "bins": p.bins_label(),
            "bins_sha256": bins_digest(bins),
            "prior_pixels": int(self.prior_pixels),
            **getattr(self, "_prior_source", {}),
        }
