"""``cgan``: pix2pix conditional GAN (Isola, Zhu, Zhou & Efros 2017, "Image-to-Image Translation with
Conditional Adversarial Networks") for L -> ab.

As in pix2pix: a 70x70 PatchGAN discriminator sees (L, ab) pairs, BCE-with-logits adversarial loss,
generator loss adversarial + 100 * L1, Adam(2e-4, betas (0.5, 0.999)) for both networks, one
discriminator step (its loss halved, on the detached fake) then one generator step per batch.
Departures: the generator is the ResNet34-UNet shared with ``unet`` (upsample + conv decoder) instead of
pix2pix's 8-level U-Net of transposed convolutions, and it has no dropout (pix2pix's only noise source;
it reported the generator learns to ignore it anyway). L1 is on ab / AB_RANGE, i.e. ab in [-1, 1] as
pix2pix's images in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.config import ranged
from bench.methods._nets import GeneratorMethod, GeneratorParams, normalized_ab, normalized_L, patch_discriminator, set_requires_grad
from bench.methods.base import METHODS, Update


@dataclass(frozen=True)
class CGANParams(GeneratorParams):
    l1_weight: float = ranged(100.0, low=0)  # pix2pix's lambda
    disc_width: int = ranged(64, low=1)
    disc_layers: int = ranged(3, low=1)  # 3 -> 70x70 patches
    # ranges are checked by GeneratorParams.__post_init__ (bench.config.check_ranges covers every field)


@METHODS.register("cgan", "pix2pix conditional GAN: ResNet34-UNet generator, 70x70 PatchGAN, BCE + 100 L1")
class CGAN(GeneratorMethod):
    Params = CGANParams
    optimizer_names = ("disc", "gen")

    def __init__(self, params: CGANParams, train):
        super().__init__(params, train)
        self.discriminator = patch_discriminator(3, params.disc_width, params.disc_layers, norm="batch")

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        t = self.train_cfg
        adam = lambda net: torch.optim.Adam(net.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
        return {"disc": adam(self.discriminator), "gen": adam(self.generator)}

    def _disc(self, L: Tensor, ab: Tensor) -> Tensor:
        return self.discriminator(torch.cat([normalized_L(L), normalized_ab(ab)], 1))

    def training_step(self, L: Tensor, ab: Tensor, step: int) -> Iterator[Update]:
        fake = self.generator(L)

        set_requires_grad(self.discriminator, True)
        real_logits = self._disc(L, ab).float()
        fake_logits = self._disc(L, fake.detach()).float()
        d_real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        d_fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        yield Update("disc", 0.5 * (d_real + d_fake), {"d_real": d_real.detach(), "d_fake": d_fake.detach()})

        # The trainer has stepped the discriminator: the generator is judged by the updated one, as in pix2pix.
        set_requires_grad(self.discriminator, False)
        logits = self._disc(L, fake).float()
        g_adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        g_l1 = F.l1_loss(normalized_ab(fake.float()), normalized_ab(ab.float()))
        yield Update("gen", g_adv + self.params.l1_weight * g_l1, {"g_adv": g_adv.detach(), "g_l1": g_l1.detach()})
