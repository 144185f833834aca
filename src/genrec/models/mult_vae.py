"""Mult-VAE: variational autoencoders for collaborative filtering (Liang et al., WWW 2018).

Each user's history x (1 x I, 0/1 or counts; negative values are refused) is explained by a
latent z (K) through a multinomial over the items:

    z ~ N(0, I_K),   pi(z) = softmax(f_theta(z)),   x ~ Mult(N_u, pi(z))

and an encoder g_phi gives q(z|x) = N(mu_phi(x), diag sigma^2_phi(x)). Training maximises
the annealed ELBO per user, averaged over a batch:

    L_beta(x) = E_q[ sum_i x_i log pi_i(z) ]  -  beta * KL(q(z|x) || N(0, I))
              ~= sum_i x_i log softmax(f(z))_i
                 - beta * 0.5 sum_k (sigma_k^2 + mu_k^2 - 1 - log sigma_k^2)

with one sample z = mu + sigma * eps, eps ~ N(0, I) (the reparameterisation), and
beta = min(anneal_cap, step / total_anneal_steps) increased by one step per batch. The
encoder reads x normalised to unit L2 norm, with dropout (p = 0.5) on the input. Users are
scored by the logits f(mu(x)) (eval mode: no dropout, z = mu), so any history folds in.

Network: [I - 600 - 200 - 600 - I], tanh, the encoder's last layer giving (mu, log sigma^2);
Glorot-uniform weights, N(0, 0.001^2) biases (truncated); Adam, lr 1e-3, batches of 500
users, 200 epochs, the best epoch on validation kept.

Departures from the paper (each a config field):

* ``select_metric``: the best epoch is chosen by validation NDCG@20 (the paper: NDCG@100).
* ``total_anneal_steps`` / ``anneal_cap`` keep the paper's 200,000 / 0.2; on small data
  beta then stays far below the cap (ML-1M: 12 steps per epoch), which the paper's own
  procedure (anneal, watch validation, pick the cap) would tune. ``patience`` (default
  None: all epochs, as the paper) can stop early.
* The first layer takes the sparse input (embedding_bag): the same numbers as the dense
  product, without building the (B, I) input; input dropout is drawn on the stored values.

Not departures (RecBole's, named so nobody copies them): the noise has standard deviation
``noise_scale`` = 1 and ``latent_dim`` is the real latent size.

Dimension letters: B users in a batch, I items, K latent size.

References
----------
Liang, Krishnan, Hoffman, Jebara. Variational Autoencoders for Collaborative Filtering.
WWW 2018. https://arxiv.org/abs/1802.05814
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import scipy.sparse as sp
import torch

from genrec.models.nn_blocks import (
    MLPAutoencoder,
    dropout_values,
    gaussian_kl_to_std_normal,
    multinomial_log_lik_sparse,
    normalize_rows,
    reparameterize,
)
from genrec.models.torch_base import TorchRecommender, check_counts
from genrec.train import Batch, LinearAnneal, StepContext, TrainConfig

__all__ = ["MultVAE", "MultVAEConfig", "mult_vae_loss"]


@dataclass(frozen=True)
class MultVAEConfig:
    hidden_dims: tuple[int, ...] = (600,)  # encoder hidden sizes; the decoder mirrors them
    latent_dim: int = 200  # K, the size of z (real size, not halved)
    dropout: float = 0.5  # input dropout on the normalised x (1 - keep_prob)
    anneal_cap: float = 0.2  # the largest beta
    total_anneal_steps: int = 200_000  # beta = min(cap, step / this)
    noise_scale: float = 1.0  # std of the reparameterisation noise (1 = the paper)
    epochs: int = 200  # maximum epochs
    batch_size: int = 500  # users per batch
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # optimizer weight decay (the paper: 0 for the VAE)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    grad_clip: float | None = None  # max global gradient norm; None = no clipping
    ema_decay: float | None = None  # validate/keep a moving average of the weights
    patience: int | None = None  # validations without improvement; None = run every epoch
    select_metric: str = "ndcg@20"  # validation metric choosing the epoch (paper: ndcg@100)
    eval_every: int = 1  # validate every this many epochs
    eval_batch_size: int = 2048  # users per validation batch
    device: str = "auto"  # auto | cpu | cuda
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 = autocast matmuls, fp32 weights
    seed: int = 0  # weights, shuffling, dropout and noise

    def __post_init__(self) -> None:
        TrainConfig.from_config(self)  # range checks of the trainer's fields
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ValueError(f"hidden_dims must be positive sizes, got {self.hidden_dims}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.anneal_cap < math.inf:
            raise ValueError(f"anneal_cap must be >= 0 and finite, got {self.anneal_cap}")
        if self.total_anneal_steps < 1:
            raise ValueError(f"total_anneal_steps must be >= 1, got {self.total_anneal_steps}")
        if not 0 <= self.noise_scale < math.inf:
            raise ValueError(f"noise_scale must be >= 0 and finite, got {self.noise_scale}")


def mult_vae_loss(logits: torch.Tensor, batch: Batch, mu: torch.Tensor, logvar: torch.Tensor,
                  beta: float) -> dict[str, torch.Tensor]:
    """The negative annealed ELBO, averaged over the batch, and its parts.

    Parameters
    ----------
    logits : (B, I) decoder outputs f(z)
    batch : the users' rows x (CSR parts)
    mu, logvar : (B, K) q(z|x)
    beta : KL weight

    Returns
    -------
    {"loss": recon + beta * kl, "recon": -mean_u sum_i x_ui log softmax_i, "kl": mean KL}
    """
    recon = -multinomial_log_lik_sparse(logits, batch.indptr, batch.indices,
                                        batch.values).mean()
    kl = gaussian_kl_to_std_normal(mu, logvar).mean()
    return {"loss": recon + beta * kl, "recon": recon, "kl": kl}


class MultVAE(TorchRecommender):
    """Mult-VAE (Liang et al. 2018): multinomial likelihood, Gaussian latent, annealed KL.

    Attributes
    ----------
    module_ : MLPAutoencoder
    history_ : list of dict, one per epoch
    best_epoch_ : int or None

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.random(50, 30, density=0.2, format="csr", random_state=0)
    >>> X.data[:] = 1
    >>> m = MultVAE(epochs=2, hidden_dims=(16,), latent_dim=4, batch_size=25,
    ...             device="cpu", seed=0).fit(X)
    >>> m.recommend(None, X[:2], k=3)[0].shape
    (2, 3)
    """

    name = "mult-vae"
    config_class = MultVAEConfig
    variational = True

    def _build_module(self, n_items: int, generator: torch.Generator) -> MLPAutoencoder:
        c = self.config
        return MLPAutoencoder(n_items, tuple(c.hidden_dims), c.latent_dim, self.variational,
                              "tanh", generator)

    def _check_train_data(self, X: sp.csr_matrix) -> None:
        check_counts(X, self.name)

    def _input(self, batch: Batch, ctx: StepContext | None) -> tuple[torch.Tensor, ...]:
        """CSR parts of the encoder input: L2-normalised rows, dropout when training."""
        values = normalize_rows(batch.indptr, batch.values)  # (N,)
        if ctx is not None:
            values = dropout_values(values, self.config.dropout, ctx.generator)
        return batch.indptr, batch.indices, values

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, Any]:
        net = self.module_
        mu, logvar = net.encode(*self._input(batch, ctx))  # (B, K), (B, K)
        mu, logvar = mu.float(), logvar.float()
        z = reparameterize(mu, logvar, ctx.generator, self.config.noise_scale)  # (B, K)
        logits = net.decode(z)  # (B, I)
        beta = LinearAnneal(self.config.anneal_cap, self.config.total_anneal_steps)(ctx.step)
        out = mult_vae_loss(logits, batch, mu, logvar, beta)
        return {"loss": out["loss"], "recon": out["recon"].detach(),
                "kl": out["kl"].detach(), "beta": beta}

    def _encode(self, batch: Batch) -> torch.Tensor:
        mu, _ = self.module_.encode(*self._input(batch, None))
        return mu  # (B, K)

    def _scores(self, batch: Batch) -> torch.Tensor:
        return self.module_.decode(self._encode(batch).float())  # (B, I)
