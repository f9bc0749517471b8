"""``wgan_gp``: conditional Wasserstein GAN with gradient penalty (Gulrajani et al. 2017, "Improved
Training of Wasserstein GANs") for L -> ab, with an L1 reconstruction term.

As in WGAN-GP: a critic without sigmoid and without batch normalisation (InstanceNorm instead: the
penalty is per sample), gradient penalty 10 * (||grad D(x_hat)|| - 1)^2 on random interpolates between
real and generated samples, 5 critic steps per generator step, Adam(1e-4, betas (0.0, 0.9)).
Conditional, so the critic judges (L, ab) pairs and the interpolates move ab only (L is the same in
the real and the fake pair): the penalty is on the gradient with respect to ab, i.e. the critic must be
1-Lipschitz in the colours of a given gray image. The generator (shared with ``unet``) also minimises
``l1_weight`` * L1 on ab / AB_RANGE, as in pix2pix; the critic is a 70x70 PatchGAN whose score is the
mean over patches.

Schedule: every ``training_step`` call is ONE critic step; every ``n_critic``-th call also yields a
generator step. So the recipe's ``steps`` counts critic iterations: ``steps: 5000`` with n_critic 5
is 1000 generator updates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.config import ranged
from bench.methods._nets import GeneratorMethod, GeneratorParams, normalized_ab, normalized_L, patch_discriminator, set_requires_grad
from bench.methods.base import METHODS, Update


@dataclass(frozen=True)
class WGANGPParams(GeneratorParams):
    l1_weight: float = ranged(100.0, low=0)
    gp_weight: float = ranged(10.0, low=0)
    n_critic: int = ranged(5, low=1)  # critic steps per generator step
    critic_width: int = ranged(64, low=1)
    critic_layers: int = ranged(3, low=1)
    # ranges are checked by GeneratorParams.__post_init__ (bench.config.check_ranges covers every field)


def gradient_penalty(critic: Callable[[Tensor, Tensor], Tensor], L: Tensor, real_ab: Tensor, fake_ab: Tensor) -> Tensor:
    """mean over samples of (||d critic(L, x_hat) / d x_hat|| - 1)^2, x_hat = e real + (1 - e) fake, e ~ U[0, 1]
    per sample. ``critic`` returns one score per sample, (B,). Differentiable (``create_graph``), so the
    penalty trains the critic."""
    e = torch.rand(real_ab.shape[0], 1, 1, 1, device=real_ab.device, dtype=real_ab.dtype)
    x_hat = (e * real_ab.detach() + (1 - e) * fake_ab.detach()).requires_grad_(True)
    score = critic(L, x_hat)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


@METHODS.register("wgan_gp", "Conditional WGAN-GP: ResNet34-UNet generator, InstanceNorm PatchGAN critic, GP 10, + L1")
class WGANGP(GeneratorMethod):
    Params = WGANGPParams
    optimizer_names = ("critic", "gen")

    def __init__(self, params: WGANGPParams, train):
        super().__init__(params, train)
        self.critic = patch_discriminator(3, params.critic_width, params.critic_layers, norm="instance")

    @property
    def step_cycle(self) -> int:
        return self.params.n_critic

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        t = self.train_cfg
        adam = lambda net: torch.optim.Adam(net.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
        return {"critic": adam(self.critic), "gen": adam(self.generator)}

    def score(self, L: Tensor, ab_normalized: Tensor) -> Tensor:
        """Critic score per sample, (B,): the mean of its patch outputs."""
        return self.critic(torch.cat([normalized_L(L), ab_normalized], 1)).float().mean(dim=(1, 2, 3))

    def training_step(self, L: Tensor, ab: Tensor, step: int) -> Iterator[Update]:
        p = self.params
        gen_step = (step + 1) % p.n_critic == 0
        with torch.set_grad_enabled(gen_step):  # between generator steps the fake is only the critic's input
            fake = self.generator(L)
        real_n, fake_n = normalized_ab(ab.float()), normalized_ab(fake.float())

        set_requires_grad(self.critic, True)
        s_real = self.score(L, real_n).mean()
        s_fake = self.score(L, fake_n.detach()).mean()
        gp = gradient_penalty(self.score, L, real_n, fake_n)
        yield Update("critic", s_fake - s_real + p.gp_weight * gp, {"w_dist": (s_real - s_fake).detach(), "gp": gp.detach()})

        if gen_step:
            set_requires_grad(self.critic, False)
            g_adv = -self.score(L, fake_n).mean()
            g_l1 = F.l1_loss(fake_n, real_n)
            yield Update("gen", g_adv + p.l1_weight * g_l1, {"g_adv": g_adv.detach(), "g_l1": g_l1.detach()})
