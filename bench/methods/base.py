"""The method interface: what an adapter gives the shared training loop, and nothing more.

A method holds its networks (an ``nn.Module``), builds its optimisers, and turns one batch into a
sequence of :class:`Update` s (one per optimiser step: a supervised method yields one, a GAN yields a
discriminator step then a generator step). The trainer owns device, precision, seeding, logging,
checkpoints and resume: it zeroes the gradients, runs backward and steps the named optimiser for each
update before asking the method for the next one, so alternating steps see each other's results.

Lab convention at this boundary: ``L`` is (B, 1, H, W) in [0, 100] and ``ab`` (B, 2, H, W) in Lab units;
each method normalises internally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Iterator, Mapping

import torch
from torch import Tensor, nn

from bench.config import TrainConfig
from bench.registry import Registry


@dataclass(frozen=True)
class NoParams:
    """A method without hyper-parameters."""


@dataclass
class Update:
    """One optimiser step: minimise ``loss`` with optimiser ``optimizer``; ``logs`` are detached scalars."""

    optimizer: str
    loss: Tensor
    logs: Mapping[str, Tensor] = field(default_factory=dict)


class Method(nn.Module):
    """Base class of every method adapter (built-in or plugin)."""

    Params: ClassVar[type] = NoParams
    #: False for methods with nothing to learn (``gray``): the trainer skips them.
    needs_training: ClassVar[bool] = True
    #: A plugin without a YAML file may carry its recipe here (same keys as ``bench/methods/recipes/*.yaml``).
    recipe: ClassVar[Mapping[str, Any] | None] = None
    #: Consecutive training steps that repeat as a pattern (a WGAN-GP steps its generator every n-th
    #: step); FLOPs per image are averaged over them.
    step_cycle: int = 1
    #: True for a method whose output carries its own lightness (an autoencoder that outputs RGB): its
    #: colourised images keep the L it predicts instead of the input's (``predict_lab``), and the
    #: ``psnr_l`` metric reports how far that drifts.
    predicts_lightness: bool = False
    #: The names of the optimisers ``configure_optimizers`` returns: ``train.schedules`` may name only
    #: these, checked when the recipe is read. Declare it in the class that defines configure_optimizers;
    #: where it is not, the trainer alone checks, against the optimisers it gets.
    optimizer_names: ClassVar[tuple[str, ...]] = ("main",)

    def __init__(self, params: Any, train: TrainConfig):
        super().__init__()
        self.params = params
        self.train_cfg = train

    def prepare_split(self, data: Any) -> None:
        """Fit what comes from the whole training split (an :class:`~bench.datasets.base.ImageSet`), such as
        a class prior, before :meth:`prepare`. Called once per fresh run; a method may cache the result per
        split content (``data.identity()["content_hash"]``). Default: nothing."""

    def prepare(self, lab_batches: Iterable[Tensor]) -> None:
        """Fit what comes from the training data before the first step (palettes, priors). Default: nothing."""

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        t = self.train_cfg
        return {"main": torch.optim.Adam(self.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)}

    def training_step(self, L: Tensor, ab: Tensor, step: int) -> Iterator[Update]:
        raise TypeError(f"{type(self).__name__} needs training but defines no training_step")

    def predict_ab(self, L: Tensor) -> Tensor:
        """(B,1,H,W) L in [0,100] -> (B,2,H,W) ab. Called under ``torch.no_grad`` in eval mode."""
        raise TypeError(f"{type(self).__name__} defines no predict_ab")

    def predict_lab(self, L: Tensor) -> Tensor:
        """(B,1,H,W) L -> (B,3,H,W) Lab of the colourised image: the input's L beside ``predict_ab``, unless
        the method predicts its own lightness (then it overrides this)."""
        return torch.cat([L, self.predict_ab(L).to(L.dtype)], 1)

    def extra_info(self) -> dict[str, Any]:
        """Facts about this instance worth recording in result files (e.g. pretrained weights used)."""
        return {}


#: Every method adapter by name; each adapter module registers itself (``@METHODS.register("unet")``).
METHODS: Registry[type[Method]] = Registry("method", "colorbench.methods", base=Method)
