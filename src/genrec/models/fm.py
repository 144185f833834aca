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

Training: shuffled mini-batches through the shared :class:`~genrec.train.Trainer`, Adam
(libFM offers SGD, ALS and MCMC; Adam is our choice, a setting) or plain SGD
(``train.optimizer``); the best epoch on validation is kept (``train.patience``): the
validation RMSE for ``regression``, ``train.select_metric`` for ``bpr``. Like the torch
models the FM has ``--resume``, weight averaging (``train.ema_decay``), bf16 and an
exponential learning-rate decay per epoch (``train.lr_decay``).

Features that occur in no training row (an item never rated, a side value no training user
has) keep w_j = 0 and v_j = 0 after fitting, so they do not add their random initialisation.
An unknown user or item (index -1 or beyond the fitted counts) contributes no features: the
prediction falls back to w0 plus the other side's terms.

Ranking (``score``): with a_u = sum_{j in user} x_j v_j and b_i likewise, y_hat(u, i) splits
into per-user terms, per-item terms and a_u . b_i, so all items are scored by one matrix
product. The model does not fold in: ``score`` and ``recommend`` need ``users``, rows of the
training matrix (``users=None`` or an index outside the training users is an error).
Embeddings: a_u for training users (``user_embeddings``) and b_i (``item_embeddings``), the
vectors whose dot product is the user-item interaction term.

Side features: ``fit(X, context=FitContext(side=SideFeatures))`` with
``use_side_features=True``; the fitted model stores the user and item feature rows it uses,
so ``predict`` works after ``load``.

Changed when the FM moved onto the shared trainer: the training settings are nested under
``train`` (``valid_metric`` is ``train.select_metric``, ``patience=0`` is ``None``, ``lr_decay``
is ``train.lr_decay``, set as lr * lr_decay**epoch); the shuffling and the bpr negatives are
drawn from the trainer's torch generator (negatives for a whole epoch at once), and Adam is
the fused kernel, so scores differ from earlier versions for the same seed. Old model.json
files are read through :meth:`FM.upgrade_config`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from genrec.data.features import SideFeatures
from genrec.errors import DataError
from genrec.evaluate import RankingTask, RatingTask
from genrec.models._shallow import (
    NegativeSampler,
    as_train_config,
    check_rating_range,
    fit_rating_range,
    lookup,
    rating_triples,
    train_module,
    upgrade_flat_config,
)
from genrec.models.base import (
    ArraySpec,
    Capabilities,
    RatingPredictor,
    Recommender,
    as_csr,
    resolve_device,
)
from genrec.models.fm_math import (
    design_matrix,
    fm_feature_blocks,
    fm_padded,
    fm_pairwise,
    fm_pairwise_naive,
    fm_penalty,
    fm_predict,
    fm_row_parts,
    padded_rows,
)
from genrec.models.saved import csr_from_state
from genrec.train import (
    BatchContext,
    Chunked,
    FitContext,
    Ratings,
    StepContext,
    TrainConfig,
    Triples,
)

__all__ = [
    "FM",
    "FMConfig",
    "FMNet",
    "fm_pairwise",
    "fm_pairwise_naive",
    "fm_predict",
    "fm_padded",
    "fm_penalty",
    "fm_feature_blocks",
    "design_matrix",
    "padded_rows",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FMConfig:
    objective: Literal["regression", "bpr"] = "regression"  # ratings, or pairwise ranking
    n_factors: int = 8  # k, the factor dimension (libFM's default)
    use_side_features: bool = True  # add user/item side features passed in the FitContext
    l2_w: float = 0.01  # lambda_w on w_j, per row using feature j
    l2_v: float = 0.01  # lambda_v on v_j, per row using feature j
    init_std: float = 0.1  # std of the normal initialisation of V (libFM's default)
    clip: bool = True  # regression: clip predict() to the rating range
    rating_range: tuple[float, float] | None = None  # (low, high); None = training min, max
    # how to train: batch_size counts rows (ratings, or triples for bpr), lr is per summed
    # batch loss; select_metric picks the bpr epoch (regression selects on RMSE); seed drives
    # the initialisation, shuffling and negatives
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=100, batch_size=1024, lr=0.001, patience=5, select_metric="ndcg@20"
        )
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "train", as_train_config(self, "fm"))
        if self.n_factors < 1:
            raise ValueError(f"n_factors must be >= 1, got {self.n_factors}")
        if not (0 <= self.l2_w < math.inf and 0 <= self.l2_v < math.inf):
            raise ValueError(f"l2_w and l2_v must be >= 0 and finite, got {self.l2_w}, {self.l2_v}")
        if not 0 <= self.init_std < math.inf:
            raise ValueError(f"init_std must be >= 0 and finite, got {self.init_std}")
        check_rating_range(self.rating_range)


# ----------------------------------------------------------------------------- model
class FMNet(nn.Module):
    """The FM's parameters: w0 (), w (F,), V (F, K)."""

    def __init__(self, w0: torch.Tensor, w: torch.Tensor, V: torch.Tensor):
        super().__init__()
        self.w0 = nn.Parameter(w0)
        self.w = nn.Parameter(w)
        self.V = nn.Parameter(V)


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
    module_ : FMNet
        The trained parameters (w0_, w_ and V_ are views of them).
    valid_history_ : list of float
        Validation RMSE (regression) or ``train.select_metric`` (bpr) per epoch.
    history_ : list of dict
        The trainer's per-epoch records.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> X = sp.csr_matrix(np.array([[5, 4, 0], [4, 0, 1], [0, 2, 1]], np.float32))
    >>> from genrec.train import TrainConfig
    >>> m = FM(n_factors=2, use_side_features=False,
    ...        train=TrainConfig(epochs=3, device="cpu")).fit(X)
    >>> m.predict(np.array([0, -1]), np.array([2, 0])).shape
    (2,)
    """

    name = "fm"
    config_class = FMConfig
    fitted_attributes = ("n_items_", "module_", "user_block_")
    capabilities = Capabilities(
        task="rating",
        folds_in=False,
        trainer=True,
        side_features=True,
        predicts_ratings=True,
        selects_on="rating",
    )
    keyed_noise: ClassVar[bool] = (
        True  # no noise in train_step: the hook draws it, on every rank alike
    )
    loss_reduction: ClassVar[str] = "sum"  # train_step sums over the batch (lr per summed loss)

    def selects_on(self) -> Literal["ranking", "rating"]:
        return "rating" if self.config.objective == "regression" else "ranking"

    user_block_: sp.csr_matrix  # set by fit and load; absent reads as not fitted
    item_block_: sp.csr_matrix

    def __init__(self, config: FMConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.module_: FMNet | None = None

    def _prepare(self) -> None:
        """Padded rows of the blocks (computed after fit and load)."""
        self._uidx, self._uval = padded_rows(self.user_block_)  # (U+1, Lu)
        self._iidx, self._ival = padded_rows(self.item_block_)  # (I+1, Li)

    def _rows(
        self, u: np.ndarray, i: np.ndarray, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded design rows (B, Lu+Li) for index pairs; unknown -> the empty row."""
        ut = torch.as_tensor(u)
        it = torch.as_tensor(i)
        idx = torch.cat([self._uidx.to(device)[ut], self._iidx.to(device)[it]], 1)
        val = torch.cat([self._uval.to(device)[ut], self._ival.to(device)[it]], 1)
        return idx, val

    # ------------------------------------------------------------------ fit
    @classmethod
    def upgrade_config(cls, values: dict[str, Any]) -> dict[str, Any]:
        """An old model.json config (flat lr, lr_decay, epochs, ..., valid_metric) in the
        nested form."""
        return upgrade_flat_config(values)

    def fit(
        self, X, *, valid: RatingTask | RankingTask | None = None, context: FitContext | None = None
    ) -> FM:
        cfg = self.config
        side: SideFeatures | None = None if context is None else context.side
        X = as_csr(X)
        if X.nnz == 0:
            raise DataError("FM needs at least one training interaction")
        self.check_valid_task(valid)
        U, I = X.shape
        if side is not None and cfg.use_side_features:
            if side.user.shape[0] != U or side.item.shape[0] != I:
                raise DataError(
                    f"side features have {side.user.shape[0]} users and "
                    f"{side.item.shape[0]} items; the training matrix {U} x {I}"
                )
        elif cfg.use_side_features:  # the default: use side features when given; none is fine
            log.info("FM: no side features given to fit(); fitting on one-hot users and items")
        use = side if cfg.use_side_features else None
        self.user_block_, self.item_block_ = fm_feature_blocks(U, I, use)
        self.feature_names_ = (
            [f"user={k}" for k in range(U)]
            + [f"item={k}" for k in range(I)]
            + ([] if use is None else use.names)
        )
        self.n_items_, self.n_users_ = I, U
        self._prepare()
        dev = resolve_device(cfg.train.device)
        F = self.user_block_.shape[1]
        gen = torch.Generator().manual_seed(cfg.train.seed)
        u_np, i_np, r_np = rating_triples(X)
        regression = cfg.objective == "regression"
        self.rating_range_ = fit_rating_range(r_np, cfg.rating_range) if regression else None
        w0 = torch.tensor(float(r_np.mean()) if regression else 0.0)
        V = torch.randn(F, cfg.n_factors, generator=gen) * cfg.init_std  # (F, K)
        module = FMNet(w0, torch.zeros(F), V).to(dev)
        self._data = (torch.from_numpy(u_np), torch.from_numpy(i_np), torch.from_numpy(r_np))
        self._sampler = None if regression else NegativeSampler(X)
        self._padded = tuple(t.to(dev) for t in (self._uidx, self._uval, self._iidx, self._ival))
        try:
            result = train_module(self, module, X, valid, context, cfg.train)
        finally:
            del self._data, self._sampler, self._padded
        net = self.module_
        assert net is not None  # set by train_module, which raised otherwise
        self.module_ = net = net.cpu().requires_grad_(False)
        self.history_ = result.history
        sel = "rmse" if isinstance(valid, RatingTask) else cfg.train.select_metric
        self.valid_history_ = [r["valid"][sel] for r in result.history if "valid" in r]
        self.best_epoch_ = result.best_epoch or result.epochs_run
        # features no training row uses never moved from their initialisation
        Xtr = design_matrix(u_np, i_np, self.user_block_, self.item_block_)
        used = np.bincount(Xtr.indices, minlength=F) > 0
        if not regression:  # every item is drawn as a negative, so its features are trained
            used |= np.bincount(self.item_block_.indices, minlength=F) > 0
        unused = torch.from_numpy(~used)
        net.w[unused] = 0.0
        net.V[unused] = 0.0
        return self

    # ------------------------------------------------------------------ the trainer's side
    def batch_rows(self, X: sp.csr_matrix) -> int:
        return int(X.nnz)

    def batches(self, X: sp.csr_matrix, ctx: BatchContext) -> Chunked[Ratings | Triples]:
        """regression: the ratings in random order; bpr: every training pair once in random
        order, each with one sampled negative."""
        u, i, r = self._data
        dev = ctx.device
        perm = torch.randperm(len(u), generator=ctx.generator)  # (n,)
        if self._sampler is None:
            return Chunked(
                perm,
                ctx.batch_size,
                lambda sel, _: Ratings(u[sel].to(dev), i[sel].to(dev), r[sel].to(dev)),
            )
        j = torch.from_numpy(self._sampler(u[perm].numpy(), ctx.generator))  # (n,)
        return Chunked(
            perm,
            ctx.batch_size,
            lambda sel, s: Triples(u[sel].to(dev), i[sel].to(dev), j[s : s + len(sel)].to(dev)),
        )

    def _batch_rows(self, u: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        uidx, uval, iidx, ival = self._padded
        return torch.cat([uidx[u], iidx[i]], 1), torch.cat([uval[u], ival[i]], 1)  # (B, L)

    def train_step(self, batch: Ratings | Triples, ctx: StepContext) -> dict[str, torch.Tensor]:
        cfg, net = self.config, self.module_
        assert net is not None  # the trainer calls this only while training
        idx, val = self._batch_rows(batch.users, batch.items)  # (B, L)
        if isinstance(batch, Ratings):
            err = batch.ratings - fm_padded(idx, val, net.w0, net.w, net.V)  # (B,)
            loss = (err * err).sum() + fm_penalty(idx, val, net.w, net.V, cfg.l2_w, cfg.l2_v)
            return {"loss": loss}
        jdx, jval = self._batch_rows(batch.users, batch.negatives)
        diff = fm_padded(idx, val, net.w0, net.w, net.V) - fm_padded(
            jdx, jval, net.w0, net.w, net.V
        )  # (B,)
        # the triple's features: the user's once, both items' (user columns first)
        lu = self._padded[0].shape[1]
        tidx, tval = torch.cat([idx, jdx[:, lu:]], 1), torch.cat([val, jval[:, lu:]], 1)
        loss = -torch.nn.functional.logsigmoid(diff).sum() + fm_penalty(
            tidx, tval, net.w, net.V, cfg.l2_w, cfg.l2_v
        )
        return {"loss": loss}

    # ------------------------------------------------------------------ fitted parameters
    @property
    def w0_(self) -> torch.Tensor | None:
        return None if self.module_ is None else self.module_.w0.detach()

    @property
    def w_(self) -> torch.Tensor | None:
        return None if self.module_ is None else self.module_.w.detach()

    @property
    def V_(self) -> torch.Tensor | None:
        return None if self.module_ is None else self.module_.V.detach()

    def _fitted_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(w0_, w_, V_) of a model checked to be fitted."""
        w0, w, V = self.w0_, self.w_, self.V_
        assert w0 is not None and w is not None and V is not None  # module_ is set
        return w0, w, V

    # ------------------------------------------------------------------ predict / score
    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """y_hat (n,) for index pairs; unknown users or items contribute no features."""
        self._check_fitted()
        assert self.n_items_ is not None  # _check_fitted
        u, ku = lookup(users, self.n_users_)
        i, ki = lookup(items, self.n_items_)
        if len(u) != len(i):
            raise DataError(f"predict: {len(u)} users but {len(i)} items")
        u = np.where(ku, u, self.n_users_)  # the empty padded row
        i = np.where(ki, i, self.n_items_)
        out = np.empty(len(u), np.float32)
        w0, w, V = self._fitted_params()
        dev = w.device
        with torch.no_grad():
            for s in range(0, len(u), 65536):
                idx, val = self._rows(u[s : s + 65536], i[s : s + 65536], dev)
                out[s : s + 65536] = fm_padded(idx, val, w0, w, V).cpu().numpy()
        if self.config.clip and self.rating_range_ is not None:
            out = np.clip(out, *self.rating_range_)
        return out

    def score(self, users, X_users) -> torch.Tensor:
        """Unclipped y_hat (B, n_items) of training users ``users``, by the per-user /
        per-item split of the model."""
        users, X = self._check_users(users, X_users)
        assert users is not None  # refused for a model that does not fold in
        w0 = self._fitted_params()[0]
        with torch.no_grad():
            a_u, own_u = self._row_parts(self._uidx, self._uval, torch.from_numpy(users))
            b_i, own_i = self._row_parts(self._iidx, self._ival, None)  # (I, K), (I,)
            return w0 + own_u[:, None] + own_i[None, :] + a_u @ b_i.T  # (B, I)

    def _row_parts(
        self, idx: torch.Tensor, val: torch.Tensor, rows: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``fm_row_parts`` of the padded design rows ``rows`` (every row but the empty last
        one when None): (R, K) factor sums and (R,) own terms, on the model's device."""
        _, w, V = self._fitted_params()
        idx, val = (idx[:-1], val[:-1]) if rows is None else (idx[rows], val[rows])
        return fm_row_parts(idx.to(w.device), val.to(w.device), w, V)

    def user_embeddings(self, X_users: Any, users: np.ndarray | None = None) -> np.ndarray:
        """a_u = sum_j x_j v_j over the user's features (B, K), for training users ``users``
        (``X_users`` their rows, checked as ``score`` checks them)."""
        u = self._embedding_users(X_users, users)
        with torch.no_grad():
            a_u, _ = self._row_parts(self._uidx, self._uval, torch.from_numpy(u))
        return a_u.float().cpu().numpy()

    def item_embeddings(self) -> np.ndarray:
        """b_i = sum_j x_j v_j over each item's features (I, K)."""
        self._check_fitted()
        with torch.no_grad():
            b_i, _ = self._row_parts(self._iidx, self._ival, None)
        return b_i.float().cpu().numpy()

    # ------------------------------------------------------------------ state
    def _get_state(self) -> dict[str, np.ndarray]:
        w0, w, V = self._fitted_params()
        out = {
            "w0": w0.cpu().numpy(),
            "w": w.cpu().numpy(),
            "V": V.cpu().numpy(),
            "feature_names": np.array(self.feature_names_, dtype=str),
            "best_epoch": np.array(self.best_epoch_, np.int64),
            "rating_range": np.array(self.rating_range_ if self.rating_range_ else [], np.float64),
        }
        for name, m in (("user_block", self.user_block_), ("item_block", self.item_block_)):
            out[f"{name}_indptr"] = m.indptr.astype(np.int64)
            out[f"{name}_indices"] = m.indices.astype(np.int64)
            out[f"{name}_data"] = m.data.astype(np.float32)
            out[f"{name}_shape"] = np.array(m.shape, np.int64)
        return out

    def state_arrays(self) -> dict[str, ArraySpec]:
        out = {
            "w0": ArraySpec(()),
            "w": ArraySpec(("n_features",)),
            "V": ArraySpec(("n_features", self.config.n_factors)),
            "feature_names": ArraySpec(("n_features",), "U"),
            "best_epoch": ArraySpec((), "i"),
            "rating_range": ArraySpec((None,)),  # (2,), or (0,) without one
        }
        for name, rows in (("user_block", None), ("item_block", self.n_items_ + 1)):
            out[f"{name}_indptr"] = ArraySpec((rows,), "i")
            out[f"{name}_indices"] = ArraySpec((f"{name}_nnz",), "i")
            out[f"{name}_data"] = ArraySpec((f"{name}_nnz",))
            out[f"{name}_shape"] = ArraySpec((2,), "i")
        return out

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        blocks = {name: csr_from_state(state, f"{name}_") for name in ("user_block", "item_block")}
        F = len(state["w"])
        if blocks["item_block"].shape != (self.n_items_, F) or blocks["user_block"].shape[1] != F:
            raise DataError(
                f"{self.name}: arrays user_block_shape and item_block_shape do not match "
                f"the {self.n_items_} items and the {F} features of 'w'; save the model again"
            )
        if len(state["rating_range"]) not in (0, 2):
            raise DataError(f"{self.name}: array 'rating_range' must hold 0 or 2 values")
        self.module_ = (
            FMNet(
                torch.from_numpy(np.asarray(state["w0"], np.float32)),
                torch.from_numpy(state["w"].astype(np.float32)),
                torch.from_numpy(state["V"].astype(np.float32)),
            )
            .requires_grad_(False)
            .eval()
        )
        self.feature_names_ = [str(x) for x in state["feature_names"]]
        self.best_epoch_ = int(state["best_epoch"])
        self.valid_history_ = []
        rr = state["rating_range"]
        self.rating_range_ = (float(rr[0]), float(rr[1])) if len(rr) == 2 else None
        self.user_block_, self.item_block_ = blocks["user_block"], blocks["item_block"]
        self.n_users_ = self.user_block_.shape[0]
        self._prepare()
