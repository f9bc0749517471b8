"""Zhang et al.'s network on a VGG19 trunk, so that it can start from torchvision's ImageNet ``vgg19`` weights.

The ECCV16 network is itself VGG-shaped (blocks of 3x3 convolutions, the deeper ones dilated, as in
DeepLab); re-implementations that initialise it from an ImageNet VGG report that it trains faster. Here
blocks 1-5 are torchvision's ``vgg19().features`` module for module (same indices, so its ``state_dict``
loads key for key), with these changes: after the convolutions of each VGG block comes a BatchNorm, as
after each ECCV16 block (placed where VGG has its max-pools, inside a small ``Sequential`` so that no
torchvision key moves); pools 1-3 stay (1/8 resolution, as ECCV16), pools 4-5 are dropped and the
conv5 block is dilated by 2 (ECCV16's dilated block 5; DeepLab's trick for reusing VGG weights at a
finer stride). Then ECCV16's blocks 6-8 and its 1x1 head. So blocks 3-5 have 4 convolutions (VGG19's)
where ECCV16 has 3.

The first convolution takes 1 channel: its RGB filters are folded for a gray input. VGG expects
``(rgb - mean) / std`` per channel; for a gray image (r = g = b = x, x = L / 100) that input is
``(x - mean_c) / std_c``, so conv1 becomes ``sum_c w_c / std_c`` applied to x with the bias lowered by
``sum_c,k w_c mean_c / std_c``: identical to torchvision's on the gray image except within 1 px of the
border, where VGG pads the normalised input with zeros and this net pads x with zeros.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import VGG19_Weights

# torchvision's configuration "E" (VGG19): channels of each 3x3 conv, "M" a 2x2 max-pool.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# The normalisation torchvision's ImageNet VGG weights were trained with (VGG19_Weights.IMAGENET1K_V1.transforms()).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def vgg19_file() -> Path:
    """Where torchvision caches its ImageNet ``vgg19`` weights: $TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]


def vgg19_features(width: float = 1.0) -> nn.Sequential:
    """torchvision's ``vgg19().features`` adapted as the module docstring says; ``width`` scales channels."""
    c = lambda ch: max(4, round(ch * width))  # noqa: E731
    layers: list[nn.Module] = []
    cin, pools = 1, 0
    for v in VGG19_LAYOUT:
        if v == "M":
            pools += 1
            norm = nn.BatchNorm2d(cin)
            layers.append(nn.Sequential(norm, nn.MaxPool2d(2, 2)) if pools <= 3 else norm)
        else:
            dilation = 2 if pools == 4 else 1
            layers += [nn.Conv2d(cin, c(v), 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]
            cin = c(v)
    features = nn.Sequential(*layers)
    for m in features.modules():  # torchvision's VGG initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return features


def fold_gray_conv1(weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """conv1's (C, 3, k, k) filters on ImageNet-normalised RGB -> (C, 1, k, k) filters and bias on x = L / 100."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=weight.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=weight.dtype).view(1, 3, 1, 1)
    return (weight / std).sum(1, keepdim=True), bias - (weight * mean / std).sum(dim=(1, 2, 3))


def load_vgg19_imagenet(features: nn.Sequential, path: Path) -> None:
    """Load torchvision's ``vgg19`` ``state_dict`` from ``path`` into :func:`vgg19_features` (conv1 folded)."""
    what = "expected torchvision's vgg19 state_dict (features.0.weight of shape (64, 3, 3, 3), ...)"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"{path}: cannot load the ImageNet VGG19 weights ({exc}); delete the file or replace it") from None
    feats = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")} if isinstance(state, dict) else {}
    if tuple(getattr(feats.get("0.weight"), "shape", ())) != (64, 3, 3, 3) or "0.bias" not in feats:
        raise RuntimeError(f"{path}: not a VGG19 state_dict; {what}")
    feats["0.weight"], feats["0.bias"] = fold_gray_conv1(feats["0.weight"], feats["0.bias"])
    try:
        missing, unexpected = features.load_state_dict(feats, strict=False)
    except RuntimeError as exc:  # a shape that differs
        raise RuntimeError(f"{path}: does not fit the VGG19 trunk ({str(exc).splitlines()[-1].strip()}); {what}") from None
    own_norms = {k for k, m in features.named_modules() if isinstance(m, nn.BatchNorm2d)}
    if unexpected or any(k.rsplit(".", 1)[0] not in own_norms for k in missing):
        raise RuntimeError(f"{path}: its keys do not match torchvision's vgg19 (unexpected: {unexpected[:3]}, missing: "
                           f"{[k for k in missing if k.rsplit('.', 1)[0] not in own_norms][:3]}); {what}")
