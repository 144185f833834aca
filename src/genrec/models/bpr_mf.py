"""BPR-MF: Bayesian personalized ranking with matrix factorization (Rendle et al., UAI 2009).

Dimensions: U users, I items, K factors, B triples in a batch.

Implicit feedback: a user's items are preferred to the items the user has not got. With
x_ui = w_u . h_i (+ b_i with ``item_bias``), BPR-Opt is the log-posterior of the pairwise
preferences over sampled triples (u, i, j), i a training item of u and j not:

    max  sum_{(u,i,j)} log sigmoid(x_ui - x_uj)  -  lambda (||w_u||^2 + ||h_i||^2 + ||h_j||^2
                                                     [+ b_i^2 + b_j^2])

(the penalty applied to the parameters each triple uses, as in LearnBPR). We minimize its
negative: :func:`bpr_loss`.

Sampling: an epoch visits every training pair (u, i) once in random order and draws one
negative j uniformly from the items u has not got (rejection sampling). LearnBPR draws the
pairs with replacement (bootstrap); an epoch-wise pass is the common re-implementation and
what RecBole does.

Optimization: mini-batches of ``train.batch_size`` triples through the shared
:class:`~genrec.train.Trainer` (Adam by default, the paper's LearnBPR is plain SGD:
``train.optimizer="sgd"``), so BPR-MF has what the torch models have: ``--resume``, weight
averaging (``train.ema_decay``), bf16, early stopping. Given a validation
:class:`~genrec.evaluate.RankingTask`, ``train.select_metric`` is computed every
``train.eval_every`` epochs; the best factors are kept (``best_epoch_``) and training stops
after ``train.patience`` checks without improvement (None: never).

Ranking (``score``): x_ui for every item. The model does not fold in: ``score`` and
``recommend`` need ``users``, rows of the training matrix (``users=None`` or an index outside
the training users is an error); a user with no training item is given the mean user factor
after fitting. ``predict`` returns x_ui (a preference score, not a rating); there an unknown
user gets the mean user factor. Embeddings: ``user_embeddings`` are the factors w_u of
training users, ``item_embeddings`` the h_i (without the bias b_i).

Departures from the paper: Adam instead of SGD (a setting); epoch-wise instead of
bootstrap sampling; one lambda for users, positive and negative items (the paper allows three).

Changed when BPR-MF moved onto the shared trainer: the training settings are nested under
``train`` (``valid_metric`` is ``train.select_metric``; ``patience=0`` is ``None``); the
shuffling and the negatives are drawn from the trainer's torch generator instead of a NumPy
one, and Adam is the fused kernel, so scores differ from earlier versions for the same seed
(same quality). Old model.json files are read through :meth:`BPRMF.upgrade_config`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from genrec.errors import DataError
from genrec.evaluate import RankingTask
from genrec.models._shallow import (
    NegativeSampler,
    as_train_config,
    gather_rows,
    lookup,
    rating_triples,
    train_module,
    upgrade_flat_config,
)
from genrec.models.base import ArraySpec, Capabilities, Recommender, as_csr, resolve_device
from genrec.train import BatchContext, Chunked, FitContext, StepContext, TrainConfig, Triples

__all__ = ["BPRMF", "BPRMFConfig", "BPRMFNet", "bpr_loss"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BPRMFConfig:
    n_factors: int = 64  # K, the latent dimension
    l2: float = 1e-5  # lambda, per triple, on the user, positive and negative item factors
    item_bias: bool = False  # add b_i to x_ui (not in the paper)
    init_std: float = 0.1  # std of the normal initialisation of the factors
    # how to train: batch_size counts triples, lr is per summed batch loss, optimizer sgd is
    # the paper's LearnBPR; seed drives the initialisation, shuffling and negatives
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=300, batch_size=2048, lr=1e-3, patience=10, select_metric="recall@20"
        )
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "train", as_train_config(self, "bpr-mf"))
        if self.n_factors < 1:
            raise ValueError(f"n_factors must be >= 1, got {self.n_factors}")
        if not 0 <= self.l2 < math.inf:
            raise ValueError(f"l2 must be >= 0 and finite, got {self.l2}")
        if not 0 <= self.init_std < math.inf:
            raise ValueError(f"init_std must be >= 0 and finite, got {self.init_std}")


def bpr_loss(x_uij: torch.Tensor) -> torch.Tensor:
    """-sum log sigmoid(x_ui - x_uj) over a batch of differences x_uij (B,)."""
    return -F.logsigmoid(x_uij).sum()


class BPRMFNet(nn.Module):
    """The factor tables: P (U, K), Q (I, K) and the item bias b (I,) (a parameter with
    ``item_bias``, else a zero buffer)."""

    def __init__(self, P: torch.Tensor, Q: torch.Tensor, b: torch.Tensor, item_bias: bool):
        super().__init__()
        self.P = nn.Parameter(P)  # (U, K)
        self.Q = nn.Parameter(Q)  # (I, K)
        if item_bias:
            self.b = nn.Parameter(b)  # (I,)
        else:
            self.register_buffer("b", b)

    def loss(self, batch: Triples, l2: float) -> torch.Tensor:
        """BPR-Opt's negative over the batch's triples, with the per-triple penalty."""
        pu = gather_rows(self.P, batch.users)  # (B, K)
        qi, qj = gather_rows(self.Q, batch.items), gather_rows(self.Q, batch.negatives)
        bi, bj = gather_rows(self.b, batch.items), gather_rows(self.b, batch.negatives)  # (B,)
        x_uij = (pu * (qi - qj)).sum(1) + bi - bj  # (B,)
        reg = (pu * pu).sum() + (qi * qi).sum() + (qj * qj).sum()
        if isinstance(self.b, nn.Parameter):
            reg = reg + (bi**2).sum() + (bj**2).sum()
        return bpr_loss(x_uij) + l2 * reg


class BPRMF(Recommender):
    """Matrix factorization trained with BPR on implicit feedback.

    Attributes
    ----------
    module_ : BPRMFNet
        The trained tables (the best validation epoch's, when ``valid`` was given).
    user_factors_ : Tensor (n_users, K)
    item_factors_ : Tensor (n_items, K)
    item_bias_ : Tensor (n_items,) (zeros without ``item_bias``)
    best_epoch_ : int
    valid_history_ : list of float
        ``train.select_metric`` at each check (empty without ``valid``).
    history_ : list of dict
        The trainer's per-epoch records.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from genrec.train import TrainConfig
    >>> X = sp.csr_matrix([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]])
    >>> m = BPRMF(n_factors=4, train=TrainConfig(epochs=50, lr=0.05, device="cpu")).fit(X)
    >>> m.recommend([0], X[0], k=2)[0].shape
    (1, 2)
    """

    name = "bpr-mf"
    config_class = BPRMFConfig
    fitted_attributes = ("n_items_", "module_")
    capabilities = Capabilities(folds_in=False, trainer=True, selects_on="ranking")
    loss_reduction: ClassVar[str] = "sum"  # train_step sums over the batch (lr per summed loss)
    keyed_noise: ClassVar[bool] = (
        True  # no noise in train_step: the hook draws it, on every rank alike
    )

    def __init__(self, config: BPRMFConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.module_: BPRMFNet | None = None
        self._empty: torch.Tensor | None = None  # (U,) users without items, while training

    @classmethod
    def upgrade_config(cls, values: dict[str, Any]) -> dict[str, Any]:
        """An old model.json config (flat lr, epochs, ..., valid_metric) in the nested form."""
        return upgrade_flat_config(values)

    def fit(
        self, X, *, valid: RankingTask | None = None, context: FitContext | None = None
    ) -> BPRMF:
        cfg = self.config
        X = as_csr(X)
        if X.nnz == 0:
            raise DataError("BPR-MF needs at least one training interaction")
        self.check_valid_task(valid)
        dev = resolve_device(cfg.train.device)
        U, I = X.shape
        self.n_items_, self.n_users_ = I, U
        gen = torch.Generator().manual_seed(cfg.train.seed)
        P = torch.randn(U, cfg.n_factors, generator=gen) * cfg.init_std  # (U, K)
        Q = torch.randn(I, cfg.n_factors, generator=gen) * cfg.init_std  # (I, K)
        module = BPRMFNet(P, Q, torch.zeros(I), cfg.item_bias).to(dev)
        u, i, _ = rating_triples(X)
        self._pairs = (torch.from_numpy(u), torch.from_numpy(i))  # (n,) each
        self._sampler = NegativeSampler(X)
        empty = torch.from_numpy(np.diff(X.indptr) == 0)
        self._empty = empty if empty.any() and not empty.all() else None
        try:
            result = train_module(self, module, X, valid, context, cfg.train)
        except BaseException:
            self._empty = None
            raise
        finally:
            del self._pairs, self._sampler
        net = self.module_
        assert net is not None  # set by train_module, which raised otherwise
        with torch.no_grad():  # users without items: the average user, from now on
            if self._empty is not None:
                net.P[self._empty] = net.P[~self._empty].mean(0)
        self._empty = None
        self.module_ = net.cpu().requires_grad_(False)
        self.history_ = result.history
        sel = cfg.train.select_metric
        self.valid_history_ = [r["valid"][sel] for r in result.history if "valid" in r]
        self.best_epoch_ = result.best_epoch or result.epochs_run
        return self

    # ------------------------------------------------------------------ the trainer's side
    def batch_rows(self, X: sp.csr_matrix) -> int:
        return int(X.nnz)

    def batches(self, X: sp.csr_matrix, ctx: BatchContext) -> Chunked[Triples]:
        """Every training pair once in random order, each with one sampled negative."""
        u, i = self._pairs
        perm = torch.randperm(len(u), generator=ctx.generator)  # (n,)
        j = torch.from_numpy(self._sampler(u[perm].numpy(), ctx.generator))  # (n,)
        dev = ctx.device
        return Chunked(
            perm,
            ctx.batch_size,
            lambda sel, s: Triples(u[sel].to(dev), i[sel].to(dev), j[s : s + len(sel)].to(dev)),
        )

    def train_step(self, batch: Triples, ctx: StepContext) -> dict[str, torch.Tensor]:
        assert self.module_ is not None  # the trainer calls this only while training
        return {"loss": self.module_.loss(batch, self.config.l2)}

    # ------------------------------------------------------------------ fitted tables
    @property
    def user_factors_(self) -> torch.Tensor | None:
        if self.module_ is None:
            return None
        P = self.module_.P.detach()
        if self._empty is not None:  # during training: users without items get the mean
            P = P.clone()
            P[self._empty] = P[~self._empty].mean(0)
        return P

    @property
    def item_factors_(self) -> torch.Tensor | None:
        return None if self.module_ is None else self.module_.Q.detach()

    @property
    def item_bias_(self) -> torch.Tensor | None:
        return None if self.module_ is None else self.module_.b.detach()

    def _fitted_tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(user_factors_, item_factors_, item_bias_) of a model checked to be fitted."""
        P, Q, b = self.user_factors_, self.item_factors_, self.item_bias_
        assert P is not None and Q is not None and b is not None  # module_ is set
        return P, Q, b

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """x_ui (n,) for index pairs: a preference score, not a rating. Unknown users use
        the mean user factor; unknown items score 0."""
        self._check_fitted()
        assert self.n_items_ is not None  # _check_fitted
        u, ku = lookup(users, self.n_users_)
        i, ki = lookup(items, self.n_items_)
        if len(u) != len(i):
            raise DataError(f"predict: {len(u)} users but {len(i)} items")
        with torch.no_grad():
            P, Q, b = self._fitted_tables()
            pu = P[torch.from_numpy(u)]  # (n, K)
            pu[torch.from_numpy(~ku)] = P.mean(0)
            x = (pu * Q[torch.from_numpy(i)]).sum(1) + b[torch.from_numpy(i)]
        return np.where(ki, x.cpu().numpy(), 0.0).astype(np.float32)

    def score(self, users, X_users) -> torch.Tensor:
        """x_ui (B, n_items) of training users ``users`` (BPR-MF does not fold in)."""
        users, X = self._check_users(users, X_users)
        assert users is not None  # refused for a model that does not fold in
        with torch.no_grad():
            P, Q, b = self._fitted_tables()
            pu = P[torch.from_numpy(users)]  # (B, K)
            return pu @ Q.T + b[None, :]  # (B, I)

    def user_embeddings(self, X_users: Any, users: np.ndarray | None = None) -> np.ndarray:
        """The user factors w_u (B, K) of training users ``users`` (``X_users`` their rows,
        checked as ``score`` checks them)."""
        u = self._embedding_users(X_users, users)
        P, _, _ = self._fitted_tables()
        return P[torch.from_numpy(u)].float().cpu().numpy()

    def item_embeddings(self) -> np.ndarray:
        """The item factors h_i (I, K), without the item bias."""
        self._check_fitted()
        return self._fitted_tables()[1].float().cpu().numpy()

    def _get_state(self) -> dict[str, np.ndarray]:
        P, Q, b = self._fitted_tables()
        return {
            "user_factors": P.cpu().numpy(),
            "item_factors": Q.cpu().numpy(),
            "item_bias": b.cpu().numpy(),
            "best_epoch": np.array(self.best_epoch_, np.int64),
        }

    def state_arrays(self) -> dict[str, ArraySpec]:
        I, k = self.n_items_, self.config.n_factors
        return {
            "user_factors": ArraySpec(("n_users", k)),
            "item_factors": ArraySpec((I, k)),
            "item_bias": ArraySpec((I,)),
            "best_epoch": ArraySpec((), "i"),
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        P, Q, b = (
            torch.from_numpy(state[k].astype(np.float32))
            for k in ("user_factors", "item_factors", "item_bias")
        )
        self.module_ = BPRMFNet(P, Q, b, self.config.item_bias).requires_grad_(False).eval()
        self.best_epoch_ = int(state["best_epoch"])
        self.valid_history_ = []
        self.n_users_ = len(P)
