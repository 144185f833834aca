"""Mult-DAE: the denoising autoencoder of Liang et al. (WWW 2018), multinomial likelihood.

The network of Mult-VAE without the variational part: the encoder maps the L2-normalised,
dropped-out history to a code h = tanh(W_1 x~ + b_1) (K = 200), the decoder gives logits
f(h) = W_2 h + b_2 over the I items, and training minimises, per batch,

    loss = -mean_u sum_i x_ui log softmax(f(h_u))_i  +  lambda * sum_W ||W||_F^2

(the L2 penalty over the weight matrices only, not the biases). Network [I - 200 - I], tanh,
input dropout 0.5, Glorot-uniform weights; Adam, lr 1e-3, batches of 500 users, 200 epochs,
lambda = 0.01 / batch_size as in the authors' notebook (their ``lam=0.01 / batch_size`` with
TensorFlow's halved ``l2_loss`` doubled back). Users are scored by f(h(x)) without dropout,
so any history folds in; ``user_embeddings`` returns the code h.

Departures from the paper: the best epoch is chosen by validation NDCG@20 (the paper:
NDCG@100); the first layer reads the sparse input (same numbers as the dense product).

Dimension letters: B users in a batch, I items, K code size.

References
----------
Liang, Krishnan, Hoffman, Jebara. Variational Autoencoders for Collaborative Filtering.
WWW 2018. https://arxiv.org/abs/1802.05814
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import torch

from genrec.config import Range, check_ranges
from genrec.models.base import Capabilities
from genrec.models.mult_vae import MultVAE
from genrec.models.nn_blocks import multinomial_log_lik_sparse
from genrec.train import Batch, StepContext, TrainConfig

__all__ = ["MultDAE", "MultDAEConfig", "weight_l2"]


@dataclass(frozen=True)
class MultDAEConfig:
    # hidden sizes between input and code (paper: none)
    hidden_dims: Annotated[tuple[int, ...], Range(ge=1)] = ()
    latent_dim: Annotated[int, Range(ge=1)] = 200  # K, the code size
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.5  # input dropout on the normalised x
    # lambda on sum ||W||^2 (the paper's lam = 0.01 / batch_size)
    l2: Annotated[float, Range(ge=0)] = 0.01 / 500
    # Adam, lr 1e-3, batches of 500 users, 200 epochs, every epoch run (patience None); its
    # weight_decay (paper: 0) acts on every parameter, l2 above on the weight matrices only
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=200, batch_size=500, lr=1e-3, patience=None)
    )

    def __post_init__(self) -> None:
        check_ranges(self)


def weight_l2(module: torch.nn.Module) -> torch.Tensor:
    """sum ||W||_F^2 over the module's weight matrices (parameters named ``*weight``, 2-D)."""
    terms = [
        p.pow(2).sum() for n, p in module.named_parameters() if n.endswith("weight") and p.ndim == 2
    ]
    return torch.stack(terms).sum()


class MultDAE(MultVAE):
    """Mult-DAE (Liang et al. 2018): Mult-VAE's network without the KL term.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.random(50, 30, density=0.2, format="csr", random_state=0)
    >>> X.data[:] = 1
    >>> m = MultDAE(latent_dim=8, train={"epochs": 2, "batch_size": 25, "device": "cpu"}).fit(X)
    >>> m.user_embeddings(X[:2]).shape
    (2, 8)
    """

    name = "mult-dae"
    capabilities = Capabilities(trainer=True, selects_on="ranking")
    config_class = MultDAEConfig
    variational = False

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, Any]:
        net = self.module_
        h, _ = net.encode(*self._input(batch, ctx))  # (B, K)
        logits = net.decode(h)  # (B, I)
        recon = -multinomial_log_lik_sparse(
            logits, batch.indptr, batch.indices, batch.values
        ).mean()
        loss = recon + self.config.l2 * weight_l2(net) if self.config.l2 > 0 else recon
        return {"loss": loss, "recon": recon.detach()}
