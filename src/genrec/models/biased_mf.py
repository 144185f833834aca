"""Biased matrix factorization for explicit ratings (Koren, Bell & Volinsky, IEEE Computer 2009).

Dimensions: U users, I items, K factors, B ratings in a mini-batch, R rows in an ALS block,
L the longest row of the block.

Model: a rating is the global mean plus a user and an item bias plus a dot product,

    r_hat_ui = mu + b_u + b_i + p_u . q_i

Objective (both solvers minimize the same function; mu is the training mean, fixed):

    sum_{(u,i) observed} (r_ui - r_hat_ui)^2
      + sum_u c_u (lambda_b b_u^2 + lambda ||p_u||^2)
      + sum_i c_i (lambda_b b_i^2 + lambda ||q_i||^2)

with c_u = n_u, the user's number of training ratings, for ``l2_weighting="count"`` (the
penalty Funk's per-rating SGD applies, and ALS-WR's, Zhou et al. 2008), or c_u = 1 for
``"uniform"`` (a plain L2 norm).

Solvers
-------
``sgd``: SGD over shuffled ratings. Each rating (u, i) with error e = r_ui - r_hat_ui moves

    b_u += lr (e - lambda_b s_u b_u),  p_u += lr (e q_i - lambda s_u p_u)   (items alike)

where s_u = c_u / n_u is the rating's share of the penalty. A mini-batch of ``batch_size``
ratings applies these updates at once from the same parameters (so two ratings of one user in a
batch add up); ``batch_size=1`` is Funk's sequential SGD. The step size is multiplied by
``lr_decay`` after each epoch. These are plain SGD steps on :func:`sgd_loss` (half the
objective's terms of the batch's ratings), taken by the shared :class:`~genrec.train.Trainer`
(``train.optimizer``: ``sgd`` by default, ``adam`` as an option), so the SGD solver has
``--resume``, weight averaging (``train.ema_decay``), bf16 and the trainer's early stopping;
:func:`sgd_step` is the same update written out, the reference the tests compare with.

``als``: alternating exact minimization. With the items fixed, each user's (b_u, p_u) solves a
(K+1)-dimensional ridge regression, the normal equations

    (A_u^T A_u + c_u diag(lambda_b, lambda, ..., lambda)) [b_u; p_u] = A_u^T (r_u - mu - b_items)

where A_u stacks the rows [1, q_i] of the items u rated; then the items with the users fixed
(:func:`als_half_step`, one Cholesky solve per row, rows batched by length).

Model selection: given a validation :class:`~genrec.evaluate.RatingTask`, the validation RMSE is
computed after every epoch (sweep); the parameters of the best epoch are kept (``best_epoch_``)
and training stops after ``patience`` epochs without improvement. A final refit on all the
training ratings with ``epochs=best_epoch_`` and no ``valid`` is the usual next step.

Prediction is clipped to the rating range (``rating_range``, or the training minimum and
maximum). Users or items without training ratings have zero factors and biases after fitting
(their random initialisation was never updated). Unknown users or items (index -1 or beyond
the fitted counts) drop their terms: unknown user mu + b_i, unknown item mu + b_u, both mu.

Ranking (``score``): unclipped predicted ratings of every item (clipping would tie the top of
the ranking). The model does not fold in: ``score`` and ``recommend`` need ``users``, rows of
the training matrix (``users=None`` or an index outside the training users is an error;
``predict`` gives such a user mu + b_i). Embeddings: ``user_embeddings`` are the factors p_u
of training users, ``item_embeddings`` the q_i (the biases are not part of them).

Departures from the paper: Koren et al. use per-rating SGD; the mini-batch updates and the ALS
solver are additions (named config fields). The ``uniform`` penalty is an option, not the paper.

Changed when the SGD solver moved onto the shared trainer: lr, lr_decay, batch_size, epochs,
patience (None for "never"), seed and device are nested under ``train`` (ALS, still a direct
fit, reads ``train.epochs``, ``.patience``, ``.seed`` and ``.device``); the trainer's generator
shuffles the ratings and autograd computes the updates (summed in another order), so SGD scores
differ from earlier versions in the last digits for the same seed. Old model.json files are
read through :meth:`BiasedMF.upgrade_config`.
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

from genrec.errors import DataError
from genrec.evaluate import RatingTask
from genrec.metrics import rmse
from genrec.models._shallow import (
    KeepBest,
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
from genrec.models.biased_mf_math import als_half_step, mf_predict, sgd_loss, sgd_step
from genrec.train import BatchContext, Chunked, FitContext, Ratings, StepContext, TrainConfig

__all__ = [
    "BiasedMF",
    "BiasedMFConfig",
    "BiasedMFNet",
    "als_half_step",
    "sgd_step",
    "sgd_loss",
    "mf_predict",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BiasedMFConfig:
    n_factors: int = 100  # K, the latent dimension (Surprise's SVD default)
    solver: Literal["sgd", "als"] = "sgd"  # SGD over shuffled ratings, or alternating LS
    l2: float = 0.02  # lambda, the L2 weight on p_u and q_i
    l2_bias: float = 0.02  # lambda_b, the L2 weight on b_u and b_i
    l2_weighting: Literal["count", "uniform"] = "count"  # c_u = n_u (per rating) or 1
    init_std: float = 0.1  # standard deviation of the normal initialisation of P and Q
    clip: bool = True  # clip predict() to the rating range
    rating_range: tuple[float, float] | None = None  # (low, high); None = training min, max
    # how to train: lr is the SGD step size gamma, lr_decay multiplies it after each epoch,
    # batch_size counts ratings per step (1 = Funk's sequential SGD), epochs counts SGD
    # epochs or ALS sweeps, patience epochs without validation gain (None = never stop);
    # seed drives the initialisation and shuffling. ALS reads epochs, patience, seed, device.
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=20, batch_size=256, lr=0.005, optimizer="sgd", patience=5
        )
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "train", as_train_config(self, "biased-mf"))
        if self.n_factors < 1:
            raise ValueError(f"n_factors must be >= 1, got {self.n_factors}")
        for name in ("l2", "l2_bias"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be >= 0 and finite, got {getattr(self, name)}")
        if self.solver == "als" and not (self.l2 > 0 and self.l2_bias > 0):
            raise ValueError(
                "solver als needs l2 > 0 and l2_bias > 0 (the normal equations "
                "of a user with few ratings are singular otherwise)"
            )
        if not 0 <= self.init_std < math.inf:
            raise ValueError(f"init_std must be >= 0 and finite, got {self.init_std}")
        check_rating_range(self.rating_range)


# ----------------------------------------------------------------------------- model
class BiasedMFNet(nn.Module):
    """The parameters: biases bu (U,), bi (I,) and factors P (U, K), Q (I, K)."""

    def __init__(self, bu: torch.Tensor, bi: torch.Tensor, P: torch.Tensor, Q: torch.Tensor):
        super().__init__()
        self.bu, self.bi = nn.Parameter(bu), nn.Parameter(bi)
        self.P, self.Q = nn.Parameter(P), nn.Parameter(Q)


class BiasedMF(Recommender, RatingPredictor):
    """Biased matrix factorization r_hat = mu + b_u + b_i + p_u . q_i (SGD or ALS).

    Attributes
    ----------
    mu_ : float
        Global mean of the training ratings.
    module_ : BiasedMFNet
        The fitted parameters; the attributes below are views of them.
    user_bias_ : Tensor (n_users,), item_bias_ : Tensor (n_items,)
    user_factors_ : Tensor (n_users, K), item_factors_ : Tensor (n_items, K)
    rating_range_ : (float, float)
        Predictions are clipped to it.
    best_epoch_ : int
        Epoch (sweep) whose parameters were kept: the best on validation, else the last.
    valid_rmse_ : list of float
        Validation RMSE after each epoch (empty without ``valid``).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from genrec.train import TrainConfig
    >>> X = sp.csr_matrix(np.array([[5, 4, 0], [4, 0, 1], [0, 2, 1]], np.float32))
    >>> m = BiasedMF(n_factors=2, solver="als", train=TrainConfig(epochs=5)).fit(X)
    >>> m.predict(np.array([0, -1]), np.array([2, 0])).shape
    (2,)
    """

    name = "biased-mf"
    config_class = BiasedMFConfig
    fitted_attributes = ("n_items_", "module_")
    #: ALS fits directly and ignores the trainer's FitContext
    capabilities = Capabilities(
        task="rating", folds_in=False, trainer=True, predicts_ratings=True, selects_on="rating"
    )
    keyed_noise: ClassVar[bool] = (
        True  # no noise in train_step: the hook draws it, on every rank alike
    )
    loss_reduction: ClassVar[str] = "sum"  # train_step sums over the batch (lr per summed loss)

    def __init__(self, config: BiasedMFConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.module_: BiasedMFNet | None = None
        self._unrated: tuple[torch.Tensor, torch.Tensor] | None = None  # (U,), (I,) masks

    @classmethod
    def upgrade_config(cls, values: dict[str, Any]) -> dict[str, Any]:
        """An old model.json config (flat lr, lr_decay, batch_size, epochs, patience, seed,
        device) in the nested form."""
        return upgrade_flat_config(values)

    # ------------------------------------------------------------------ fit
    def fit(
        self, X, *, valid: RatingTask | None = None, context: FitContext | None = None
    ) -> BiasedMF:
        cfg = self.config
        X = as_csr(X)
        if X.nnz == 0:
            raise DataError("BiasedMF needs at least one training rating")
        self.check_valid_task(valid)
        dev = resolve_device(cfg.train.device)
        U, I = X.shape
        K = cfg.n_factors
        u_np, i_np, r_np = rating_triples(X)
        self.rating_range_ = fit_rating_range(r_np, cfg.rating_range)
        self.n_items_, self.n_users_ = I, U
        gen = torch.Generator().manual_seed(cfg.train.seed)
        self.mu_ = float(r_np.mean())
        P = torch.randn(U, K, generator=gen) * cfg.init_std  # (U, K)
        Q = torch.randn(I, K, generator=gen) * cfg.init_std  # (I, K)
        module = BiasedMFNet(torch.zeros(U), torch.zeros(I), P, Q).to(dev)
        # rows never updated keep their random initialisation: they read as zero (= the
        # fallback) during training, and are zeroed after it
        n_u = np.bincount(u_np, minlength=U)
        n_i = np.bincount(i_np, minlength=I)
        self._unrated = (torch.from_numpy(n_u == 0), torch.from_numpy(n_i == 0))
        try:
            if cfg.solver == "sgd":
                self._fit_sgd(X, module, u_np, i_np, r_np, n_u, n_i, valid, context)
            else:
                self._fit_als(X, module, valid)
        except BaseException:
            self.module_ = None
            raise
        finally:
            no_u, no_i = self._unrated
            self._unrated = None
        assert self.module_ is not None  # set by the solver, which raised otherwise
        with torch.no_grad():
            self.module_ = net = self.module_.cpu().requires_grad_(False)
            net.P.masked_fill_(no_u[:, None], 0.0)
            net.Q.masked_fill_(no_i[:, None], 0.0)
        return self

    def _fit_sgd(
        self,
        X: sp.csr_matrix,
        module: BiasedMFNet,
        u: np.ndarray,
        i: np.ndarray,
        r: np.ndarray,
        n_u: np.ndarray,
        n_i: np.ndarray,
        valid: RatingTask | None,
        context: FitContext | None,
    ) -> None:
        cfg = self.config
        dev = module.P.device
        self._ratings = (torch.from_numpy(u), torch.from_numpy(i), torch.from_numpy(r))
        if cfg.l2_weighting == "count":
            self._shares = torch.ones(len(n_u), device=dev), torch.ones(len(n_i), device=dev)
        else:
            self._shares = (
                torch.from_numpy(1 / np.maximum(n_u, 1)).float().to(dev),
                torch.from_numpy(1 / np.maximum(n_i, 1)).float().to(dev),
            )
        try:
            result = train_module(self, module, X, valid, context, cfg.train)
        finally:
            del self._ratings, self._shares
        self.best_epoch_ = result.best_epoch or result.epochs_run
        self.valid_rmse_ = [rec["valid"]["rmse"] for rec in result.history if "valid" in rec]
        self.history_ = result.history

    def _fit_als(self, X: sp.csr_matrix, module: BiasedMFNet, valid: RatingTask | None) -> None:
        cfg = self.config
        patience = cfg.train.patience
        keep = KeepBest(higher_is_better=False, patience=0 if patience is None else patience)
        Xt = X.T.tocsr()
        P, Q, bu, bi = module.P.data, module.Q.data, module.bu.data, module.bi.data
        mu = self.mu_
        for epoch in range(1, cfg.train.epochs + 1):
            P, bu = als_half_step(X, Q, bi, mu, cfg.l2, cfg.l2_bias, cfg.l2_weighting)
            Q, bi = als_half_step(Xt, P, bu, mu, cfg.l2, cfg.l2_bias, cfg.l2_weighting)
            self.module_ = net = BiasedMFNet(bu, bi, P, Q).requires_grad_(False)
            if valid is None:
                continue
            v = rmse(self.predict(valid.users, valid.items), valid.ratings)
            log.info("epoch %d valid rmse %.4f", epoch, v)
            if keep.update(epoch, v, net.state_dict):
                break
        if valid is None or not keep.state:
            self.best_epoch_, self.valid_rmse_ = cfg.train.epochs, keep.history
        else:  # keep.state is set, so an epoch ran and module_ is set
            net.load_state_dict(keep.state)
            self.best_epoch_, self.valid_rmse_ = keep.best_epoch, keep.history
        self.history_ = []

    # ------------------------------------------------------------------ the trainer's side
    def batch_rows(self, X: sp.csr_matrix) -> int:
        return int(X.nnz)

    def batches(self, X: sp.csr_matrix, ctx: BatchContext) -> Chunked[Ratings]:
        """The training ratings in random order."""
        u, i, r = self._ratings
        dev = ctx.device
        perm = torch.randperm(len(u), generator=ctx.generator)  # (n,)
        return Chunked(
            perm,
            ctx.batch_size,
            lambda sel, _: Ratings(u[sel].to(dev), i[sel].to(dev), r[sel].to(dev)),
        )

    def train_step(self, batch: Ratings, ctx: StepContext) -> dict[str, torch.Tensor]:
        cfg, net = self.config, self.module_
        assert net is not None  # the trainer calls this only while training
        loss, e = sgd_loss(
            self.mu_,
            net.bu,
            net.bi,
            net.P,
            net.Q,
            batch.users,
            batch.items,
            batch.ratings,
            cfg.l2,
            cfg.l2_bias,
            *self._shares,
        )
        return {"loss": loss, "train_mse": (e * e).mean()}

    # ------------------------------------------------------------------ fitted parameters
    def _table(self, t: torch.Tensor, side: int) -> torch.Tensor:
        t = t.detach()
        if self._unrated is not None:  # during training: unrated rows read as zero
            mask = self._unrated[side].to(t.device)
            t = t.masked_fill(mask[:, None] if t.dim() == 2 else mask, 0.0)
        return t

    @property
    def user_bias_(self) -> torch.Tensor | None:
        return None if self.module_ is None else self.module_.bu.detach()

    @property
    def item_bias_(self) -> torch.Tensor | None:
        return None if self.module_ is None else self.module_.bi.detach()

    @property
    def user_factors_(self) -> torch.Tensor | None:
        return None if self.module_ is None else self._table(self.module_.P, 0)

    @property
    def item_factors_(self) -> torch.Tensor | None:
        return None if self.module_ is None else self._table(self.module_.Q, 1)

    def _fitted_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(user_bias_, item_bias_, user_factors_, item_factors_) of a fitted model."""
        bu, bi, P, Q = self.user_bias_, self.item_bias_, self.user_factors_, self.item_factors_
        assert bu is not None and bi is not None and P is not None and Q is not None
        return bu, bi, P, Q

    # ------------------------------------------------------------------ predict / score
    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings (n,) for index pairs; unknown users/items fall back to biases."""
        self._check_fitted()
        assert self.n_items_ is not None  # _check_fitted
        u, ku = lookup(users, self.n_users_)
        i, ki = lookup(items, self.n_items_)
        if len(u) != len(i):
            raise DataError(f"predict: {len(u)} users but {len(i)} items")
        bu, bi, P, Q = self._fitted_params()
        dev = bi.device
        with torch.no_grad():
            pred = (
                mf_predict(
                    self.mu_, bu, bi, P, Q, *(torch.from_numpy(a).to(dev) for a in (u, i, ku, ki))
                )
                .cpu()
                .numpy()
            )
        if self.config.clip:
            pred = np.clip(pred, *self.rating_range_)
        return pred.astype(np.float32)

    def score(self, users, X_users) -> torch.Tensor:
        """Unclipped predicted ratings (B, n_items) of training users ``users``."""
        users, X = self._check_users(users, X_users)
        assert users is not None  # refused for a model that does not fold in
        bu, bi, P, Q = self._fitted_params()
        dev = bi.device
        u_t = torch.from_numpy(users).to(dev)  # (B,)
        with torch.no_grad():
            personal = bu[u_t][:, None] + P[u_t] @ Q.T  # (B, I), summed first (as saved)
            return self.mu_ + bi[None, :] + personal  # (B, I)

    def user_embeddings(self, X_users: Any, users: np.ndarray | None = None) -> np.ndarray:
        """The user factors p_u (B, K) of training users ``users`` (``X_users`` their rows,
        checked as ``score`` checks them)."""
        u = self._embedding_users(X_users, users)
        P = self._fitted_params()[2]
        return P[torch.from_numpy(u).to(P.device)].float().cpu().numpy()

    def item_embeddings(self) -> np.ndarray:
        """The item factors q_i (I, K), without the item bias."""
        self._check_fitted()
        return self._fitted_params()[3].float().cpu().numpy()

    # ------------------------------------------------------------------ state
    def _get_state(self) -> dict[str, np.ndarray]:
        bu, bi, P, Q = self._fitted_params()
        return {
            "mu": np.array(self.mu_, np.float64),
            "user_bias": bu.cpu().numpy(),
            "item_bias": bi.cpu().numpy(),
            "user_factors": P.cpu().numpy(),
            "item_factors": Q.cpu().numpy(),
            "rating_range": np.array(self.rating_range_, np.float64),
            "best_epoch": np.array(self.best_epoch_, np.int64),
        }

    def state_arrays(self) -> dict[str, ArraySpec]:
        I, k = self.n_items_, self.config.n_factors
        return {
            "mu": ArraySpec(()),
            "user_bias": ArraySpec(("n_users",)),
            "item_bias": ArraySpec((I,)),
            "user_factors": ArraySpec(("n_users", k)),
            "item_factors": ArraySpec((I, k)),
            "rating_range": ArraySpec((2,)),
            "best_epoch": ArraySpec((), "i"),
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.mu_ = float(state["mu"])
        self.module_ = net = BiasedMFNet(
            *(
                torch.from_numpy(state[k].astype(np.float32))
                for k in ("user_bias", "item_bias", "user_factors", "item_factors")
            )
        ).requires_grad_(False)
        low, high = (float(x) for x in state["rating_range"])
        self.rating_range_ = (low, high)
        self.best_epoch_ = int(state["best_epoch"])
        self.valid_rmse_ = []
        self.n_users_ = len(net.P)
