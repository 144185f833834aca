r"""VQ-VAE recommender: Mult-VAE's encoder and multinomial decoder around a discrete code.

Van den Oord et al. ("Neural Discrete Representation Learning", NeurIPS 2017) replace the
Gaussian latent of a VAE by the nearest entry of a learned codebook. Here the encoder of
Mult-VAE (Liang et al., WWW 2018) maps the normalised, dropped-out history x to a code
:math:`z_e = \tanh(g(x))` (D), the quantizer replaces it by codebook entries, and the decoder
gives a multinomial over the items. Training minimises, per batch,

.. math::
    -\frac1B \sum_u \sum_i x_{ui} \log \mathrm{softmax}(f(z_q(x_u)))_i
    + \|\mathrm{sg}[z_e] - z_q\|^2 + \beta \|z_e - \mathrm{sg}[z_q]\|^2 ,

the straight-through gradient carrying the decoder's gradient to the encoder
(:mod:`genrec.models.quantize`). With a uniform prior over the K codes the KL term of the
ELBO is the constant log K, so it is left out, as in the paper.

The bottleneck (``quantizer``):

* ``"vq"``: one codebook of ``n_codes`` vectors of size ``code_dim``: every user is one of K
  taste types, and users of one type get the same list;
* ``"product"``: the code split into ``n_parts`` equal pieces, each with its own codebook
  (K^P types);
* ``"residual"``: ``n_levels`` codebooks in turn, each quantizing what the levels before left.

A user's discrete code is :meth:`VQVAE.user_codes` ((B,) for "vq", (B, P) or (B, L)
otherwise); ``user_embeddings`` gives the continuous encoder output :math:`z_e`, and
``item_embeddings`` the decoder's output rows. Any history folds in. Codebooks start from
k-means on the first training batch and unused codes are restarted from batch codes every
``restart_every`` steps (the usual remedies for codebook collapse); the perplexity and the
share of codes in use are logged every epoch.

Departures from the paper: the encoder and decoder are Mult-VAE's MLPs over the item
history, not convolutions over images; the code is the tanh'd encoder output (bounded, as
Mult-DAE's); product and residual bottlenecks are options the paper does not have.

With keyed noise (``train.noise = "keyed"``, the default of a distributed run) the input
dropout is keyed by (user, item); with keyed noise or several processes the codebooks start
from k-means on a seeded sample of training users as large as a global batch (not on the
first batch, which the processes split), and in a distributed run every codebook's EMA
update and dead-code restarts read the whole global batch (its vectors gathered after each
step), so the run does not depend on the number of processes.

Dimension letters: B users in a batch, I items, D code size, K codes, P parts, L levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from genrec.config import Range, check_ranges
from genrec.errors import ConfigError
from genrec.models.base import ArraySpec, Capabilities
from genrec.models.nn_blocks import (
    MLPAutoencoder,
    encoder_values,
    multinomial_log_lik_sparse,
)
from genrec.models.quantize import Quantized, ResidualQuantizer, VectorQuantizer
from genrec.models.torch_base import TorchRecommender, check_counts
from genrec.train import Batch, Phase, StepContext, TrainConfig

__all__ = ["VQVAE", "VQVAEConfig"]


@dataclass(frozen=True)
class VQVAEConfig:
    hidden_dims: Annotated[tuple[int, ...], Range(ge=1)] = (600,)  # encoder; decoder mirrors
    code_dim: Annotated[int, Range(ge=1)] = 64  # D, the size of the code
    quantizer: Literal["vq", "product", "residual"] = "vq"
    n_codes: Annotated[int, Range(ge=1)] = 256  # K per codebook
    n_parts: Annotated[int, Range(ge=1)] = 4  # P, "product" only: D splits into P pieces
    n_levels: Annotated[int, Range(ge=1)] = 2  # L, "residual" only
    beta: Annotated[float, Range(ge=0)] = 0.25  # the commitment weight
    ema: bool = False  # codebooks by running averages instead of their loss
    restart_every: Annotated[int, Range(ge=1)] | None = 100  # steps between dead-code checks
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.5  # input dropout, as Mult-VAE's
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=200, batch_size=500, lr=1e-3, patience=None)
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.quantizer == "product" and self.code_dim % self.n_parts:
            raise ConfigError(
                f"vq-vae: code_dim {self.code_dim} does not split into n_parts {self.n_parts} "
                f"equal pieces; make code_dim a multiple of n_parts"
            )


class ProductQuantizer(nn.Module):
    """``n_parts`` codebooks, each for one equal slice of the code."""

    parts: nn.ModuleList

    def __init__(self, n_parts: int, n_codes: int, dim: int, seed: int, **kwargs: Any):
        super().__init__()
        self.width = dim // n_parts
        self.parts = nn.ModuleList(
            VectorQuantizer(n_codes, self.width, seed=seed + p, **kwargs) for p in range(n_parts)
        )

    def forward(self, z: torch.Tensor) -> Quantized:
        outs = [vq(piece) for vq, piece in zip(self.parts, z.split(self.width, dim=-1))]
        return Quantized(
            torch.cat([q.z_q for q in outs], -1),  # (B, D)
            torch.cat([q.values for q in outs], -1),
            torch.stack([q.codes for q in outs], -1),  # (B, P)
            torch.stack([q.loss for q in outs]).sum(),
            torch.stack([q.codebook_loss for q in outs]).sum(),
            torch.stack([q.commitment_loss for q in outs]).sum(),
            [p for q in outs for p in q.perplexity],
            [u for q in outs for u in q.usage],
        )


class VQNet(nn.Module):
    """Mult-VAE's encoder and decoder (non-variational) around a quantizer."""

    def __init__(self, n_items: int, c: VQVAEConfig, generator: torch.Generator, seed: int):
        super().__init__()
        self.ae = MLPAutoencoder(
            n_items, tuple(c.hidden_dims), c.code_dim, False, "tanh", generator
        )
        kw: dict[str, Any] = dict(beta=c.beta, ema=c.ema, restart_every=c.restart_every)
        if c.quantizer == "vq":
            self.quantizer: nn.Module = VectorQuantizer(c.n_codes, c.code_dim, seed=seed, **kw)
        elif c.quantizer == "product":
            self.quantizer = ProductQuantizer(c.n_parts, c.n_codes, c.code_dim, seed, **kw)
        else:
            self.quantizer = ResidualQuantizer(c.n_levels, c.n_codes, c.code_dim, seed, **kw)

    def forward(self, indptr, indices, values) -> tuple[torch.Tensor, torch.Tensor, Quantized]:
        """(logits (B, I), z_e (B, D), the quantizer's output)."""
        z_e, _ = self.ae.encode(indptr, indices, values)  # (B, D)
        q = self.quantizer(z_e.float())
        return self.ae.decode(q.z_q), z_e, q


def _codebook_arrays(prefix: str, n_codes: int, dim: int, ema: bool) -> dict[str, ArraySpec]:
    out = {
        f"{prefix}codebook": ArraySpec((n_codes, dim)),
        f"{prefix}initialised": ArraySpec((), "b"),
        f"{prefix}steps": ArraySpec((), "i"),
        f"{prefix}recent_counts": ArraySpec((n_codes,)),
    }
    if ema:
        out[f"{prefix}ema_counts"] = ArraySpec((n_codes,))
        out[f"{prefix}ema_sums"] = ArraySpec((n_codes, dim))
    return out


class VQVAE(TorchRecommender):
    """VQ-VAE (van den Oord et al. 2017) over item histories: a discrete taste code.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.random(60, 30, density=0.2, format="csr", random_state=0)
    >>> X.data[:] = 1
    >>> m = VQVAE(hidden_dims=(16,), code_dim=4, n_codes=4,
    ...           train={"epochs": 2, "batch_size": 30, "device": "cpu"}).fit(X)
    >>> m.user_codes(X[:3]).shape
    (3,)
    """

    name = "vq-vae"
    capabilities = Capabilities(trainer=True, selects_on="ranking")
    config_class: ClassVar[type] = VQVAEConfig
    keyed_noise: ClassVar[bool] = True  # dropout keyed by (user, item); see _start_codebooks
    module_: VQNet

    def _build_module(self, n_items: int, generator: torch.Generator) -> VQNet:
        return VQNet(n_items, self.config, generator, self.train_config().seed)

    def state_arrays(self) -> dict[str, ArraySpec]:
        c = self.config
        out = {
            f"ae.{k}": v
            for k, v in MLPAutoencoder.arrays(
                self.n_items_, tuple(c.hidden_dims), c.code_dim, False
            ).items()
        }
        if c.quantizer == "vq":
            out |= _codebook_arrays("quantizer.", c.n_codes, c.code_dim, c.ema)
        elif c.quantizer == "product":
            for p in range(c.n_parts):
                out |= _codebook_arrays(
                    f"quantizer.parts.{p}.", c.n_codes, c.code_dim // c.n_parts, c.ema
                )
        else:
            for level in range(c.n_levels):
                out |= _codebook_arrays(f"quantizer.levels.{level}.", c.n_codes, c.code_dim, c.ema)
        return out

    def _check_train_data(self, X: sp.csr_matrix) -> None:
        check_counts(X, self.name)

    def _input(self, batch: Batch, ctx: StepContext | None) -> tuple[torch.Tensor, ...]:
        """CSR parts of the encoder input, as Mult-VAE's: unit rows, dropout when training."""
        generator = None if ctx is None else ctx.rng_for(batch.users)
        values = encoder_values(
            batch.indptr, batch.values, self.config.dropout, generator, batch.indices
        )
        return batch.indptr, batch.indices, values

    def _codebooks(self) -> list[VectorQuantizer]:
        return [m for m in self.module_.quantizer.modules() if isinstance(m, VectorQuantizer)]

    @torch.no_grad()
    def _start_codebooks(self, ctx: StepContext) -> None:
        """Keyed noise or several processes: the codebooks' k-means on the codes of a
        seeded sample of the training users, as many as a global batch (no dropout), not on
        the first batch, which a distributed run splits between processes."""
        X, net = ctx.X, self.module_
        n = min(X.shape[0], self.train_config().batch_size * ctx.processes)
        gen = torch.Generator().manual_seed(self.train_config().seed)
        users = torch.randperm(X.shape[0], generator=gen)[:n].sort().values
        sample = Batch.from_csr(X[users.numpy()], users, ctx.device)
        values = encoder_values(sample.indptr, sample.values, 0.0, None)
        z_e, _ = net.ae.encode(sample.indptr, sample.indices, values)  # (n, D)
        books = self._codebooks()
        deferred = [vq.defer for vq in books]
        for vq in books:  # each level starts from k-means on what the levels before leave;
            vq.defer = True  # the sample's vectors update no codebook
        net.quantizer(z_e.float())
        for vq, was in zip(books, deferred):
            vq.defer, vq._pending = was, None

    def on_phase_start(self, phase: Phase, ctx: StepContext) -> None:
        """Every epoch, on every process, before its first step: with keyed noise or
        several processes the codebooks' start (once)."""
        books = self._codebooks()
        keyed_or_several = ctx.noise_seed is not None or ctx.processes > 1
        if keyed_or_several and not all(bool(v.initialised) for v in books):
            self._start_codebooks(ctx)

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, Any]:
        logits, _, q = self.module_(*self._input(batch, ctx))  # (B, I)
        recon = -multinomial_log_lik_sparse(
            logits.float(), batch.indptr, batch.indices, batch.values
        ).mean()
        return {
            "loss": recon + q.loss,
            "recon": recon.detach(),
            "vq": q.loss.detach(),
            "perplexity": float(np.mean(q.perplexity)),
            "code_usage": float(np.mean(q.usage)),
        }

    def _encode(self, batch: Batch) -> torch.Tensor:
        z_e, _ = self.module_.ae.encode(*self._input(batch, None))
        return z_e  # (B, D)

    def _scores(self, batch: Batch) -> torch.Tensor:
        logits, _, _ = self.module_(*self._input(batch, None))
        return logits  # (B, I)

    def user_codes(self, X_users: Any, users: np.ndarray | None = None) -> np.ndarray:
        """Each user's discrete code from the history rows: (B,) int64 for one codebook,
        (B, P) or (B, L) for product or residual codes."""
        self._check_fitted()
        users, X = self._check_users(users, X_users)
        net = self.module_
        net.eval()
        out = []
        with torch.inference_mode():
            for b in self._batches(X, users):
                z_e, _ = net.ae.encode(*self._input(b, None))
                out.append(net.quantizer(z_e.float()).codes.cpu())
        if not out:
            width = () if self.config.quantizer == "vq" else (self._n_parts(),)
            return np.zeros((0, *width), dtype=np.int64)
        return torch.cat(out).numpy()

    def _n_parts(self) -> int:
        c = self.config
        return c.n_parts if c.quantizer == "product" else c.n_levels

    def item_embeddings(self) -> np.ndarray:
        """The decoder's output-layer weight rows (I, D')."""
        self._check_fitted()
        return self.module_.ae.item_vectors().float().cpu().numpy()
