"""AutoRec: autoencoders meet collaborative filtering (Sedhain, Menon, Sanner & Xie, WWW 2015).

Dimensions: U users, I items, N rows (items for I-AutoRec, users for U-AutoRec), D their
length (users for I-AutoRec, items for U-AutoRec), H hidden units, B rows in a batch.

I-AutoRec (``variant="item"``, the paper's best) encodes each item's partially observed
vector of ratings r^(i) in R^U and reconstructs it; U-AutoRec (``variant="user"``) does the
same with each user's vector over items. With h(r) = g(W f(V r + mu) + b),

    min_{W, V, mu, b}  sum_rows || r - h(r) ||^2_O  +  lambda/2 (||W||_F^2 + ||V||_F^2)

where ||.||^2_O sums over the observed entries only: unobserved entries are 0 in the input and
give no gradient (:func:`masked_sse`). f is the sigmoid and g the identity by default (the
paper's best ablation); H = 500. The prediction of rating (u, i) is h(r^(i))_u (I-AutoRec) or
h(r^(u))_i (U-AutoRec), clipped to the rating range. A user or item with no training rating
gets the default rating (the paper's 3 on a 1-5 scale: the range midpoint).

Optimization: full-batch L-BFGS (the paper's; strong-Wolfe line search) or Rprop, computed in
row chunks so memory stays bounded; or mini-batch Adam (a common re-implementation choice).
Given a validation :class:`~genrec.evaluate.RatingTask`, the validation RMSE is checked every
``eval_every`` iterations; the best weights are kept (``best_epoch_``) and training stops after
``patience`` checks without improvement.

State: predictions need the training vectors as input, so the fitted model keeps the training
matrix (``train_``) beside the weights and saves both.

Ranking (``score``): unclipped predicted ratings. I-AutoRec does not fold in: it reads the
user's column of the reconstruction, so ``score`` and ``recommend`` need ``users``, rows of the
training matrix (``users=None`` or an index outside the training users is an error).
U-AutoRec scores from ``X_users`` (it folds in: :meth:`AutoRec.folds_in` answers by
variant); ``capabilities.folds_in`` is False because the item variant cannot.

Embeddings: the hidden codes f(V r + mu) (H,) of the rows the network encodes: items for
I-AutoRec (``item_embeddings``, from their training columns), users for U-AutoRec
(``user_embeddings``, from the given histories). The other side has none.

Input normalisation (``input_norm``, an addition; off by default): with ``input_norm = c > 0``
each input row is rescaled to L2 norm c before the encoder, r -> c r / ||r|| (an all-zero row
stays zero), at training and at prediction alike; the reconstruction target stays the raw
ratings and the loss is unchanged. Zero-filled rows of popular items have a much larger norm than
those of rare items, so under one weight decay the raw input likely lets the codes of rare items
collapse towards a constant (our reading, not tested); the rescaled input gives every item the
same input scale. On ML-100K u1 (validation slice of u1.base, seed 0) c = 20 with
lambda = 150 lowers the validation RMSE from 0.891 (raw input, lambda = 300) to 0.885 (test
numbers: benchmarks/results/ratings.md); c and lambda interact (c scales the encoder's
effective weight decay), so tune them together.

Input dropout (``input_dropout = p``, an addition; off by default; Rprop or Adam only): at
every training step each entry of the (rescaled) input is zeroed with probability p and the
rest scaled by 1/(1-p), a fresh mask per step (``nn_blocks.dropout_values``, as in denoising
autoencoders); the targets and the observed-entry loss are unchanged and prediction uses the
full input. L-BFGS is refused with it: its line search needs one fixed objective. With
``input_norm = 20`` under full-batch Rprop, p in {0.3, 0.4, 0.5} with lambda 100, 80, 60 gives
validation RMSE 0.8835-0.8840 on ML-100K u1 (seeds 0 and 1), against 0.885 for the L-BFGS
setting above; dropout regularises, so it wants a smaller lambda.

Configuration: AutoRec has no nested ``train`` config (a :class:`genrec.train.TrainConfig`),
by decision. It is not run by the shared trainer: its loop is full-batch L-BFGS or Rprop
(Adam is the one mini-batch option), validates by rating RMSE rather than a ranking metric,
and counts ``epochs`` and ``eval_every`` in optimizer iterations. Its ``optimizer`` choices
(``lbfgs``, ``rprop``, ``adam``) are not TrainConfig's (``adam``, ``adamw``, ``sgd``), its
``lr`` default depends on the optimizer and ``batch_size = 0`` means the full batch, while
TrainConfig's ``grad_clip``, ``ema_decay``, ``select_metric``, ``precision`` and
``eval_batch_size`` would have no effect here. So its loop settings stay flat fields of
:class:`AutoRecConfig` with their own meanings (``--set epochs=N`` for AutoRec), and
``--device`` / ``--seed`` set its flat ``device`` and ``seed``.

Departures from the paper: Adam, ``input_norm`` and ``input_dropout`` are additions; the weight
initialisation (uniform +-1/sqrt(fan_in), PyTorch's) is not specified in the paper. The paper
tunes lambda in {0.001, 0.01, 0.1, 1, 100, 1000} without naming the winner; the default 300 is
what validation chose on ML-100K (u1 and five random 90/10 splits). lambda multiplies a
penalty set against the squared error summed over all training ratings, so larger data sets
want larger values.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from typing_extensions import Self

from genrec.config import Range, check_ranges, valid_device_name
from genrec.errors import DataError, DivergenceError
from genrec.evaluate import RatingTask
from genrec.metrics import rmse
from genrec.models._shallow import KeepBest, check_rating_range, fit_rating_range, lookup
from genrec.models._sparse import csr_to_dense
from genrec.models.autorec_net import (
    AutoRecNet,
    autorec_objective,
    masked_sse,
    rescale_rows,
)
from genrec.models.base import (
    ArraySpec,
    Capabilities,
    RatingPredictor,
    Recommender,
    as_csr,
    resolve_device,
)
from genrec.models.nn_blocks import dropout_values, linear_arrays
from genrec.models.saved import csr_from_state

__all__ = [
    "AutoRec",
    "AutoRecConfig",
    "AutoRecNet",
    "masked_sse",
    "autorec_objective",
    "rescale_rows",
]

log = logging.getLogger(__name__)

Activation = Literal["sigmoid", "identity", "relu", "tanh", "elu"]
_DEFAULT_LR = {"lbfgs": 1.0, "rprop": 0.01, "adam": 1e-3}
_CHUNK = 1 << 23  # entries per dense row chunk (memory bound of a forward pass)


@dataclass(frozen=True)
class AutoRecConfig:
    variant: Literal["item", "user"] = "item"  # I-AutoRec (paper's best) or U-AutoRec
    hidden: Annotated[int, Range(ge=1)] = 500  # k, the hidden units
    # lambda in lambda/2 (||W||^2 + ||V||^2); tuned, 300 on ML-100K valid
    l2: Annotated[float, Range(ge=0)] = 300.0
    encoder: Activation = "sigmoid"  # f
    decoder: Activation = "identity"  # g
    optimizer: Literal["lbfgs", "rprop", "adam"] = "lbfgs"  # paper: L-BFGS or Rprop
    # step size; None = 1.0 (lbfgs), 0.01 (rprop), 1e-3 (adam)
    lr: Annotated[float | None, Range(gt=0)] = None
    # adam: rows per step; 0 = full batch (lbfgs and rprop always are)
    batch_size: Annotated[int, Range(ge=0)] = 0
    # iterations (full-batch steps), or passes over the rows for adam
    epochs: Annotated[int, Range(ge=1)] = 500
    eval_every: Annotated[int, Range(ge=1)] = 10  # iterations between validation checks
    # validation checks without gain before stopping (0 = never)
    patience: Annotated[int, Range(ge=0)] = 5
    # rating for unseen users/items; None = range midpoint
    default_rating: Annotated[float | None, Range()] = None
    clip: bool = True  # clip predict() to the rating range
    # not in the paper: rescale each input row to this L2 norm (0 = raw ratings, the paper's);
    # targets stay raw. 20 with l2=150 is what validation chose on ML-100K u1
    input_norm: Annotated[float, Range(ge=0)] = 0.0
    # not in the paper: drop each input entry with this probability at every training step
    # (kept ones scaled by 1/(1-p); after input_norm; targets stay raw). rprop/adam only
    input_dropout: Annotated[float, Range(ge=0, lt=1)] = 0.0
    rating_range: tuple[float, float] | None = None  # (low, high); None = training min, max
    # initialisation and batch order (the range torch.Generator.manual_seed takes)
    seed: Annotated[int, Range(ge=-(2**63), lt=2**64)] = 0
    device: str = "auto"  # auto, cpu or cuda[:N]

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.input_dropout and self.optimizer == "lbfgs":
            raise ValueError(
                "input_dropout needs optimizer rprop or adam (a fresh mask each "
                "step would break L-BFGS's line search)"
            )
        if not valid_device_name(self.device):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        check_rating_range(self.rating_range)


# ----------------------------------------------------------------------------- model
class AutoRec(Recommender, RatingPredictor):
    """I-AutoRec / U-AutoRec rating prediction.

    Attributes
    ----------
    net_ : AutoRecNet
    train_ : csr_matrix (n_users, n_items)
        The training ratings (the network's inputs at prediction time).
    rating_range_ : (float, float)
    default_rating_ : float
        Prediction for users and items without training ratings.
    best_epoch_ : int
    valid_rmse_ : list of float
        Validation RMSE at each check (empty without ``valid``).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> X = sp.csr_matrix(np.array([[5, 4, 0], [4, 0, 1], [0, 2, 1]], np.float32))
    >>> m = AutoRec(hidden=4, epochs=20, device="cpu").fit(X)
    >>> m.predict(np.array([0, 9]), np.array([2, 0])).shape
    (2,)
    """

    name = "autorec"
    config_class = AutoRecConfig
    fitted_attributes = ("n_items_", "net_", "train_")
    capabilities = Capabilities(
        task="rating", folds_in=False, predicts_ratings=True, selects_on="rating"
    )
    net_: AutoRecNet
    train_: sp.csr_matrix
    n_users_: int
    rating_range_: tuple[float, float]
    default_rating_: float
    best_epoch_: int
    valid_rmse_: list[float]

    def __init__(self, config: AutoRecConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)

    # ------------------------------------------------------------------ helpers
    def _rows_matrix(self) -> sp.csr_matrix:
        """The training matrix oriented as the network's rows: (N, D)."""
        return self.train_.T.tocsr() if self.config.variant == "item" else self.train_

    def _reconstruct(self, rows: sp.csr_matrix, device: torch.device) -> torch.Tensor:
        """h(r) for every row of ``rows`` (N, D), in chunks; returned on the CPU."""
        step = max(1, _CHUNK // max(rows.shape[1], 1))
        outs = []
        with torch.no_grad():
            for s in range(0, rows.shape[0], step):
                x = csr_to_dense(rows[s : s + step], device)  # (B, D)
                outs.append(self.net_(rescale_rows(x, self.config.input_norm)).float().cpu())
        return torch.cat(outs) if outs else torch.zeros(0, rows.shape[1])

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, *, valid: RatingTask | None = None, context: Any = None) -> Self:
        cfg = self.config
        X = as_csr(X)
        if X.nnz == 0:
            raise DataError("AutoRec needs at least one training rating")
        self.check_valid_task(valid)
        dev = resolve_device(cfg.device)
        self.train_ = X
        self.n_items_, self.n_users_ = X.shape[1], X.shape[0]
        self.rating_range_ = fit_rating_range(X.data, cfg.rating_range)
        lo, hi = self.rating_range_
        self.default_rating_ = (
            float(cfg.default_rating) if cfg.default_rating is not None else (lo + hi) / 2
        )
        rows = self._rows_matrix()  # (N, D)
        N, D = rows.shape
        gen = torch.Generator().manual_seed(cfg.seed)
        self.net_ = net = AutoRecNet(D, cfg.hidden, cfg.encoder, cfg.decoder, gen).to(dev)
        full_batch = cfg.optimizer != "adam" or cfg.batch_size == 0
        step = max(1, _CHUNK // max(D, 1)) if full_batch else cfg.batch_size
        chunks = []  # dense (rows, normalised input rows, mask), kept for the whole fit
        for s in range(0, N, step):
            part = rows[s : s + step]
            mask = part.copy()
            mask.data = np.ones_like(mask.data)
            x = csr_to_dense(part, dev)
            chunks.append((x, rescale_rows(x, cfg.input_norm), csr_to_dense(mask, dev).bool()))
        lr = cfg.lr if cfg.lr is not None else _DEFAULT_LR[cfg.optimizer]
        params = list(net.parameters())
        opt: torch.optim.Optimizer
        if cfg.optimizer == "lbfgs":
            opt = torch.optim.LBFGS(
                params,
                lr=lr,
                max_iter=cfg.eval_every,
                history_size=10,
                line_search_fn="strong_wolfe",
            )
        elif cfg.optimizer == "rprop":
            opt = torch.optim.Rprop(params, lr=lr)
        else:
            opt = torch.optim.Adam(params, lr=lr)

        def full_objective() -> torch.Tensor:
            opt.zero_grad()
            total = 0.0
            for x, xin, m in chunks:
                loss = masked_sse(net(dropout_values(xin, cfg.input_dropout, gen)), x, m)
                loss.backward()
                total += float(loss.detach())
            pen = 0.5 * cfg.l2 * net.penalty()
            pen.backward()
            return torch.tensor(total + float(pen.detach()))

        keep = KeepBest(higher_is_better=False, patience=cfg.patience)
        done = 0
        loss = float("nan")
        while done < cfg.epochs:
            n_iter = min(cfg.eval_every, cfg.epochs - done)
            if cfg.optimizer == "lbfgs":
                opt.param_groups[0]["max_iter"] = n_iter
                opt.param_groups[0]["max_eval"] = n_iter * 5 // 4
                loss = float(opt.step(full_objective))
            elif full_batch:
                for _ in range(n_iter):
                    loss = float(full_objective())
                    opt.step()  # type: ignore[call-arg]  # Rprop here; LBFGS takes a closure above
            else:
                for _ in range(n_iter):
                    order = torch.randperm(len(chunks), generator=gen).tolist()
                    loss = 0.0
                    for c in order:
                        x, xin, m = chunks[c]
                        opt.zero_grad()
                        xin = dropout_values(xin, cfg.input_dropout, gen)
                        obj = masked_sse(net(xin), x, m) + (
                            0.5 * cfg.l2 * len(x) / N * net.penalty()
                        )
                        obj.backward()
                        opt.step()  # type: ignore[call-arg]  # Adam here; LBFGS takes a closure above
                        loss += float(obj.detach())
            done += n_iter
            if not math.isfinite(loss):
                raise DivergenceError(
                    f"AutoRec diverged after {done} iterations (objective {loss}); "
                    f"lower lr (now {lr:g}) or raise l2 (now {cfg.l2:g})"
                )
            if valid is None:
                log.debug("iter %d objective %.2f", done, loss)
                continue
            v = rmse(self.predict(valid.users, valid.items), valid.ratings)
            log.info("iter %d objective %.2f valid rmse %.4f", done, loss, v)
            if keep.update(done, v, net.state_dict):
                break
        if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
            # L-BFGS reports the objective from before its last step: check the weights too
            raise DivergenceError(
                f"AutoRec diverged after {done} iterations (non-finite weights); "
                f"lower lr (now {lr:g}) or raise l2 (now {cfg.l2:g})"
            )
        if valid is None:
            self.best_epoch_, self.valid_rmse_ = done, []
        else:
            net.load_state_dict(keep.state)
            self.best_epoch_, self.valid_rmse_ = keep.best_epoch, keep.history
        self.net_ = net.cpu()
        return self

    # ------------------------------------------------------------------ predict / score
    def _seen(self) -> tuple[np.ndarray, np.ndarray]:
        """(users with a training rating (U,), items with one (I,)) as bool arrays."""
        X = self.train_
        return np.diff(X.indptr) > 0, np.bincount(X.indices, minlength=X.shape[1]) > 0

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings (n,); users or items without training ratings get the default."""
        self._check_fitted()
        u, ku = lookup(users, self.n_users_)
        i, ki = lookup(items, self.n_items_)
        if len(u) != len(i):
            raise DataError(f"predict: {len(u)} users but {len(i)} items")
        seen_u, seen_i = self._seen()
        ok = ku & ki & seen_u[u] & seen_i[i]
        pred = np.full(len(u), self.default_rating_, np.float32)
        if ok.any():
            row, col = (i[ok], u[ok]) if self.config.variant == "item" else (u[ok], i[ok])
            uniq, inv = np.unique(row, return_inverse=True)
            dev = next(self.net_.parameters()).device
            out = self._reconstruct(self._rows_matrix()[uniq], dev)  # (n_unique, D)
            pred[ok] = out[torch.from_numpy(inv), torch.from_numpy(col)].numpy()
        if self.config.clip:
            pred = np.clip(pred, *self.rating_range_)
        return pred

    def folds_in(self) -> bool:
        """U-AutoRec folds in (it encodes the user's row); I-AutoRec does not."""
        return self.config.variant == "user"

    def score(self, users, X_users) -> torch.Tensor:
        """Unclipped predicted ratings (B, n_items); see the module docstring."""
        users, X = self._check_users(users, X_users)
        dev = next(self.net_.parameters()).device
        seen_u, seen_i = self._seen()
        if self.config.variant == "user":
            out = self._reconstruct(X, dev)  # (B, I), folds in from the given rows
        else:
            assert users is not None  # refused: I-AutoRec does not fold in
            full = self._reconstruct(self._rows_matrix(), dev)  # (I, U)
            out = full[:, torch.from_numpy(users)].T.clone()  # (B, I)
            unrated = ~seen_u[users]  # training users without a rating: the items' mean
            if unrated.any():
                mean_item = full[:, torch.from_numpy(seen_u)].mean(1)  # (I,)
                out[torch.from_numpy(unrated)] = mean_item
        out[:, torch.from_numpy(~seen_i)] = self.default_rating_
        return out

    def _codes(self, rows: sp.csr_matrix) -> np.ndarray:
        """Hidden codes f(V r + mu) (N, H) of the network's input rows ``rows`` (N, D)."""
        net = self.net_
        dev = next(net.parameters()).device
        step = max(1, _CHUNK // max(rows.shape[1], 1))
        out = [np.zeros((0, self.config.hidden), np.float32)]
        with torch.no_grad():
            for s in range(0, rows.shape[0], step):
                x = rescale_rows(csr_to_dense(rows[s : s + step], dev), self.config.input_norm)
                out.append(net.f(net.encode(x)).float().cpu().numpy())  # (B, H)
        return np.concatenate(out)

    def user_embeddings(self, X_users: Any, users: np.ndarray | None = None) -> np.ndarray:
        """U-AutoRec: the codes (B, H) of the histories ``X_users`` (fold-in); I-AutoRec
        has no user embeddings."""
        if self.config.variant != "user":
            raise self._no_embeddings("user")
        _, X = self._check_users(users, X_users)
        return self._codes(X)

    def item_embeddings(self) -> np.ndarray:
        """I-AutoRec: the codes (I, H) of the items' training columns; U-AutoRec has no item
        embeddings."""
        if self.config.variant != "item":
            raise self._no_embeddings("item")
        self._check_fitted()
        return self._codes(self._rows_matrix())

    # ------------------------------------------------------------------ state
    def _get_state(self) -> dict[str, np.ndarray]:
        sd = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        X = self.train_
        return {
            **sd,
            "train_indptr": X.indptr.astype(np.int64),
            "train_indices": X.indices.astype(np.int64),
            "train_data": X.data.astype(np.float32),
            "train_shape": np.array(X.shape, np.int64),
            "rating_range": np.array(self.rating_range_, np.float64),
            "default_rating": np.array(self.default_rating_, np.float64),
            "best_epoch": np.array(self.best_epoch_, np.int64),
        }

    def state_arrays(self) -> dict[str, ArraySpec]:
        D = "n_users" if self.config.variant == "item" else self.n_items_  # the input length
        H = self.config.hidden
        return {
            **linear_arrays("net.encode.", D, H),
            **linear_arrays("net.decode.", H, D),
            "train_indptr": ArraySpec((None,), "i"),  # (n_users + 1,), checked with the rest
            "train_indices": ArraySpec(("nnz",), "i"),
            "train_data": ArraySpec(("nnz",)),
            "train_shape": ArraySpec((2,), "i"),
            "rating_range": ArraySpec((2,)),
            "default_rating": ArraySpec(()),
            "best_epoch": ArraySpec((), "i"),
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.train_ = csr_from_state(state, "train_")
        shape = self.train_.shape
        self.n_users_ = shape[0]
        D = shape[0] if self.config.variant == "item" else shape[1]
        if shape[1] != self.n_items_ or state["net.encode.weight"].shape[1] != D:
            raise DataError(
                f"{self.name}: array 'train_shape' {shape} does not match the "
                f"{self.n_items_} items and the network's input length "
                f"{state['net.encode.weight'].shape[1]}; save the model again"
            )
        cfg = self.config
        net = AutoRecNet(D, cfg.hidden, cfg.encoder, cfg.decoder)
        net.load_state_dict(
            {k[4:]: torch.from_numpy(v) for k, v in state.items() if k.startswith("net.")}
        )
        self.net_ = net
        lo, hi = (float(x) for x in state["rating_range"])
        self.rating_range_ = (lo, hi)
        self.default_rating_ = float(state["default_rating"])
        self.best_epoch_ = int(state["best_epoch"])
        self.valid_rmse_ = []
