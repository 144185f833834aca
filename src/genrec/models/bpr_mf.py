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

Optimization: mini-batches of ``batch_size`` triples with Adam (the paper's LearnBPR is plain
SGD; ``optimizer="sgd"`` gives it). Given a validation :class:`~genrec.evaluate.RankingTask`,
``valid_metric`` is computed every ``eval_every`` epochs; the best factors are kept
(``best_epoch_``) and training stops after ``patience`` checks without improvement.

Ranking (``score``): x_ui for every item. The model does not fold in; ``users=None`` (or an
unknown user) scores with the mean user factor, and a user with no training item is given
that mean after fitting. ``predict`` returns x_ui (a preference score, not a rating).

Departures from the paper: Adam instead of SGD (a named field); epoch-wise instead of
bootstrap sampling; one lambda for users, positive and negative items (the paper allows three).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from genrec.errors import ConfigError, DataError
from genrec.evaluate import RankingTask, evaluate_ranking
from genrec.models._shallow import (
    KeepBest,
    NegativeSampler,
    check_valid_metric,
    gather_rows,
    lookup,
    rating_triples,
)
from genrec.models.base import Capabilities, Recommender, as_csr, resolve_device

__all__ = ["BPRMF", "BPRMFConfig", "bpr_loss"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BPRMFConfig:
    n_factors: int = 64  # K, the latent dimension
    l2: float = 1e-5  # lambda, per triple, on the user, positive and negative item factors
    item_bias: bool = False  # add b_i to x_ui (not in the paper)
    optimizer: Literal["adam", "sgd"] = "adam"  # update rule; the paper's LearnBPR is sgd
    lr: float = 1e-3  # step size (the loss is summed over a batch)
    batch_size: int = 2048  # triples per step
    epochs: int = 300  # passes over the training pairs (the most, with early stopping)
    eval_every: int = 1  # epochs between validation checks
    patience: int = 10  # validation checks without gain before stopping (0 = never)
    init_std: float = 0.1  # std of the normal initialisation of the factors
    valid_metric: str = "recall@20"  # selects the epoch on the validation task
    seed: int = 0  # initialisation, shuffling and negative sampling
    device: str = "auto"  # auto, cpu or cuda[:N]

    def __post_init__(self) -> None:
        if self.n_factors < 1:
            raise ValueError(f"n_factors must be >= 1, got {self.n_factors}")
        if not 0 <= self.l2 < math.inf:
            raise ValueError(f"l2 must be >= 0 and finite, got {self.l2}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be > 0 and finite, got {self.lr}")
        if min(self.batch_size, self.epochs, self.eval_every) < 1 or self.patience < 0:
            raise ValueError("batch_size, epochs, eval_every must be >= 1 and patience >= 0")
        if not 0 <= self.init_std < math.inf:
            raise ValueError(f"init_std must be >= 0 and finite, got {self.init_std}")
        check_valid_metric(self.valid_metric)


def bpr_loss(x_uij: torch.Tensor) -> torch.Tensor:
    """-sum log sigmoid(x_ui - x_uj) over a batch of differences x_uij (B,)."""
    return -F.logsigmoid(x_uij).sum()


class BPRMF(Recommender):
    """Matrix factorization trained with BPR on implicit feedback.

    Attributes
    ----------
    user_factors_ : Tensor (n_users, K)
    item_factors_ : Tensor (n_items, K)
    item_bias_ : Tensor (n_items,) (zeros without ``item_bias``)
    best_epoch_ : int
    valid_history_ : list of float
        ``valid_metric`` at each check (empty without ``valid``).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]])
    >>> m = BPRMF(n_factors=4, epochs=50, lr=0.05, device="cpu").fit(X)
    >>> m.recommend([0], X[0], k=2)[0].shape
    (1, 2)
    """

    name = "bpr-mf"
    config_class = BPRMFConfig
    fitted_attributes = ("n_items_", "user_factors_", "item_factors_")
    capabilities = Capabilities(folds_in=False, selects_on="ranking")

    def __init__(self, config: BPRMFConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.user_factors_: torch.Tensor | None = None
        self.item_factors_: torch.Tensor | None = None

    def fit(self, X, *, valid: RankingTask | None = None) -> BPRMF:
        cfg = self.config
        X = as_csr(X)
        if X.nnz == 0:
            raise DataError("BPR-MF needs at least one training interaction")
        self.check_valid_task(valid)
        dev = resolve_device(cfg.device)
        U, I = X.shape
        self.n_items_, self.n_users_ = I, U
        gen = torch.Generator().manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        P = (torch.randn(U, cfg.n_factors, generator=gen) * cfg.init_std).to(dev)  # (U, K)
        Q = (torch.randn(I, cfg.n_factors, generator=gen) * cfg.init_std).to(dev)  # (I, K)
        b = torch.zeros(I, device=dev)  # (I,)
        params = {"P": P, "Q": Q, "b": b}
        trained = [P, Q, b] if cfg.item_bias else [P, Q]
        for p in trained:
            p.requires_grad_(True)
        opt = (torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD)(
            trained, lr=cfg.lr)
        u_np, i_np, _ = rating_triples(X)
        n = len(u_np)
        negatives = NegativeSampler(X)
        keep = KeepBest(higher_is_better=True, patience=cfg.patience)
        metric, k = cfg.valid_metric.split("@")
        for epoch in range(1, cfg.epochs + 1):
            perm = rng.permutation(n)
            j_np = negatives(u_np[perm], rng)  # (n,) one negative per pair
            total = 0.0
            for s in range(0, n, cfg.batch_size):
                sel = perm[s : s + cfg.batch_size]
                u = torch.as_tensor(u_np[sel], device=dev)  # (B,)
                i = torch.as_tensor(i_np[sel], device=dev)  # (B,)
                j = torch.as_tensor(j_np[s : s + cfg.batch_size], device=dev)  # (B,)
                pu, qi, qj = gather_rows(P, u), gather_rows(Q, i), gather_rows(Q, j)  # (B, K)
                bi, bj = gather_rows(b, i), gather_rows(b, j)  # (B,)
                x_uij = (pu * (qi - qj)).sum(1) + bi - bj  # (B,)
                reg = (pu * pu).sum() + (qi * qi).sum() + (qj * qj).sum()
                if cfg.item_bias:
                    reg = reg + (bi**2).sum() + (bj**2).sum()
                loss = bpr_loss(x_uij) + cfg.l2 * reg
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
            if not math.isfinite(total):
                raise ConfigError(f"BPR-MF diverged at epoch {epoch}; lower lr")
            if valid is None or epoch % cfg.eval_every:
                log.debug("epoch %d loss %.4f", epoch, total / n)
                continue
            self._publish(params, X)
            v = evaluate_ranking(self, valid, ks=(int(k),), metrics=(metric,)).metrics[
                cfg.valid_metric]
            log.info("epoch %d loss %.4f valid %s %.4f", epoch, total / n, cfg.valid_metric, v)
            if keep.update(epoch, v, lambda: params):
                break
        if valid is None or not keep.state:
            self._publish(params, X)
            self.best_epoch_, self.valid_history_ = cfg.epochs, keep.history
        else:
            self._publish(keep.state, X)
            self.best_epoch_, self.valid_history_ = keep.best_epoch, keep.history
        return self

    def _publish(self, state: dict[str, torch.Tensor], X) -> None:
        P = state["P"].detach().cpu().clone()
        empty = torch.from_numpy(np.diff(X.indptr) == 0)
        if empty.any() and not empty.all():
            P[empty] = P[~empty].mean(0)  # users without items: the average user
        self.user_factors_ = P
        self.item_factors_ = state["Q"].detach().cpu().clone()
        self.item_bias_ = state["b"].detach().cpu().clone()

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """x_ui (n,) for index pairs: a preference score, not a rating. Unknown users use
        the mean user factor; unknown items score 0."""
        self._check_fitted()
        u, ku = lookup(users, self.n_users_)
        i, ki = lookup(items, self.n_items_)
        if len(u) != len(i):
            raise DataError(f"predict: {len(u)} users but {len(i)} items")
        with torch.no_grad():
            pu = self.user_factors_[torch.from_numpy(u)]  # (n, K)
            pu[torch.from_numpy(~ku)] = self.user_factors_.mean(0)
            x = (pu * self.item_factors_[torch.from_numpy(i)]).sum(1) + self.item_bias_[
                torch.from_numpy(i)]
        return np.where(ki, x.numpy(), 0.0).astype(np.float32)

    def score(self, users, X_users) -> torch.Tensor:
        """x_ui (B, n_items); unknown users (or ``users=None``) get the mean user factor."""
        users, X = self._check_users(users, X_users)
        B = X.shape[0]
        with torch.no_grad():
            if users is None:
                pu = self.user_factors_.mean(0).expand(B, -1)  # (B, K)
            else:
                u, ku = lookup(users, self.n_users_)
                pu = self.user_factors_[torch.from_numpy(u)]  # (B, K)
                if not ku.all():
                    pu[torch.from_numpy(~ku)] = self.user_factors_.mean(0)
            return pu @ self.item_factors_.T + self.item_bias_[None, :]  # (B, I)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_.numpy(),
                "item_factors": self.item_factors_.numpy(),
                "item_bias": self.item_bias_.numpy(),
                "best_epoch": np.array(self.best_epoch_, np.int64)}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors_ = torch.from_numpy(state["user_factors"].astype(np.float32))
        self.item_factors_ = torch.from_numpy(state["item_factors"].astype(np.float32))
        self.item_bias_ = torch.from_numpy(state["item_bias"].astype(np.float32))
        self.best_epoch_ = int(state["best_epoch"])
        self.valid_history_ = []
        self.n_users_ = len(self.user_factors_)
