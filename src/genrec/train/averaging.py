"""Weight averaging: an exponential moving average of a module's weights."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["WeightAverage", "snapshot"]


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the module's state_dict (best weights, averages, swaps)."""
    return {n: t.detach().clone() for n, t in module.state_dict().items()}


class WeightAverage:
    """An exponential moving average of a module's weights (Polyak-Ruppert averaging).

    After the t-th optimizer update (t = 1, 2, ...) the average is the mean of the weights
    w_1..w_t after each update, w_s weighted by decay^(t - s) (normalised, as Adam corrects
    its moments' bias), so the random initial weights get no share. As a recurrence::

        avg_t = d_t * avg_(t-1) + (1 - d_t) * w_t,    d_t = 1 - (1 - decay) / (1 - decay^t)

    (d_1 = 0: the first average is w_1; d_t falls towards ``decay`` as t grows). Every
    floating-point tensor of the ``state_dict`` is averaged; other buffers are copied.
    The average only changes what is validated and kept: training steps use the raw weights.
    """

    def __init__(
        self,
        module: nn.Module,
        decay: float,
        updates: int = 0,
        shadow: dict[str, torch.Tensor] | None = None,
    ):
        self.decay = decay
        self.updates = updates
        self.shadow = snapshot(module) if shadow is None else shadow  # given: a checkpoint's

    def rate(self) -> float:
        """d_t for the next update."""
        t = self.updates + 1
        return 1.0 - (1.0 - self.decay) / (1.0 - self.decay**t)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        d = self.rate()
        for name, w in module.state_dict().items():
            avg = self.shadow[name]
            if avg.dtype.is_floating_point:
                avg.lerp_(w.to(avg.dtype), 1.0 - d)
            else:
                avg.copy_(w)
        self.updates += 1

    @contextlib.contextmanager
    def swapped_in(self, module: nn.Module) -> Iterator[None]:
        """Within the block the module holds the averaged weights; the raw ones come back."""
        raw = snapshot(module)
        module.load_state_dict(self.shadow)
        try:
            yield
        finally:
            module.load_state_dict(raw)
