"""The Gaussian VAE (Kingma & Welling 2014) on user histories: the textbook model.

Each user's history x (1 x I, 0/1, treated as real numbers) has a latent z (K):

    z ~ N(0, I_K),   x | z ~ N(f_theta(z), I_I),   q(z|x) = N(mu_phi(x), diag sigma^2_phi(x))

and training maximises the ELBO, per user and averaged over a batch:

    ELBO(x) = E_q[log N(x; f(z), I)] - KL(q(z|x) || N(0, I))
            ~= -0.5 sum_i (x_i - f_i(z))^2
               - beta * 0.5 sum_k (sigma_k^2 + mu_k^2 - 1 - log sigma_k^2)

(dropping the constant -I/2 log 2 pi), with one sample z = mu + sigma * eps, eps ~ N(0, I),
and beta = 1 (the ELBO itself). Encoder I - 512 - (mu, log sigma^2) in 256, decoder
256 - 512 - I, ReLU; Adam, lr 1e-3, batches of 500 users. Users are scored by f(mu(x)).

Why it is here: it is where learners start, and it shows what the multinomial likelihood of
Mult-VAE buys. Squared error spends the model on the (B, I) zeros, weighting a missing item
as much as a present one, and its gradient per item does not compete across items; the
multinomial's softmax makes items compete for a fixed probability budget per user, which is
what ranking needs. See docs/models/vae.md and the benchmark.

Departures from the textbook: none in the model; the encoder's first layer reads the sparse
input (same numbers as the dense product). ``beta`` is a field for experiments.

Dimension letters: B users in a batch, I items, K latent size.

References
----------
Kingma, Welling. Auto-Encoding Variational Bayes. ICLR 2014. https://arxiv.org/abs/1312.6114
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np
import torch

from genrec.config import Range, check_ranges
from genrec.models.base import ArraySpec, Capabilities
from genrec.models.nn_blocks import MLPAutoencoder, gaussian_kl_to_std_normal, reparameterize
from genrec.models.torch_base import TorchRecommender
from genrec.train import Batch, StepContext, TrainConfig

__all__ = ["GaussianVAE", "GaussianVAEConfig", "gaussian_recon_loss"]


@dataclass(frozen=True)
class GaussianVAEConfig:
    # encoder hidden sizes; the decoder mirrors them
    hidden_dims: Annotated[tuple[int, ...], Range(ge=1, min_len=1)] = (512,)
    latent_dim: Annotated[int, Range(ge=1)] = 256  # K, the size of z
    beta: Annotated[float, Range(ge=0)] = 1.0  # KL weight (1 = the ELBO)
    # Adam, lr 1e-3, batches of 500 users, 100 epochs, every epoch run (patience None)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=100, batch_size=500, lr=1e-3, patience=None)
    )

    def __post_init__(self) -> None:
        check_ranges(self)


def gaussian_recon_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log N(x; x_hat, I) per user, without the constant: 0.5 sum_i (x_i - x_hat_i)^2, (B,)."""
    return 0.5 * (x - x_hat.float()).pow(2).sum(dim=-1)  # (B,)


class GaussianVAE(TorchRecommender):
    """The textbook VAE: Gaussian likelihood (squared error) and closed-form Gaussian KL.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.random(50, 30, density=0.2, format="csr", random_state=0)
    >>> X.data[:] = 1
    >>> m = GaussianVAE(hidden_dims=(16,), latent_dim=4,
    ...                 train={"epochs": 2, "device": "cpu"}).fit(X)
    >>> m.score(None, X[:2]).shape
    torch.Size([2, 30])
    """

    name = "gaussian-vae"
    capabilities = Capabilities(trainer=True, selects_on="ranking")
    keyed_noise: ClassVar[bool] = True  # eps keyed by user (distributed runs)
    config_class = GaussianVAEConfig
    module_: MLPAutoencoder

    def _build_module(self, n_items: int, generator: torch.Generator) -> MLPAutoencoder:
        c = self.config
        return MLPAutoencoder(n_items, tuple(c.hidden_dims), c.latent_dim, True, "relu", generator)

    def state_arrays(self) -> dict[str, ArraySpec]:
        c = self.config
        return MLPAutoencoder.arrays(self.n_items_, tuple(c.hidden_dims), c.latent_dim, True)

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, Any]:
        net = self.module_
        mu, logvar = net.encode(batch.indptr, batch.indices, batch.values)  # (B, K) x 2
        assert logvar is not None  # a variational encoder returns both
        mu, logvar = mu.float(), logvar.float()
        z = reparameterize(mu, logvar, ctx.rng_for(batch.users))  # (B, K)
        recon = gaussian_recon_loss(net.decode(z), batch.dense()).mean()
        kl = gaussian_kl_to_std_normal(mu, logvar).mean()
        return {"loss": recon + self.config.beta * kl, "recon": recon.detach(), "kl": kl.detach()}

    def _encode(self, batch: Batch) -> torch.Tensor:
        mu, _ = self.module_.encode(batch.indptr, batch.indices, batch.values)
        return mu  # (B, K)

    def _scores(self, batch: Batch) -> torch.Tensor:
        return self.module_.decode(self._encode(batch).float())  # (B, I)

    def item_embeddings(self) -> np.ndarray:
        """The decoder's output-layer weight rows (I, D): D is the last hidden width (the
        latent size K without hidden layers)."""
        self._check_fitted()
        return self.module_.item_vectors().float().cpu().numpy()
