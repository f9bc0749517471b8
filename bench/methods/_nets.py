"""Network pieces shared by ``unet``, ``cgan`` and ``wgan_gp``: the ResNet-UNet generator, its optional
ImageNet encoder weights, the PatchGAN discriminator/critic, and the SSIM loss.

The three methods share one generator on purpose: on a leaderboard they then differ only in their loss
(L1 + SSIM, + conditional GAN, + WGAN-GP), which is the comparison worth making.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import ResNet18_Weights, ResNet34_Weights
from torchvision.models.resnet import BasicBlock

from bench.color import AB_RANGE
from bench.config import check_ranges, ranged
from bench.methods.base import Method
from bench.metrics.functional import ssim_map

# name -> (blocks per stage, torchvision's ImageNet weights: only their file name is used, never the URL)
ENCODERS: dict[str, tuple[tuple[int, int, int, int], Any]] = {
    "resnet18": ((2, 2, 2, 2), ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": ((3, 4, 6, 3), ResNet34_Weights.IMAGENET1K_V1),
}
# Gray input for an ImageNet encoder whose conv1 is the sum of its RGB filters: the mean of ImageNet's
# per-channel mean and std (as timm does for 1-channel inputs).
GRAY_MEAN, GRAY_STD = 0.449, 0.226
DOWNSAMPLING = 32  # the encoder's total stride: inputs are padded to a multiple of it


class PretrainedWeightsMissing(UserWarning):
    """Pretrained encoder weights were asked for but are not in the local torch hub cache."""


@dataclass(frozen=True)
class GeneratorParams:
    encoder: str = "resnet34"  # resnet18 | resnet34 (torchvision's BasicBlock ResNets)
    width: int = ranged(64, low=1)  # encoder stem width; 64 is torchvision's ResNet, required for ImageNet weights
    decoder_width: int = ranged(32, low=1)  # decoder channels at full and half resolution; x2, x4, x8 at 1/4, 1/8, 1/16
    pretrained: bool = False  # start the encoder from ImageNet weights found in the torch hub cache

    def __post_init__(self):
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        check_ranges(self, "params.")  # every field with a declared range, those of subclasses included
        if self.pretrained and self.width != 64:
            raise ValueError(f"pretrained: true needs width 64 (torchvision's {self.encoder}); got width {self.width}")


def pretrained_file(encoder: str) -> Path:
    """Where torchvision would cache the ImageNet weights of ``encoder``: $TORCH_HOME/hub/checkpoints/<file>."""
    url = ENCODERS[encoder][1].url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


# --------------------------------------------------------------------------------------------------
# Generator


class ResNetEncoder(nn.Module):
    """torchvision's ResNet trunk (its ``BasicBlock``), 1-channel stem, stem width ``width``.

    Written out rather than taken from ``torchvision.models.resnet34()`` because torchvision fixes the
    widths at 64..512 and the tests need narrow networks; module names and initialisation follow
    torchvision's, so at width 64 its ImageNet ``state_dict`` loads key for key (conv1 summed to 1 channel).
    """

    def __init__(self, blocks: Iterable[int], width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = width
        for i, n in enumerate(blocks):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            down = None
            if stride != 1 or inplanes != planes:
                down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))
            layer = [BasicBlock(inplanes, planes, stride, down)] + [BasicBlock(planes, planes) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            inplanes = planes
        self.channels = [width, width, 2 * width, 4 * width, 8 * width]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Features at 1/2, 1/4, 1/8, 1/16 and 1/32 of the input size."""
        stem = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(stem))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [stem, f1, f2, f3, self.layer4(f3)]

    def load_imagenet(self, path: Path) -> None:
        """Load torchvision's ImageNet weights from ``path``; conv1's RGB filters are summed for gray input."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise RuntimeError(f"{path}: cannot load the ImageNet weights ({exc}); delete the file or replace it") from None
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        state["conv1.weight"] = state["conv1.weight"].sum(dim=1, keepdim=True)
        self.load_state_dict(state, strict=True)


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UpBlock(nn.Module):
    """Bilinear x2 upsampling, concatenation with the skip, two 3x3 convs (no transposed convolution:
    those leave checkerboard artefacts, Odena et al. 2016)."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.convs = nn.Sequential(conv_bn_relu(cin + cskip, cout), conv_bn_relu(cout, cout))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], 1))


class ResNetUNet(nn.Module):
    """L in [0, 100] -> ab in (-AB_RANGE, AB_RANGE): ResNet encoder, U-Net decoder, tanh output.

    Any input size: the input is padded (reflect) to a multiple of 32 and the output cropped back.
    """

    def __init__(self, p: GeneratorParams):
        super().__init__()
        self.encoder = ResNetEncoder(ENCODERS[p.encoder][0], p.width)
        e, d = self.encoder.channels, p.decoder_width
        self.up4 = UpBlock(e[4], e[3], 8 * d)  # -> 1/16
        self.up3 = UpBlock(8 * d, e[2], 4 * d)  # -> 1/8
        self.up2 = UpBlock(4 * d, e[1], 2 * d)  # -> 1/4
        self.up1 = UpBlock(2 * d, e[0], d)  # -> 1/2
        self.up0 = UpBlock(d, 1, d)  # -> full size; the skip is the input itself
        self.head = nn.Conv2d(d, 2, 1)

    def forward(self, L: Tensor) -> Tensor:
        h, w = L.shape[-2:]
        ph, pw = -h % DOWNSAMPLING, -w % DOWNSAMPLING
        x = (L / 100.0 - GRAY_MEAN) / GRAY_STD
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=mode)
        f0, f1, f2, f3, f4 = self.encoder(x)
        y = self.up0(self.up1(self.up2(self.up3(self.up4(f4, f3), f2), f1), f0), x)
        ab = torch.tanh(self.head(y)) * AB_RANGE
        return ab[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]


class GeneratorMethod(Method):
    """Base of the methods built on :class:`ResNetUNet`: the generator, its optional ImageNet start,
    ``predict_ab`` and what the result files record about the encoder's initialisation."""

    Params = GeneratorParams

    def __init__(self, params: GeneratorParams, train):
        super().__init__(params, train)
        self.generator = ResNetUNet(params)
        # In the state_dict, so a checkpoint says how its encoder started, whatever this machine's cache holds.
        self.register_buffer("encoder_imagenet", torch.zeros((), dtype=torch.bool))

    def prepare(self, lab_batches) -> None:
        """Before step 0 of a fresh run: load ImageNet encoder weights if asked for and present; never download."""
        if not self.params.pretrained:
            return
        path = pretrained_file(self.params.encoder)
        if not path.is_file():
            warnings.warn(
                f"pretrained encoder weights requested but {path} does not exist; training continues from "
                f"random initialisation (recorded as encoder_init: random). To use them, put torchvision's "
                f"{path.name} ({ENCODERS[self.params.encoder][1].url}) at that path (set TORCH_HOME to move "
                f"the cache); colorbench never downloads it.",
                PretrainedWeightsMissing,
                stacklevel=2,
            )
            return
        self.generator.encoder.load_imagenet(path)
        self.encoder_imagenet.fill_(True)

    def predict_ab(self, L: Tensor) -> Tensor:
        return self.generator(L)

    def extra_info(self) -> dict[str, Any]:
        p = self.params
        info = {
            "encoder": p.encoder if p.width == 64 else f"{p.encoder} (stem width {p.width})",
            "encoder_init": "imagenet" if bool(self.encoder_imagenet) else "random",
            "pretrained_requested": p.pretrained,
        }
        if p.pretrained:
            info["pretrained_file"] = str(pretrained_file(p.encoder))
        return info


def normalized_ab(ab: Tensor) -> Tensor:
    return ab / AB_RANGE


def normalized_L(L: Tensor) -> Tensor:
    return L / 50.0 - 1.0


def ssim_loss(pred_ab: Tensor, target_ab: Tensor) -> Tensor:
    """1 - mean SSIM over the a and b channels, each scaled to [-1, 1] (ab / AB_RANGE, data range 2).

    SSIM is taken on ab, not on RGB: the L channel is given, so only the chroma structure is learnt, and
    ab avoids the gamut clipping of Lab -> sRGB, whose zero gradients would stall learning. Same Gaussian
    window and constants as the ``ssim`` metric (:func:`bench.metrics.functional.ssim_map`); float32 even under
    autocast (variances in bf16 lose every digit).
    """
    with torch.autocast(pred_ab.device.type, enabled=False):
        smap = ssim_map(normalized_ab(pred_ab.float()), normalized_ab(target_ab.float()), data_range=2.0)
    return 1.0 - smap.mean()


# --------------------------------------------------------------------------------------------------
# Discriminators


def patch_discriminator(in_channels: int, width: int = 64, n_layers: int = 3, norm: str = "batch") -> nn.Sequential:
    """pix2pix's PatchGAN (``NLayerDiscriminator``): with 3 layers each output sees a 70x70 patch.

    ``norm="batch"`` is pix2pix's; ``norm="instance"`` (affine) is for a WGAN-GP critic, whose gradient
    penalty is per sample and so must not mix samples through batch statistics. Outputs are logits/scores
    (no sigmoid), one per patch: (B, 1, h, w).
    """
    make_norm = {"batch": nn.BatchNorm2d, "instance": lambda c: nn.InstanceNorm2d(c, affine=True)}[norm]
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers + 1):
        prev, mult = mult, min(2**n, 8)
        stride = 2 if n < n_layers else 1
        layers += [nn.Conv2d(width * prev, width * mult, 4, stride=stride, padding=1, bias=False), make_norm(width * mult), nn.LeakyReLU(0.2, True)]
    layers.append(nn.Conv2d(width * mult, 1, 4, stride=1, padding=1))
    net = nn.Sequential(*layers)
    for m in net.modules():  # pix2pix's init_weights("normal", 0.02)
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return net


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    """Freeze a network while the other one's loss is built, so backward skips its gradients."""
    for p in module.parameters():
        p.requires_grad_(flag)
