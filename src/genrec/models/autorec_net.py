"""The maths of AutoRec (Sedhain et al., 2015): the network h(r) = g(W f(V r + mu) + b), the
masked squared error over observed ratings and the paper's objective. The model that trains
them is :class:`genrec.models.autorec.AutoRec`; these are importable from there too.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "AutoRecNet", "masked_sse", "autorec_objective", "rescale_rows"]

ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "elu": nn.functional.elu,
}


def rescale_rows(x: torch.Tensor, norm: float) -> torch.Tensor:
    """Rows of ``x`` (B, D) rescaled to L2 norm ``norm`` (all-zero rows stay zero); 0 = as is."""
    if not norm:
        return x
    n = torch.linalg.vector_norm(x, dim=1, keepdim=True)  # (B, 1)
    return x * (norm / torch.where(n > 0, n, torch.ones_like(n)))


def masked_sse(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum over observed entries of (target - out)^2; unobserved entries give no gradient.

    out, target : (B, D); mask : (B, D) bool or 0/1, True where the rating is observed.
    """
    diff = torch.where(mask.bool(), target - out, torch.zeros_like(out))  # (B, D)
    return (diff * diff).sum()


class AutoRecNet(nn.Module):
    """h(r) = g(W f(V r + mu) + b): encoder ``V, mu`` (D -> H), decoder ``W, b`` (H -> D)."""

    def __init__(
        self,
        n_in: int,
        hidden: int,
        encoder: str,
        decoder: str,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.encode = nn.Linear(n_in, hidden)  # V (H, D), mu (H,)
        self.decode = nn.Linear(hidden, n_in)  # W (D, H), b (D,)
        self.f, self.g = ACTIVATIONS[encoder], ACTIVATIONS[decoder]
        with torch.no_grad():  # PyTorch's default bounds, drawn from our generator
            for lin in (self.encode, self.decode):
                bound = 1 / math.sqrt(lin.in_features)
                for p in (lin.weight, lin.bias):
                    p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * bound)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.g(self.decode(self.f(self.encode(r))))  # (B, D)

    def penalty(self) -> torch.Tensor:
        """||W||_F^2 + ||V||_F^2 (the biases are not penalised)."""
        return self.encode.weight.square().sum() + self.decode.weight.square().sum()


def autorec_objective(
    net: AutoRecNet, r: torch.Tensor, mask: torch.Tensor, l2: float
) -> torch.Tensor:
    """The paper's objective on rows ``r`` (B, D) observed where ``mask``."""
    return masked_sse(net(r), r, mask) + 0.5 * l2 * net.penalty()
