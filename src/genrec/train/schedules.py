"""Schedules: of a loss weight by step (:class:`LinearAnneal`, :class:`Constant`) and of the
learning rate by epoch (:func:`exponential_lr`, :func:`set_epoch_lr`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

__all__ = ["LinearAnneal", "Constant", "exponential_lr", "set_epoch_lr"]


@dataclass(frozen=True)
class LinearAnneal:
    """beta(step) = min(cap, step / total_steps) (Liang et al.'s KL annealing).

    ``step`` counts the updates done before this one (0 at the first batch), so the cap is
    first reached at step ``ceil(cap * total_steps)``.
    """

    cap: float
    total_steps: int

    def __post_init__(self) -> None:
        if self.cap < 0:
            raise ValueError(f"anneal cap must be >= 0, got {self.cap}")
        if self.total_steps < 1:
            raise ValueError(f"total_anneal_steps must be >= 1, got {self.total_steps}")

    def __call__(self, step: int) -> float:
        return min(self.cap, step / self.total_steps)

    @property
    def cap_step(self) -> int:
        """The first step at which beta equals the cap."""
        return math.ceil(self.cap * self.total_steps)


@dataclass(frozen=True)
class Constant:
    """beta(step) = value."""

    value: float

    def __call__(self, step: int) -> float:
        return self.value


def exponential_lr(decay: float, epoch: int) -> float:
    """The learning-rate factor of 0-based ``epoch``: ``decay ** epoch`` (1 at the first).

    A function of the epoch alone, so a resumed run sets the same rates as an uninterrupted
    one without any scheduler state."""
    return decay**epoch


def set_epoch_lr(optimizers: Iterable[torch.optim.Optimizer], factor: float) -> None:
    """Every parameter group's lr = its initial lr x ``factor`` (the initial lr is kept in
    the group under ``initial_lr``, as torch's schedulers do, and so is checkpointed)."""
    for opt in optimizers:
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor
