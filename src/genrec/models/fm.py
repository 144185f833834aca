"""Factorization machines (Rendle, ICDM 2010), second order, for ratings or ranking.

Dimensions: U users, I items, F features, K factors, B rows in a batch, L stored entries per
padded row, n rows of a design matrix.

A (user, item) pair is a sparse feature vector x in R^F: one-hot user, one-hot item, and the
side features of both (age band, gender, occupation, genres, user-supplied columns; see
:func:`genrec.data.features.side_features`). Column layout: [users | items | user side | item
side]. The model is

    y_hat(x) = w0 + sum_j w_j x_j + sum_{j<l} <v_j, v_l> x_j x_l

and the pairwise term is computed in O(K n_nz) with Rendle's identity (:func:`fm_pairwise`)

    sum_{j<l} <v_j, v_l> x_j x_l = 1/2 sum_f [ (sum_j v_jf x_j)^2 - sum_j v_jf^2 x_j^2 ].

Objectives (both with the same penalty, applied to the parameters a row uses, as libFM's SGD
does: over the data it is sum_j n_j (lambda_w w_j^2 + lambda_v ||v_j||^2), n_j the number of
training rows with x_j != 0; a bpr triple uses its user's features once and both items'):

* ``regression``: squared error on ratings, sum (r - y_hat)^2; predictions are clipped to the
  rating range.
* ``bpr``: sampled (user, positive, negative) triples, -log sigmoid(y_hat(u,i) - y_hat(u,j))
  (Rendle et al. 2009); model selection on a ranking :class:`~genrec.evaluate.RankingTask`.

Training: shuffled mini-batches, Adam (libFM offers SGD, ALS and MCMC; Adam is our choice, a
named field) or plain SGD; the best epoch on validation is kept (``patience``).

Features that occur in no training row (an item never rated, a side value no training user
has) keep w_j = 0 and v_j = 0 after fitting, so they do not add their random initialisation.
An unknown user or item (index -1 or beyond the fitted counts) contributes no features: the
prediction falls back to w0 plus the other side's terms.

Ranking (``score``): with a_u = sum_{j in user} x_j v_j and b_i likewise, y_hat(u, i) splits
into per-user terms, per-item terms and a_u . b_i, so all items are scored by one matrix
product. The model does not fold in; ``users=None`` scores an unknown user (item terms only).

Side features: ``fit(X, side=SideFeatures)`` with ``use_side_features=True``; the fitted model
stores the user and item feature rows it uses, so ``predict`` works after ``load``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from genrec.data.features import SideFeatures
from genrec.errors import ConfigError, DataError
from genrec.evaluate import RankingTask, RatingTask, evaluate_ranking
from genrec.metrics import rmse
from genrec.models._shallow import (
    KeepBest,
    NegativeSampler,
    check_rating_range,
    check_valid_metric,
    fit_rating_range,
    gather_rows,
    lookup,
    rating_triples,
)
from genrec.models._sparse import sparse_matmul
from genrec.models.base import Capabilities, RatingPredictor, Recommender, as_csr, resolve_device

__all__ = ["FM", "FMConfig", "fm_pairwise", "fm_pairwise_naive", "fm_predict", "fm_padded",
           "fm_penalty", "fm_feature_blocks", "design_matrix", "padded_rows"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FMConfig:
    objective: Literal["regression", "bpr"] = "regression"  # ratings, or pairwise ranking
    n_factors: int = 8  # k, the factor dimension (libFM's default)
    use_side_features: bool = True  # add user/item side features passed to fit(side=...)
    l2_w: float = 0.01  # lambda_w on w_j, per row using feature j
    l2_v: float = 0.01  # lambda_v on v_j, per row using feature j
    optimizer: Literal["adam", "sgd"] = "adam"  # update rule for the mini-batches
    lr: float = 0.001  # step size (per row: the loss is summed over a batch)
    lr_decay: float = 1.0  # the step size is multiplied by this after each epoch
    batch_size: int = 1024  # rows (ratings, or triples for bpr) per step
    epochs: int = 100  # passes over the training rows (the most, with early stopping)
    patience: int = 5  # epochs without validation gain before stopping (0 = never)
    init_std: float = 0.1  # std of the normal initialisation of V (libFM's default)
    valid_metric: str = "ndcg@20"  # bpr: ranking metric selecting the epoch
    clip: bool = True  # regression: clip predict() to the rating range
    rating_range: tuple[float, float] | None = None  # (low, high); None = training min, max
    seed: int = 0  # initialisation, shuffling, negative sampling
    device: str = "auto"  # auto, cpu or cuda[:N]

    def __post_init__(self) -> None:
        if self.n_factors < 1:
            raise ValueError(f"n_factors must be >= 1, got {self.n_factors}")
        if not (0 <= self.l2_w < math.inf and 0 <= self.l2_v < math.inf):
            raise ValueError(f"l2_w and l2_v must be >= 0 and finite, got {self.l2_w}, "
                             f"{self.l2_v}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be > 0 and finite, got {self.lr}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.batch_size < 1 or self.epochs < 1 or self.patience < 0:
            raise ValueError("batch_size and epochs must be >= 1 and patience >= 0")
        if not 0 <= self.init_std < math.inf:
            raise ValueError(f"init_std must be >= 0 and finite, got {self.init_std}")
        check_valid_metric(self.valid_metric)
        check_rating_range(self.rating_range)


# ----------------------------------------------------------------------------- features
def fm_feature_blocks(n_users: int, n_items: int, side: SideFeatures | None
                      ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Each user's and each item's part of the design matrix, in the full feature space.

    Returns ``user_block`` (U, F) = [one-hot user | 0 | user side | 0] and ``item_block``
    (I, F) = [0 | one-hot item | 0 | item side], with F = U + I + Fu + Fi. A design row is
    ``user_block[u] + item_block[i]`` (the two never share a column).
    """
    Fu = 0 if side is None else side.user.shape[1]
    Fi = 0 if side is None else side.item.shape[1]
    eye_u = sp.identity(n_users, np.float32, format="csr")
    eye_i = sp.identity(n_items, np.float32, format="csr")
    us = side.user if side is not None else sp.csr_matrix((n_users, 0), dtype=np.float32)
    its = side.item if side is not None else sp.csr_matrix((n_items, 0), dtype=np.float32)
    ub = sp.hstack([eye_u, sp.csr_matrix((n_users, n_items)), us,
                    sp.csr_matrix((n_users, Fi))], format="csr", dtype=np.float32)
    ib = sp.hstack([sp.csr_matrix((n_items, n_users)), eye_i, sp.csr_matrix((n_items, Fu)),
                    its], format="csr", dtype=np.float32)
    return ub, ib


def design_matrix(users: np.ndarray, items: np.ndarray, user_block: sp.csr_matrix,
                  item_block: sp.csr_matrix) -> sp.csr_matrix:
    """The sparse design matrix (n, F): row k is x for the pair (users[k], items[k]).

    An unknown user or item (index -1 or out of range) contributes an empty part.
    """
    u, ku = lookup(users, user_block.shape[0])
    i, ki = lookup(items, item_block.shape[0])
    Xu = sp.diags(ku.astype(np.float32)) @ user_block[u]  # (n, F)
    Xi = sp.diags(ki.astype(np.float32)) @ item_block[i]  # (n, F)
    X = sp.csr_matrix(Xu + Xi, dtype=np.float32)
    X.eliminate_zeros()
    return X


def padded_rows(block: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR rows as padded (index, value) arrays (R+1, L); the extra last row is empty.

    Padding entries have index 0 and value 0, so they add nothing to sums weighted by value.
    """
    block = sp.csr_matrix(block)
    counts = np.diff(block.indptr)
    L = max(int(counts.max()) if len(counts) else 0, 1)
    R = block.shape[0]
    idx = np.zeros((R + 1, L), np.int64)
    val = np.zeros((R + 1, L), block.dtype if block.dtype.kind == "f" else np.float32)
    pos = np.arange(L)[None, :] < counts[:, None]  # (R, L)
    idx[:R][pos] = block.indices
    val[:R][pos] = block.data
    return torch.from_numpy(idx), torch.from_numpy(val)


# ----------------------------------------------------------------------------- math
def fm_pairwise_naive(X: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """The pairwise term by its definition, sum_{j<l} <v_j, v_l> x_j x_l; X dense (n, F).

    O(n F^2 K): a reference for tests only.
    """
    G = V @ V.T  # (F, F) <v_j, v_l>
    full = torch.einsum("nj,jl,nl->n", X, G, X)  # sum over all (j, l)
    diag = (X * X) @ G.diagonal()  # (n,) the j == l terms
    return 0.5 * (full - diag)


def fm_pairwise(X: sp.csr_matrix, V: torch.Tensor) -> torch.Tensor:
    """The pairwise term by Rendle's O(K n_nz) identity, X a sparse design matrix (n, F)."""
    XV = sparse_matmul(X, V)  # (n, K) sum_j x_j v_jf
    X2 = X.multiply(X).tocsr()
    X2V2 = sparse_matmul(X2, V * V)  # (n, K) sum_j x_j^2 v_jf^2
    return 0.5 * (XV * XV - X2V2).sum(1)  # (n,)


def fm_predict(X: sp.csr_matrix, w0: torch.Tensor, w: torch.Tensor,
               V: torch.Tensor) -> torch.Tensor:
    """y_hat = w0 + x . w + pairwise for every row of the design matrix X (n, F)."""
    return w0 + sparse_matmul(X, w[:, None])[:, 0] + fm_pairwise(X, V)  # (n,)


def fm_padded(idx: torch.Tensor, val: torch.Tensor, w0: torch.Tensor, w: torch.Tensor,
              V: torch.Tensor) -> torch.Tensor:
    """y_hat for padded rows (B, L) of (feature index, value): the identity, batched."""
    Vx = gather_rows(V, idx) * val[..., None]  # (B, L, K) x_j v_j
    s = Vx.sum(1)  # (B, K)
    pair = 0.5 * (s * s - (Vx * Vx).sum(1)).sum(1)  # (B,)
    return w0 + (gather_rows(w, idx) * val).sum(1) + pair  # (B,)


def fm_penalty(idx: torch.Tensor, val: torch.Tensor, w: torch.Tensor, V: torch.Tensor,
               l2_w: float, l2_v: float) -> torch.Tensor:
    """sum over padded rows (B, L) of lambda_w w_j^2 + lambda_v ||v_j||^2 for each feature j the
    row uses (x_j != 0; padding has value 0)."""
    used = (val != 0).float()  # (B, L)
    return (l2_w * (gather_rows(w, idx) ** 2 * used).sum()
            + l2_v * ((gather_rows(V, idx) ** 2).sum(-1) * used).sum())


def _parts(idx: torch.Tensor, val: torch.Tensor, w: torch.Tensor, V: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row sums a = sum_j x_j v_j (R, K) and the row's own terms (R,) (linear + pairwise)."""
    Vx = gather_rows(V, idx) * val[..., None]  # (R, L, K)
    a = Vx.sum(1)  # (R, K)
    own = (gather_rows(w, idx) * val).sum(1) + 0.5 * (a * a - (Vx * Vx).sum(1)).sum(1)  # (R,)
    return a, own


# ----------------------------------------------------------------------------- model
class FM(Recommender, RatingPredictor):
    """Second-order factorization machine over one-hot user/item and side features.

    Attributes
    ----------
    w0_ : Tensor ()
    w_ : Tensor (F,)
    V_ : Tensor (F, K)
    user_block_ : csr_matrix (n_users, F), item_block_ : csr_matrix (n_items, F)
        The users' and items' parts of the design matrix (side features included).
    feature_names_ : list of str
    rating_range_ : (float, float) or None (bpr)
    best_epoch_ : int
    valid_history_ : list of float
        Validation RMSE (regression) or ``valid_metric`` (bpr) per epoch.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> X = sp.csr_matrix(np.array([[5, 4, 0], [4, 0, 1], [0, 2, 1]], np.float32))
    >>> m = FM(n_factors=2, epochs=3, use_side_features=False, device="cpu").fit(X)
    >>> m.predict(np.array([0, -1]), np.array([2, 0])).shape
    (2,)
    """

    name = "fm"
    config_class = FMConfig
    fitted_attributes = ("n_items_", "V_", "user_block_")
    capabilities = Capabilities(task="rating", folds_in=False, side_features=True,
                                predicts_ratings=True, selects_on="rating")

    def selects_on(self) -> str:
        return "rating" if self.config.objective == "regression" else "ranking"

    def __init__(self, config: FMConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.V_: torch.Tensor | None = None
        self.user_block_: sp.csr_matrix | None = None

    def _prepare(self) -> None:
        """Padded rows of the blocks (computed after fit and load)."""
        self._uidx, self._uval = padded_rows(self.user_block_)  # (U+1, Lu)
        self._iidx, self._ival = padded_rows(self.item_block_)  # (I+1, Li)

    def _rows(self, u: np.ndarray, i: np.ndarray, device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded design rows (B, Lu+Li) for index pairs; unknown -> the empty row."""
        u = torch.as_tensor(u)
        i = torch.as_tensor(i)
        idx = torch.cat([self._uidx.to(device)[u], self._iidx.to(device)[i]], 1)
        val = torch.cat([self._uval.to(device)[u], self._ival.to(device)[i]], 1)
        return idx, val

    # ------------------------------------------------------------------ fit
    def fit(self, X, *, valid: RatingTask | RankingTask | None = None,
            side: SideFeatures | None = None) -> FM:
        cfg = self.config
        X = as_csr(X)
        if X.nnz == 0:
            raise DataError("FM needs at least one training interaction")
        self.check_valid_task(valid)
        U, I = X.shape
        if side is not None and cfg.use_side_features:
            if side.user.shape[0] != U or side.item.shape[0] != I:
                raise DataError(f"side features have {side.user.shape[0]} users and "
                                f"{side.item.shape[0]} items; the training matrix {U} x {I}")
        elif cfg.use_side_features:  # the default: use side features when given; none is fine
            log.info("FM: no side features given to fit(); fitting on one-hot users and items")
        use = side if cfg.use_side_features else None
        self.user_block_, self.item_block_ = fm_feature_blocks(U, I, use)
        self.feature_names_ = ([f"user={k}" for k in range(U)] + [f"item={k}" for k in range(I)]
                               + ([] if use is None else use.names))
        self.n_items_, self.n_users_ = I, U
        self._prepare()
        dev = resolve_device(cfg.device)
        F = self.user_block_.shape[1]
        gen = torch.Generator().manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        u_np, i_np, r_np = rating_triples(X)
        regression = cfg.objective == "regression"
        self.rating_range_ = fit_rating_range(r_np, cfg.rating_range) if regression else None
        w0 = torch.tensor(float(r_np.mean()) if regression else 0.0, device=dev)
        w = torch.zeros(F, device=dev)
        V = (torch.randn(F, cfg.n_factors, generator=gen) * cfg.init_std).to(dev)
        params = {"w0": w0, "w": w, "V": V}
        for p in params.values():
            p.requires_grad_(True)
        opt = (torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD)(
            list(params.values()), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay)
        uidx, uval = self._uidx.to(dev), self._uval.to(dev)
        iidx, ival = self._iidx.to(dev), self._ival.to(dev)
        r_all = torch.as_tensor(r_np, device=dev)
        keep = KeepBest(higher_is_better=not regression, patience=cfg.patience)
        n = len(r_np)
        negatives = None if regression else NegativeSampler(X)

        def batch_rows(u: np.ndarray, i: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            ut, it = torch.as_tensor(u, device=dev), torch.as_tensor(i, device=dev)
            return torch.cat([uidx[ut], iidx[it]], 1), torch.cat([uval[ut], ival[it]], 1)

        for epoch in range(1, cfg.epochs + 1):
            perm = torch.randperm(n, generator=gen).numpy()
            total = 0.0
            for start in range(0, n, cfg.batch_size):
                b = perm[start : start + cfg.batch_size]
                idx, val = batch_rows(u_np[b], i_np[b])  # (B, L)
                if regression:
                    err = r_all[torch.as_tensor(b, device=dev)] - fm_padded(idx, val, w0, w, V)
                    loss = (err * err).sum() + fm_penalty(idx, val, w, V, cfg.l2_w, cfg.l2_v)
                else:
                    j = negatives(u_np[b], rng)
                    jdx, jval = batch_rows(u_np[b], j)
                    diff = fm_padded(idx, val, w0, w, V) - fm_padded(jdx, jval, w0, w, V)
                    # the triple's features: the user's once, both items' (user columns first)
                    lu = uidx.shape[1]
                    tidx, tval = torch.cat([idx, jdx[:, lu:]], 1), torch.cat([val, jval[:, lu:]], 1)
                    loss = (-torch.nn.functional.logsigmoid(diff).sum()
                            + fm_penalty(tidx, tval, w, V, cfg.l2_w, cfg.l2_v))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
            sched.step()
            if not math.isfinite(total):
                raise ConfigError(f"FM diverged at epoch {epoch}; lower lr")
            if valid is None:
                log.debug("epoch %d loss %.4f", epoch, total / n)
                continue
            self._publish(params)
            v = self._validate(valid)
            log.info("epoch %d loss %.4f valid %s %.4f", epoch, total / n,
                     "rmse" if isinstance(valid, RatingTask) else self.config.valid_metric, v)
            if keep.update(epoch, v, lambda: params):
                break
        if valid is None:
            self._publish(params)
            self.best_epoch_, self.valid_history_ = cfg.epochs, []
        else:
            self._publish(keep.state)
            self.best_epoch_, self.valid_history_ = keep.best_epoch, keep.history
        # features no training row uses never moved from their initialisation
        Xtr = design_matrix(u_np, i_np, self.user_block_, self.item_block_)
        used = np.bincount(Xtr.indices, minlength=F) > 0
        if not regression:  # every item is drawn as a negative, so its features are trained
            used |= np.bincount(self.item_block_.indices, minlength=F) > 0
        unused = torch.from_numpy(~used)
        self.w_[unused] = 0.0
        self.V_[unused] = 0.0
        return self

    def _publish(self, state: dict[str, torch.Tensor]) -> None:
        self.w0_ = state["w0"].detach().cpu().clone()
        self.w_ = state["w"].detach().cpu().clone()
        self.V_ = state["V"].detach().cpu().clone()

    def _validate(self, valid: RatingTask | RankingTask) -> float:
        if isinstance(valid, RatingTask):
            return rmse(self.predict(valid.users, valid.items), valid.ratings)
        k = int(self.config.valid_metric.split("@")[1])
        res = evaluate_ranking(self, valid, ks=(k,),
                               metrics=(self.config.valid_metric.split("@")[0],))
        return res.metrics[self.config.valid_metric]

    # ------------------------------------------------------------------ predict / score
    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """y_hat (n,) for index pairs; unknown users or items contribute no features."""
        self._check_fitted()
        u, ku = lookup(users, self.n_users_)
        i, ki = lookup(items, self.n_items_)
        if len(u) != len(i):
            raise DataError(f"predict: {len(u)} users but {len(i)} items")
        u = np.where(ku, u, self.n_users_)  # the empty padded row
        i = np.where(ki, i, self.n_items_)
        out = np.empty(len(u), np.float32)
        with torch.no_grad():
            for s in range(0, len(u), 65536):
                idx, val = self._rows(u[s : s + 65536], i[s : s + 65536])
                out[s : s + 65536] = fm_padded(idx, val, self.w0_, self.w_, self.V_).numpy()
        if self.config.clip and self.rating_range_ is not None:
            out = np.clip(out, *self.rating_range_)
        return out

    def score(self, users, X_users) -> torch.Tensor:
        """Unclipped y_hat (B, n_items) by the per-user / per-item split of the model."""
        users, X = self._check_users(users, X_users)
        B = X.shape[0]
        if users is None:
            u = np.full(B, self.n_users_, np.int64)
        else:
            u, ku = lookup(users, self.n_users_)
            u = np.where(ku, u, self.n_users_)
        with torch.no_grad():
            ut = torch.from_numpy(u)
            a_u, own_u = _parts(self._uidx[ut], self._uval[ut], self.w_, self.V_)  # (B, K)
            b_i, own_i = _parts(self._iidx[:-1], self._ival[:-1], self.w_, self.V_)  # (I, K)
            return self.w0_ + own_u[:, None] + own_i[None, :] + a_u @ b_i.T  # (B, I)

    # ------------------------------------------------------------------ state
    def _get_state(self) -> dict[str, np.ndarray]:
        out = {"w0": self.w0_.numpy(), "w": self.w_.numpy(), "V": self.V_.numpy(),
               "feature_names": np.array(self.feature_names_, dtype=str),
               "best_epoch": np.array(self.best_epoch_, np.int64),
               "rating_range": np.array(self.rating_range_ if self.rating_range_ else [],
                                        np.float64)}
        for name, m in (("user_block", self.user_block_), ("item_block", self.item_block_)):
            out[f"{name}_indptr"] = m.indptr.astype(np.int64)
            out[f"{name}_indices"] = m.indices.astype(np.int64)
            out[f"{name}_data"] = m.data.astype(np.float32)
            out[f"{name}_shape"] = np.array(m.shape, np.int64)
        return out

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.w0_ = torch.from_numpy(np.asarray(state["w0"], np.float32))
        self.w_ = torch.from_numpy(state["w"].astype(np.float32))
        self.V_ = torch.from_numpy(state["V"].astype(np.float32))
        self.feature_names_ = [str(x) for x in state["feature_names"]]
        self.best_epoch_ = int(state["best_epoch"])
        self.valid_history_ = []
        rr = state["rating_range"]
        self.rating_range_ = (float(rr[0]), float(rr[1])) if len(rr) == 2 else None
        blocks = {}
        for name in ("user_block", "item_block"):
            shape = tuple(int(x) for x in state[f"{name}_shape"])
            blocks[name] = sp.csr_matrix((state[f"{name}_data"], state[f"{name}_indices"],
                                          state[f"{name}_indptr"]), shape=shape)
        self.user_block_, self.item_block_ = blocks["user_block"], blocks["item_block"]
        self.n_users_ = self.user_block_.shape[0]
        self._prepare()
