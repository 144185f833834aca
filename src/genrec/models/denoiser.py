"""DiffRec's denoiser: an MLP over [x_t, time embedding] predicting x_0 (or the noise).

    e   = Linear_E->E( sinusoidal(t, E) )                       time embedding (no activation)
    h   = [dropout_p(x_t), e]                                   (B, D + E)
    h   = tanh(W_k h + b_k)   for the input half  [D + E, *reversed(dims)]
    out = W_L ... tanh(W_1 h + b_1) for the output half [*dims, D] (no activation at the end)

``dims`` follows DiffRec's ``--dims``: the output half's hidden sizes, the input half mirrors
them; [1000] (the authors' default) is D+E -> 1000 -> D; [200, 600] (their ML-1M setting) is
D+E -> 600 -> 200 -> 600 -> D. Weights are drawn N(0, 2 / (fan_in + fan_out)) (Glorot normal),
biases N(0, 0.001^2), from an explicit generator. ``norm`` L2-normalises x_t first (off by
default, as in DiffRec). Input dropout is inverted dropout drawn from an explicit generator in
training mode only.

The sinusoidal embedding is the one of Ho et al. / DiffRec: for half = E // 2 frequencies
f_k = exp(-ln(max_period) k / half), emb(t) = [cos(t f), sin(t f)] (a zero column appended when
E is odd).

Dimension letters: B rows, D input size (items, or the latent size in L-DiffRec), E time
embedding size, H hidden units.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genrec.models.nn_blocks import dropout_values, linear_arrays
from genrec.models.saved import ArraySpec
from genrec.train.noise import UserNoise

__all__ = ["timestep_embedding", "Denoiser", "diffrec_linear"]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embeddings (B, dim) float32 of the timesteps ``t`` (B,) (may be fractional)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )  # (E/2,)
    args = t.float()[:, None] * freqs[None]  # (B, E/2)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2 * (E/2))
    if dim % 2:  # a zero column (built from t: with E = 1, emb has no column to copy)
        emb = torch.cat([emb, torch.zeros((len(t), 1), device=t.device)], dim=-1)  # (B, E)
    return emb


def diffrec_linear(in_features: int, out_features: int, generator: torch.Generator) -> nn.Linear:
    """A Linear layer with DiffRec's init: W ~ N(0, 2 / (fan_in + fan_out)), b ~ N(0, 1e-6)."""
    layer = nn.utils.skip_init(nn.Linear, in_features, out_features)
    std = math.sqrt(2.0 / (in_features + out_features))
    with torch.no_grad():
        nn.init.normal_(layer.weight, 0.0, std, generator=generator)
        nn.init.normal_(layer.bias, 0.0, 0.001, generator=generator)
    return layer


class Denoiser(nn.Module):
    """The DiffRec MLP. ``forward(x_t (B, D), t (B,), generator) -> (B, D)``.

    Parameters
    ----------
    n_in : D, the size of x
    dims : hidden sizes of the output half (DiffRec ``--dims``); the input half mirrors them
    emb_size : E, the time-embedding size
    generator : draws the initial weights
    dropout : input dropout probability (DiffRec: 0.5)
    norm : L2-normalise x_t before the dropout (DiffRec: off)
    """

    def __init__(
        self,
        n_in: int,
        dims: tuple[int, ...],
        emb_size: int,
        generator: torch.Generator,
        dropout: float = 0.5,
        norm: bool = False,
    ):
        super().__init__()
        if not dims or min(dims) < 1:
            raise ValueError(f"dims must be positive sizes, got {dims}")
        self.emb_size = emb_size
        self.dropout = dropout
        self.norm = norm
        in_dims = [n_in + emb_size, *reversed(dims)]
        out_dims = [*dims, n_in]
        self.in_layers = nn.ModuleList(
            diffrec_linear(a, b, generator) for a, b in zip(in_dims[:-1], in_dims[1:])
        )
        self.out_layers = nn.ModuleList(
            diffrec_linear(a, b, generator) for a, b in zip(out_dims[:-1], out_dims[1:])
        )
        self.emb_layer = diffrec_linear(emb_size, emb_size, generator)

    @staticmethod
    def arrays(
        prefix: str, n_in: int, dims: tuple[int, ...], emb_size: int
    ) -> dict[str, ArraySpec]:
        """The arrays of the state_dict of ``Denoiser(n_in, dims, emb_size, ...)``, each name
        after ``prefix``."""
        in_dims = [n_in + emb_size, *reversed(dims)]
        out_dims = [*dims, n_in]
        out: dict[str, ArraySpec] = {}
        for part, sizes in (("in_layers", in_dims), ("out_layers", out_dims)):
            for j, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                out |= linear_arrays(f"{prefix}{part}.{j}.", a, b)
        return out | linear_arrays(f"{prefix}emb_layer.", emb_size, emb_size)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        generator: torch.Generator | UserNoise | None = None,
    ) -> torch.Tensor:
        """The prediction (B, D); dropout (training mode only) is drawn from ``generator``."""
        emb = self.emb_layer(timestep_embedding(t, self.emb_size).to(x_t.dtype))  # (B, E)
        if self.norm:
            x_t = F.normalize(x_t, dim=-1)
        if self.training and self.dropout > 0:
            if generator is None:
                raise ValueError("Denoiser in training mode needs a generator for dropout")
            x_t = dropout_values(x_t, self.dropout, generator)  # (B, D)
        h = torch.cat([x_t, emb], dim=-1)  # (B, D + E)
        for layer in self.in_layers:
            h = torch.tanh(layer(h))  # (B, H)
        last = len(self.out_layers) - 1
        for i, layer in enumerate(self.out_layers):
            h = layer(h)  # (B, H) ... (B, D)
            if i != last:
                h = torch.tanh(h)
        return h  # (B, D)
