"""CDAE: collaborative denoising auto-encoders for top-N recommendation (Wu, DuBois, Zheng &
Ester, WSDM 2016).

A one-hidden-layer denoising autoencoder over each user's 0/1 history y_u (1 x I; values
outside [0, 1] are refused, the logistic loss needing them as targets) with one extra
input: a latent vector V_u per user (the "user node"). With the corrupted input y~_u
(dropout q, kept entries scaled by 1 / (1 - q)),

    z_u    = h(W^T y~_u + V_u + b)                    (K,)
    y^_ui  = f(W'_i^T z_u + b'_i)                      for every item i

and training minimises, averaged over the users of a batch,

    sum_i  l(y_ui, y^_ui)  +  lambda/2 (||W||^2 + ||W'||^2 + ||V||^2 + ||b||^2 + ||b'||^2)

with l the logistic loss (f = sigmoid; the paper's best pairing with h = sigmoid or
identity). The regulariser is applied to the parameters the batch touches: V_u of the batch's
users, and all of W, W', b, b' once per batch scaled by B / U, so one epoch adds the paper's
penalty once.

Users are scored by the logits W'^T z_u + b' (the ranking of y^_ui). The model does not
fold in: every user has a node V_u, so ``score``, ``recommend`` and ``user_embeddings`` need
``users``, rows of the training matrix (``users=None`` or an index outside the training users
is an error; the paper leaves scoring a new user open). ``user_embeddings`` returns z_u (user
node included), ``item_embeddings`` the rows W'_i of the output layer, so that the logit of
item i is W'_i . z_u + b'_i.

Defaults: K = 50, h = sigmoid, f = sigmoid, q = 0.2, Adam lr 1e-2 (the paper: AdaGrad;
Adam at 1e-3 stayed near the popularity ranking for 30 epochs on ML-1M validation),
lambda = 0.01, batches of 500 users, 200 epochs with the best validation epoch kept.
On ML-1M (DiffRec's split) these paper sizes stay near the popularity ranking (validation
Recall@20 0.080); validation chose K = 200 with q = 0.5 there (benchmarks/results/vae.md).

Departures from the paper (each a config field):

* The loss covers every item of the user (the paper's objective); the paper samples negative
  items to make each SGD step cheap, which a full (B, I) batch on a catalogue of a few
  thousand items does not need.
* Adam instead of AdaGrad; the first layer reads the sparse input (same numbers as the
  dense product).

Dimension letters: B users in a batch, U users, I items, K hidden units.

References
----------
Wu, DuBois, Zheng, Ester. Collaborative Denoising Auto-Encoders for Top-N Recommender
Systems. WSDM 2016. https://doi.org/10.1145/2835776.2835837
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F
from typing_extensions import Self

from genrec.config import Range, check_ranges
from genrec.errors import DataError
from genrec.models.base import ArraySpec, Capabilities, as_csr
from genrec.models.nn_blocks import (
    SparseInputLinear,
    dropout_values,
    linear_arrays,
    make_linear,
    row_ids,
    sparse_input_arrays,
)
from genrec.models.torch_base import TorchRecommender
from genrec.train import Batch, FitContext, StepContext, TrainConfig

__all__ = ["CDAE", "CDAEConfig", "CDAENet", "cdae_loss"]

_ACT = {"sigmoid": torch.sigmoid, "identity": lambda x: x, "relu": torch.relu, "tanh": torch.tanh}


@dataclass(frozen=True)
class CDAEConfig:
    latent_dim: Annotated[int, Range(ge=1)] = 50  # K, hidden units
    hidden_activation: Literal["sigmoid", "identity", "relu", "tanh"] = "sigmoid"  # h
    # q, input dropout (kept entries scaled by 1 / (1 - q))
    corruption: Annotated[float, Range(ge=0, lt=1)] = 0.2
    # lambda in lambda/2 (||W||^2 + ||W'||^2 + ||V||^2 + ||b||^2 + ||b'||^2)
    l2: Annotated[float, Range(ge=0)] = 0.01
    # Adam lr 1e-2 (the paper: AdaGrad; 1e-3 leaves sigmoid units slow), batches of 500 users,
    # 200 epochs, patience 20; weight_decay 0 (l2 above is the paper's penalty)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=200, batch_size=500, lr=1e-2, patience=20)
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.hidden_activation not in _ACT:
            raise ValueError(
                f"hidden_activation must be one of {sorted(_ACT)}, got {self.hidden_activation!r}"
            )


class CDAENet(nn.Module):
    """Encoder W (I x K, sparse input) + bias b, user nodes V (U x K), decoder W' (K -> I)."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        latent_dim: int,
        activation: str,
        generator: torch.Generator,
    ):
        super().__init__()
        self.act = _ACT[activation]
        self.input = SparseInputLinear(n_items, latent_dim, generator)  # W, b
        self.user_node = nn.Embedding(n_users, latent_dim)  # V
        with torch.no_grad():
            self.user_node.weight.normal_(0.0, 0.01, generator=generator)
        self.output = make_linear(latent_dim, n_items, generator)  # W', b'

    def encode(
        self,
        indptr: torch.Tensor,
        indices: torch.Tensor,
        values: torch.Tensor,
        users: torch.Tensor | None,
    ) -> torch.Tensor:
        """z (B, K); ``users`` None means no user node (V_u = 0)."""
        a = self.input(indptr, indices, values)  # (B, K)
        if users is not None:
            a = a + self.user_node(users)  # (B, K)
        return self.act(a)

    def forward(
        self,
        indptr: torch.Tensor,
        indices: torch.Tensor,
        values: torch.Tensor,
        users: torch.Tensor | None,
    ) -> torch.Tensor:
        return self.output(self.encode(indptr, indices, values, users))  # logits (B, I)


def cdae_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """sum_i BCE(y_ui, sigmoid(logit_ui)) over every item, averaged over the batch's users.

    Computed without the dense target: softplus(l) is the loss of a 0 target, and a 1
    target subtracts l (BCE(1, s(l)) = softplus(l) - l).
    """
    rows = row_ids(batch.indptr)  # (N,)
    neg = F.softplus(logits).sum()
    pos = (logits[rows, batch.indices] * batch.values).sum()
    return (neg - pos) / logits.shape[0]


class CDAE(TorchRecommender):
    """CDAE (Wu et al. 2016): a denoising autoencoder with a per-user input node.

    Attributes
    ----------
    module_ : CDAENet
    n_users_ : int
        Rows of the training matrix (the user nodes).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.random(50, 30, density=0.2, format="csr", random_state=0)
    >>> X.data[:] = 1
    >>> m = CDAE(latent_dim=8, train={"epochs": 2, "batch_size": 25, "device": "cpu"}).fit(X)
    >>> m.recommend([0, 1], X[:2], k=3)[0].shape
    (2, 3)
    """

    name = "cdae"
    config_class = CDAEConfig
    # scores of training users use their user node, not the history alone
    capabilities = Capabilities(folds_in=False, trainer=True, selects_on="ranking")
    keyed_noise: ClassVar[bool] = True  # corruption keyed by (user, item) (distributed runs)
    fitted_attributes: ClassVar[tuple[str, ...]] = ("n_items_", "n_users_", "module_")
    module_: CDAENet
    n_users_: int

    def fit(self, X: Any, *, valid: Any = None, context: FitContext | None = None) -> Self:
        X = as_csr(X)
        self.n_users_ = X.shape[0]
        super().fit(X, valid=valid, context=context)
        return self

    def _check_train_data(self, X: sp.csr_matrix) -> None:
        if X.nnz and (X.data.min() < 0 or X.data.max() > 1):
            raise DataError(
                f"{self.name}: the logistic loss needs 0/1 targets, but the training "
                f"matrix has values in [{float(X.data.min()):g}, "
                f"{float(X.data.max()):g}]; binarize it (X.data[:] = 1 keeps every "
                f"interaction)"
            )

    def _build_module(self, n_items: int, generator: torch.Generator) -> CDAENet:
        c = self.config
        return CDAENet(self.n_users_, n_items, c.latent_dim, c.hidden_activation, generator)

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, Any]:
        net: CDAENet = self.module_
        rng = ctx.rng_for(batch.users)
        values = dropout_values(
            batch.values, self.config.corruption, rng, batch.indptr, batch.indices
        )
        assert batch.users is not None  # training batches carry their row indices
        users = batch.users.to(batch.indptr.device)
        logits = net(batch.indptr, batch.indices, values, users).float()  # (B, I)
        recon = cdae_loss(logits, batch)
        loss = recon
        if self.config.l2 > 0:
            share = len(batch) / self.n_users_  # the shared weights' penalty, once per epoch
            shared = sum(
                p.pow(2).sum() for n, p in net.named_parameters() if not n.startswith("user_node")
            )
            nodes = net.user_node(users).pow(2).sum()
            loss = recon + 0.5 * self.config.l2 * (share * shared + nodes) / len(batch)
        return {"loss": loss, "recon": recon.detach()}

    def _scores(self, batch: Batch) -> torch.Tensor:
        users = None if batch.users is None else batch.users.to(batch.indptr.device)
        return self.module_(batch.indptr, batch.indices, batch.values, users)

    def _encode(self, batch: Batch) -> torch.Tensor:
        users = None if batch.users is None else batch.users.to(batch.indptr.device)
        return self.module_.encode(batch.indptr, batch.indices, batch.values, users)  # (B, K)

    def item_embeddings(self) -> np.ndarray:
        """The output layer's weight rows W'_i (I, K)."""
        self._check_fitted()
        return self.module_.output.weight.detach().float().cpu().numpy()

    def state_arrays(self) -> dict[str, ArraySpec]:
        I, K = self.n_items_, self.config.latent_dim
        return (
            sparse_input_arrays("input.", I, K)
            | {"user_node.weight": ArraySpec(("n_users", K))}  # (U, K), U bound by the file
            | linear_arrays("output.", K, I)
        )

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.n_users_ = int(np.asarray(state["user_node.weight"]).shape[0])
        super()._set_state(state)
