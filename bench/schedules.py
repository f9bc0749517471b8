"""Learning-rate schedules of the shared training loop: constant, step decay, cosine, linear decay to zero,
each with an optional linear warm-up; one per optimiser if a recipe asks (GANs).

A schedule is a pure function of the loop step (:func:`lr_factor`), applied to every optimiser before each
step (:func:`apply_schedules`). Written here rather than with ``torch.optim.lr_scheduler``: those count
their own ``step()`` calls, which differ from loop steps for a WGAN generator that steps every n-th loop
step and under gradient accumulation, and chaining warm-up with a decay (``SequentialLR``) is stateful.
As a function of the step, a resumed run sets exactly the learning rate an uninterrupted one would.

No torch import: recipes (:mod:`bench.config`) are read without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

KINDS = ("constant", "step", "cosine", "linear")


@dataclass(frozen=True)
class Schedule:
    """``train.schedule`` (or one entry of ``train.schedules``) of a recipe.

    - ``constant``: the recipe's ``lr`` throughout.
    - ``step``: ``lr * factors[i]`` from step ``milestones[i]`` on (factors are relative to ``lr``, not
      cumulative): Zhang et al. 2016's 3e-5 -> 1e-5 -> 3e-6 is ``milestones: [200000, 375000]``,
      ``factors: [0.333333333, 0.1]``.
    - ``cosine``: from ``lr`` at the end of the warm-up down to ``lr * min_factor`` at the end of the run.
    - ``linear``: ``lr`` until step ``decay_from``, then linearly down to 0 at the end of the run (pix2pix's
      second half; WGAN-GP's whole run with ``decay_from: 0``, its code's ``max(0, 1 - iteration / ITERS)``).

    "The end of the run" is step ``steps``, one past the last step taken, so the last update still moves.

    ``warmup_steps``: the factor rises linearly from 1/W at step 0 to 1 at step W - 1 first, multiplying
    whatever the schedule gives. Steps are the loop's (0-based, the step about to be taken).
    """

    kind: str = "constant"
    warmup_steps: int = 0
    milestones: tuple[int, ...] = ()
    factors: tuple[float, ...] = ()
    decay_from: int = 0
    min_factor: float = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"schedule.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"schedule.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.kind == "step":
            if not self.milestones or len(self.factors) != len(self.milestones):
                raise ValueError(f"schedule.kind step needs milestones and one factor per milestone; got milestones "
                                 f"{list(self.milestones)}, factors {list(self.factors)}")
            if any(m < 1 for m in self.milestones) or list(self.milestones) != sorted(set(self.milestones)):
                raise ValueError(f"schedule.milestones must be strictly increasing steps >= 1, got {list(self.milestones)}")
            if any(not 0 < f for f in self.factors):
                raise ValueError(f"schedule.factors must be > 0, got {list(self.factors)}")
        elif self.milestones or self.factors:
            raise ValueError(f"schedule.milestones and schedule.factors belong to kind step, not {self.kind}")
        if self.decay_from < 0:
            raise ValueError(f"schedule.decay_from must be >= 0, got {self.decay_from}")
        if not 0.0 <= self.min_factor <= 1.0:
            raise ValueError(f"schedule.min_factor must be in [0, 1], got {self.min_factor}")

    def beyond(self, steps: int) -> list[str]:
        """Positions of this schedule that a run of ``steps`` steps never reaches (said at the start of a run:
        a shortened recipe is legal, but its decay then never happens)."""
        out = [f"milestone {m}" for m in self.milestones if m >= steps]
        if self.kind == "linear" and self.decay_from >= steps:
            out.append(f"decay_from {self.decay_from}")
        if self.warmup_steps > steps:
            out.append(f"warmup_steps {self.warmup_steps}")
        return out


def lr_factor(s: Schedule, step: int, steps: int) -> float:
    """The multiplier of the recipe's learning rate at loop step ``step`` (0-based) of a ``steps``-step run."""
    warm = min(1.0, (step + 1) / s.warmup_steps) if s.warmup_steps else 1.0
    if s.kind == "constant":
        f = 1.0
    elif s.kind == "step":
        f = 1.0
        for m, factor in zip(s.milestones, s.factors):
            if step >= m:
                f = factor
    elif s.kind == "cosine":  # the half cosine ends at step ``steps``, one past the last step
        start = min(s.warmup_steps, steps - 1)
        t = min(1.0, max(0.0, (step - start) / (steps - start)))
        f = s.min_factor + (1.0 - s.min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
    else:  # linear: 1 up to decay_from, then a straight line reaching 0 at step ``steps``, one past the last
        f = 1.0 if step <= s.decay_from else max(0.0, 1.0 - (step - s.decay_from) / (steps - s.decay_from))
    return warm * f


def schedule_for(train: Any, optimizer: str) -> Schedule:
    """The schedule of one optimiser: its entry in ``train.schedules``, else ``train.schedule``."""
    return train.schedules.get(optimizer, train.schedule)


def check_optimizer_names(train: Any, names: Iterable[str], where: str) -> None:
    """``train.schedules`` may only name optimisers the method has."""
    names = list(names)
    unknown = sorted(set(train.schedules) - set(names))
    if unknown:
        raise ValueError(f"{where}: train.schedules names optimiser(s) {', '.join(unknown)} that this method does not "
                         f"have; its optimisers: {', '.join(names)}")


def remember_base_lr(optimizers: Mapping[str, Any]) -> None:
    """Keep each parameter group's starting learning rate as ``initial_lr`` (torch's own convention), so
    that it is saved with the optimiser's state and the schedule always scales the recipe's value."""
    for opt in optimizers.values():
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])


def apply_schedules(optimizers: Mapping[str, Any], train: Any, step: int) -> dict[str, float]:
    """Set every optimiser's learning rate for loop step ``step``; returns the rate of each (first group)."""
    out = {}
    for name, opt in optimizers.items():
        f = lr_factor(schedule_for(train, name), step, train.steps)
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * f
        out[name] = opt.param_groups[0]["lr"]
    return out
