"""RecVAE (Shenbin, Alekseev, Tutubalina, Malykh, Nikolenko; WSDM 2020).

Mult-VAE's model (z ~ prior, x ~ Mult(N_u, softmax(W z + b))) with four changes:

1. **Encoder**: five densely connected layers with swish and layer norm (eps 0.1) on the
   L2-normalised, dropped-out input x~:
   h_1 = LN(swish(W_1 x~)),  h_l = LN(swish(W_l h_{l-1} + h_1 + ... + h_{l-1})) for l = 2..5,
   then mu = W_mu h_5, log sigma^2 = W_s h_5. The decoder is one linear layer (K -> I).
2. **Composite prior**: p(z | phi_old, x) = 3/20 N(z; 0, I) + 3/4 q_{phi_old}(z|x)
   + 1/10 N(z; 0, e^10 I), where phi_old are the encoder weights of the previous epoch.
3. **beta scaled by the user**: the KL weight of user u is gamma * |x_u| (gamma = 0.005).
4. **Alternating training**: each epoch runs 3 passes updating only the encoder (input
   dropout 0.5), then 1 pass updating only the decoder (no dropout); each has its own Adam.
   With ``alternating=False`` (the code's ``--not-alternating``) an epoch is instead one
   pass updating encoder and decoder together on the encoder phase's loss (input dropout
   0.5).

The encoder phase minimises, averaged over a batch,

    -sum_i x_ui log softmax(W z + b)_i + gamma |x_u| (log q(z|x_u) - log p(z | phi_old, x_u))

with one sample z = mu + sigma * eps (the KL is a one-sample Monte Carlo estimate, as in the
paper, since the mixture prior has no closed form). The decoder phase minimises the first
term only. Users are scored by W mu(x) + b (eval mode), so any history folds in.

Defaults are the authors' code: hidden 600, latent 200, Adam lr 5e-4, batches of 500 users,
50 epochs, PyTorch's default initialisation.

Departures from the paper's code (none changes an update's expected value):

* The previous epoch's posterior q_{phi_old}(z|x_u) is computed for every user once at the
  start of each encoder phase (the old encoder is frozen during the phase, so these are the
  numbers the code recomputes per batch), and in the first epoch phi_old is the initial
  encoder (the code draws a separate random one).
* The decoder phase computes only the reconstruction term: the KL term does not depend on
  the decoder, so its gradients are the same. Its encoder is frozen and dropout-free, so
  its posterior is computed for every user once at the start of the phase; that is also
  phi_old's posterior for the next epoch's encoder phase, which reuses it (one encoder
  pass per epoch saved; the rows equal a per-batch computation up to float rounding).
* The best epoch is chosen by validation NDCG@20 (the code: NDCG@100).
* The first layer reads the sparse input (same numbers as the dense product).
* With ``alternating=False`` the old posterior is still refreshed at the start of every
  epoch (the code never calls ``update_prior`` in that mode, so its prior keeps the random
  initial encoder), and one Adam covers both halves (the code steps two Adams with the same
  settings: the same updates, as Adam acts per parameter).

Dimension letters: B users in a batch, I items, H hidden units, K latent size.

References
----------
Shenbin, Alekseev, Tutubalina, Malykh, Nikolenko. RecVAE: a New Variational Autoencoder for
Top-N Recommendations with Implicit Feedback. WSDM 2020. https://arxiv.org/abs/1912.11160
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from typing_extensions import Self

from genrec.config import Range, check_ranges
from genrec.models.base import ArraySpec, Capabilities
from genrec.models.nn_blocks import (
    SparseInputLinear,
    encoder_values,
    linear_arrays,
    log_normal_pdf,
    make_linear,
    multinomial_log_lik_sparse,
    reparameterize,
    sparse_input_arrays,
)
from genrec.models.torch_base import TorchRecommender, check_counts
from genrec.train import (
    Batch,
    FitContext,
    Phase,
    StepContext,
    TrainConfig,
    autocast,
    make_optimizer,
)

__all__ = ["RecVAE", "RecVAEConfig", "composite_prior_log_density", "swish"]


@dataclass(frozen=True)
class RecVAEConfig:
    hidden_dim: Annotated[int, Range(ge=1)] = 600  # H, width of the five encoder layers
    latent_dim: Annotated[int, Range(ge=1)] = 200  # K
    # input dropout in the encoder phase (none in the decoder phase)
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.5
    # KL weight per interaction: beta_u = gamma * |x_u|
    gamma: Annotated[float, Range(ge=0)] = 0.005
    # constant KL weight; needs gamma = 0 (refused otherwise)
    beta: Annotated[float | None, Range(ge=0)] = None
    prior_weights: tuple[float, ...] = (3 / 20, 3 / 4, 1 / 10)  # N(0,I), old posterior, wide
    wide_logvar: Annotated[float, Range()] = 10.0  # log variance of the wide prior component
    ln_eps: Annotated[float, Range(gt=0)] = 0.1  # layer norm epsilon (the authors' code)
    alternating: bool = True  # False: one joint pass per epoch (the code's --not-alternating)
    n_enc_epochs: Annotated[int, Range(ge=1)] = 3  # encoder passes per epoch (alternating)
    n_dec_epochs: Annotated[int, Range(ge=1)] = 1  # decoder passes per epoch (alternating)
    # Adam lr 5e-4 (both optimizers), batches of 500 users, 50 epochs (each n_enc_epochs +
    # n_dec_epochs passes; joint: 1), every epoch run (patience None), as the authors' code
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=50, batch_size=500, lr=5e-4, patience=None)
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.gamma == 0 and self.beta is None:
            raise ValueError("with gamma = 0 set a constant beta")
        if self.gamma > 0 and self.beta is not None:
            raise ValueError(
                f"beta (a constant KL weight) applies only with gamma = 0, but "
                f"gamma = {self.gamma}; set gamma=0 to use beta = {self.beta}, or "
                f"leave beta None"
            )
        if (
            len(self.prior_weights) != 3
            or min(self.prior_weights) < 0
            or not math.isclose(sum(self.prior_weights), 1.0, rel_tol=1e-6)
        ):
            raise ValueError(
                f"prior_weights must be 3 non-negative weights summing to 1, "
                f"got {self.prior_weights}"
            )
        if not self.alternating and (self.n_enc_epochs, self.n_dec_epochs) != (3, 1):
            raise ValueError(
                "n_enc_epochs and n_dec_epochs apply only to alternating "
                "training; leave them at 3 and 1 with alternating false"
            )


# ---------------------------------------------------------------------------- math


def swish(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x)."""
    return x * torch.sigmoid(x)


def composite_prior_log_density(
    z: torch.Tensor,
    post_mu: torch.Tensor,
    post_logvar: torch.Tensor,
    weights: tuple[float, ...],
    wide_logvar: float,
) -> torch.Tensor:
    """log p(z) per coordinate for RecVAE's three-component prior.

    p(z_k) = w_0 N(z_k; 0, 1) + w_1 N(z_k; post_mu_k, exp(post_logvar_k))
             + w_2 N(z_k; 0, exp(wide_logvar)),  computed with logsumexp.

    Parameters
    ----------
    z, post_mu, post_logvar : (B, K)
    weights : the three mixture weights (a zero weight drops its component)
    wide_logvar : log variance of the wide component

    Returns
    -------
    (B, K); the prior factorises over k, as in the paper's code.
    """
    zero = torch.zeros_like(z)
    log_w = [math.log(w) if w > 0 else -math.inf for w in weights]
    comps = torch.stack(
        [
            log_normal_pdf(z, zero, zero) + log_w[0],
            log_normal_pdf(z, post_mu, post_logvar) + log_w[1],
            log_normal_pdf(z, zero, torch.full_like(z, wide_logvar)) + log_w[2],
        ],
        dim=-1,
    )  # (B, K, 3)
    return torch.logsumexp(comps, dim=-1)  # (B, K)


# ---------------------------------------------------------------------------- network


class RecVAEEncoder(nn.Module):
    """The densely connected encoder: (mu, logvar), each (B, K), from CSR input rows."""

    def __init__(
        self, n_items: int, hidden: int, latent: int, ln_eps: float, generator: torch.Generator
    ):
        super().__init__()
        self.fc1 = SparseInputLinear(n_items, hidden, generator, scheme="torch")
        self.fcs = nn.ModuleList(make_linear(hidden, hidden, generator, "torch") for _ in range(4))
        self.lns = nn.ModuleList(nn.LayerNorm(hidden, eps=ln_eps) for _ in range(5))
        self.fc_mu = make_linear(hidden, latent, generator, "torch")
        self.fc_logvar = make_linear(hidden, latent, generator, "torch")

    def forward(
        self, indptr: torch.Tensor, indices: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.lns[0](swish(self.fc1(indptr, indices, values)))  # (B, H)
        total = h  # h_1 + ... + h_l, the dense connections
        for fc, ln in zip(self.fcs, self.lns[1:]):
            h = ln(swish(fc(h) + total))  # (B, H)
            total = total + h
        return self.fc_mu(h), self.fc_logvar(h)  # (B, K), (B, K)


class RecVAENet(nn.Module):
    def __init__(
        self, n_items: int, hidden: int, latent: int, ln_eps: float, generator: torch.Generator
    ):
        super().__init__()
        self.encoder = RecVAEEncoder(n_items, hidden, latent, ln_eps, generator)
        self.decoder = make_linear(latent, n_items, generator, "torch")


# ---------------------------------------------------------------------------- model


class RecVAE(TorchRecommender):
    """RecVAE (Shenbin et al. 2020): composite prior, per-user beta, alternating updates.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.random(50, 30, density=0.2, format="csr", random_state=0)
    >>> X.data[:] = 1
    >>> m = RecVAE(hidden_dim=16, latent_dim=4, train={"epochs": 1, "batch_size": 25,
    ...            "device": "cpu"}).fit(X)
    >>> m.recommend(None, X[:2], k=3)[0].shape
    (2, 3)
    """

    name = "recvae"
    module_: RecVAENet
    capabilities = Capabilities(trainer=True, selects_on="ranking")
    keyed_noise: ClassVar[bool] = True  # dropout and eps keyed by user (distributed runs)
    config_class = RecVAEConfig

    def __init__(self, config: RecVAEConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        # training only: phi_old's posterior of every user, and the decoder phase's
        # (epoch, posterior of the frozen encoder)
        self._old_posterior: tuple[torch.Tensor, torch.Tensor] | None = None
        self._decoder_posterior: tuple[int, tuple[torch.Tensor, torch.Tensor]] | None = None

    def _build_module(self, n_items: int, generator: torch.Generator) -> RecVAENet:
        self._old_posterior = self._decoder_posterior = None  # a new network: nothing cached
        c = self.config
        return RecVAENet(n_items, c.hidden_dim, c.latent_dim, c.ln_eps, generator)

    def state_arrays(self) -> dict[str, ArraySpec]:
        I, H, K = self.n_items_, self.config.hidden_dim, self.config.latent_dim
        out = sparse_input_arrays("encoder.fc1.", I, H)
        for j in range(4):
            out |= linear_arrays(f"encoder.fcs.{j}.", H, H)
        for j in range(5):  # LayerNorm: weight and bias (H,)
            out |= {f"encoder.lns.{j}.{w}": ArraySpec((H,)) for w in ("weight", "bias")}
        out |= linear_arrays("encoder.fc_mu.", H, K) | linear_arrays("encoder.fc_logvar.", H, K)
        return out | linear_arrays("decoder.", K, I)

    # -------------------------------------------------------------- training
    def fit(self, X: Any, *, valid: Any = None, context: FitContext | None = None) -> Self:
        try:
            super().fit(X, valid=valid, context=context)
            return self
        finally:  # the per-user posteriors (2 x U x K floats each) serve training only
            self._old_posterior = self._decoder_posterior = None
            if self.module_ is not None:  # the last phase froze one half
                self.module_.requires_grad_(True)

    def _check_train_data(self, X: sp.csr_matrix) -> None:
        check_counts(X, self.name)

    def phases(self) -> tuple[Phase, ...]:
        c = self.config
        if not c.alternating:
            return (Phase("joint", 1, "joint"),)
        return (
            Phase("encoder", c.n_enc_epochs, "encoder"),
            Phase("decoder", c.n_dec_epochs, "decoder"),
        )

    def build_optimizers(self, config: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        net = self.module_
        if not self.config.alternating:
            return {"joint": make_optimizer(net.parameters(), config)}
        return {
            "encoder": make_optimizer(net.encoder.parameters(), config),
            "decoder": make_optimizer(net.decoder.parameters(), config),
        }

    def on_phase_start(self, phase: Phase, ctx: StepContext) -> None:
        net = self.module_
        encoder_phase = phase.name != "decoder"  # "encoder" or "joint": the full loss
        net.encoder.requires_grad_(encoder_phase)
        net.decoder.requires_grad_(phase.name != "encoder")
        if not encoder_phase:  # the frozen encoder's posterior, for the decoder's batches
            self._decoder_posterior = (ctx.epoch, self._posterior_all_users(ctx))
            return
        # phi_old := the encoder now. After a decoder phase of the previous epoch (the
        # encoder unchanged since) its posterior is the one that phase computed.
        cached = self._decoder_posterior
        if cached is not None and cached[0] == ctx.epoch - 1:
            self._old_posterior = cached[1]
        else:
            self._old_posterior = self._posterior_all_users(ctx)
        self._decoder_posterior = None

    def _posterior_all_users(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (U, K) float32, of every training user under the encoder now
        (no input dropout, no gradients)."""
        net = self.module_
        net.eval()
        mus, logvars = [], []
        with torch.no_grad(), autocast(ctx.device, ctx.precision):
            for b in self._batches(ctx.X):
                mu, logvar = net.encoder(*self._input(b, None))
                mus.append(mu.float())
                logvars.append(logvar.float())
        net.train()
        return torch.cat(mus), torch.cat(logvars)  # (U, K) x 2

    def _input(self, batch: Batch, ctx: StepContext | None) -> tuple[torch.Tensor, ...]:
        dropout = ctx is not None and ctx.phase.name != "decoder"  # none in the decoder phase
        rng = ctx.rng_for(batch.users) if dropout and ctx is not None else None
        values = encoder_values(batch.indptr, batch.values, self.config.dropout, rng, batch.indices)
        return batch.indptr, batch.indices, values

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, Any]:
        c, net = self.config, self.module_
        assert batch.users is not None  # training batches carry their row indices
        if ctx.phase.name == "decoder":
            assert self._decoder_posterior is not None  # cached by on_phase_start
            mu, logvar = (t[batch.users.to(t.device)] for t in self._decoder_posterior[1])
            # (B, K), no gradient to the encoder
            z = reparameterize(mu, logvar, ctx.rng_for(batch.users))
            mll = multinomial_log_lik_sparse(
                net.decoder(z), batch.indptr, batch.indices, batch.values
            )  # (B,)
            recon = -mll.mean()
            return {"loss": recon, "recon": recon.detach()}
        mu, logvar = net.encoder(*self._input(batch, ctx))
        mu, logvar = mu.float(), logvar.float()  # (B, K)
        z = reparameterize(mu, logvar, ctx.rng_for(batch.users))  # (B, K)
        mll = multinomial_log_lik_sparse(
            net.decoder(z), batch.indptr, batch.indices, batch.values
        )  # (B,)
        assert self._old_posterior is not None  # cached by on_phase_start
        old_mu, old_logvar = (t[batch.users.to(t.device)] for t in self._old_posterior)
        log_prior = composite_prior_log_density(
            z, old_mu, old_logvar, c.prior_weights, c.wide_logvar
        )  # (B, K)
        kl = (log_normal_pdf(z, mu, logvar) - log_prior).sum(dim=-1)  # (B,) one sample
        weight = c.gamma * batch.row_sums() if c.gamma > 0 else torch.full_like(kl, c.beta)
        recon = -mll.mean()
        kl_term = (weight * kl).mean()
        return {
            "loss": recon + kl_term,
            "recon": recon.detach(),
            "kl": kl.mean().detach(),
            "beta": float(weight.mean()),
        }

    # -------------------------------------------------------------- using
    def _encode(self, batch: Batch) -> torch.Tensor:
        mu, _ = self.module_.encoder(*self._input(batch, None))
        return mu  # (B, K)

    def _scores(self, batch: Batch) -> torch.Tensor:
        return self.module_.decoder(self._encode(batch).float())  # (B, I)

    def item_embeddings(self) -> np.ndarray:
        """The decoder's weight rows (I, K): item i's logit is its row . z + a bias."""
        self._check_fitted()
        return self.module_.decoder.weight.detach().float().cpu().numpy()
