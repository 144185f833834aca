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

* ``train.select_metric``: the best epoch is chosen by validation NDCG@20 (the paper: NDCG@100).
* ``total_anneal_steps`` / ``anneal_cap`` keep the paper's 200,000 / 0.2; on small data
  beta then stays far below the cap (ML-1M: 12 steps per epoch), which the paper's own
  procedure (anneal, watch validation, pick the cap) would tune. ``train.patience`` (default
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

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from genrec.config import Range, check_ranges
from genrec.models.base import ArraySpec, Capabilities
from genrec.models.nn_blocks import (
    MLPAutoencoder,
    encoder_values,
    gaussian_kl_to_std_normal,
    multinomial_log_lik_sparse,
    reparameterize,
)
from genrec.models.torch_base import TorchRecommender, check_counts
from genrec.train import Batch, LinearAnneal, StepContext, TrainConfig

__all__ = ["MultVAE", "MultVAEConfig", "mult_vae_loss"]


@dataclass(frozen=True)
class MultVAEConfig:
    # encoder hidden sizes; the decoder mirrors them
    hidden_dims: Annotated[tuple[int, ...], Range(ge=1, min_len=1)] = (600,)
    latent_dim: Annotated[int, Range(ge=1)] = 200  # K, the size of z (real size, not halved)
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.5  # input dropout on x (1 - keep_prob)
    anneal_cap: Annotated[float, Range(ge=0)] = 0.2  # the largest beta
    total_anneal_steps: Annotated[int, Range(ge=1)] = 200_000  # beta = min(cap, step / this)
    noise_scale: Annotated[float, Range(ge=0)] = 1.0  # std of the reparam. noise (1: paper)
    # Adam, lr 1e-3, batches of 500 users, 200 epochs, every epoch run (patience None); the
    # seed draws the weights, the shuffling, dropout and noise
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=200, batch_size=500, lr=1e-3, patience=None)
    )

    def __post_init__(self) -> None:
        check_ranges(self)


def mult_vae_loss(
    logits: torch.Tensor, batch: Batch, mu: torch.Tensor, logvar: torch.Tensor, beta: float
) -> dict[str, torch.Tensor]:
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
    recon = -multinomial_log_lik_sparse(logits, batch.indptr, batch.indices, batch.values).mean()
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
    >>> m = MultVAE(hidden_dims=(16,), latent_dim=4, train={"epochs": 2, "batch_size": 25,
    ...             "device": "cpu", "seed": 0}).fit(X)
    >>> m.recommend(None, X[:2], k=3)[0].shape
    (2, 3)
    """

    name = "mult-vae"
    capabilities = Capabilities(trainer=True, selects_on="ranking")
    config_class: ClassVar[type] = MultVAEConfig
    keyed_noise: ClassVar[bool] = True  # dropout and eps keyed by user (distributed runs)
    module_: MLPAutoencoder
    variational = True

    def _build_module(self, n_items: int, generator: torch.Generator) -> MLPAutoencoder:
        c = self.config
        return MLPAutoencoder(
            n_items, tuple(c.hidden_dims), c.latent_dim, self.variational, "tanh", generator
        )

    def state_arrays(self) -> dict[str, ArraySpec]:
        c = self.config
        return MLPAutoencoder.arrays(
            self.n_items_, tuple(c.hidden_dims), c.latent_dim, self.variational
        )

    def _check_train_data(self, X: sp.csr_matrix) -> None:
        check_counts(X, self.name)

    def _input(self, batch: Batch, ctx: StepContext | None) -> tuple[torch.Tensor, ...]:
        """CSR parts of the encoder input: L2-normalised rows, dropout when training."""
        rng = None if ctx is None else ctx.rng_for(batch.users)
        values = encoder_values(batch.indptr, batch.values, self.config.dropout, rng, batch.indices)
        return batch.indptr, batch.indices, values

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, Any]:
        net = self.module_
        mu, logvar = net.encode(*self._input(batch, ctx))  # (B, K), (B, K)
        assert logvar is not None  # a variational encoder returns both
        mu, logvar = mu.float(), logvar.float()
        z = reparameterize(mu, logvar, ctx.rng_for(batch.users), self.config.noise_scale)  # (B, K)
        logits = net.decode(z)  # (B, I)
        beta = LinearAnneal(self.config.anneal_cap, self.config.total_anneal_steps)(ctx.step)
        out = mult_vae_loss(logits, batch, mu, logvar, beta)
        return {
            "loss": out["loss"],
            "recon": out["recon"].detach(),
            "kl": out["kl"].detach(),
            "beta": beta,
        }

    def _encode(self, batch: Batch) -> torch.Tensor:
        mu, _ = self.module_.encode(*self._input(batch, None))
        return mu  # (B, K)

    def _scores(self, batch: Batch) -> torch.Tensor:
        return self.module_.decode(self._encode(batch).float())  # (B, I)

    def item_embeddings(self) -> np.ndarray:
        """The decoder's output-layer weight rows (I, D): D is the last hidden width (the
        latent size K without hidden layers)."""
        self._check_fitted()
        return self.module_.item_vectors().float().cpu().numpy()
