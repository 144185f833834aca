"""The base of gradient-trained models: fit through :mod:`genrec.train`, score in batches,
save the module's ``state_dict`` as arrays.

A subclass supplies

* ``_build_module(n_items, generator) -> nn.Module``: the network, weights drawn from
  ``generator`` (a seeded CPU ``torch.Generator``; the global RNG is never used);
* ``train_step(batch, ctx) -> dict``: the loss and the numbers to log (see
  :class:`genrec.train.StepContext`);
* ``_scores(batch) -> (B, I)``: scores from a batch of history rows (eval mode, no grad);
* ``_encode(batch) -> (B, K)``: the encoder means, for :meth:`user_embeddings`;

and optionally ``phases()``, ``build_optimizers(config)``, ``on_phase_start(phase, ctx)``,
``_check_train_data(X)`` (refuse values the likelihood is not defined for).

Every config of such a model has a nested ``train: TrainConfig`` field (epochs, batch_size,
lr, ..., device, precision, seed), with the model's own defaults, which the trainer runs by.
"""

from __future__ import annotations

import logging
import warnings
from abc import abstractmethod
from typing import Any, ClassVar, cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from genrec.errors import ConfigError, DataError
from genrec.models.base import Capabilities, Recommender, as_csr, resolve_device
from genrec.train import (
    Batch,
    FitContext,
    StepContext,
    Trainable,
    TrainConfig,
    Trainer,
    TrainResult,
)

__all__ = ["TorchRecommender"]

logger = logging.getLogger("genrec.train")

SCORE_BATCH = 2048  # users scored at once by ``score`` and ``user_embeddings``


def _as_users(users: np.ndarray | None) -> torch.Tensor | None:
    return None if users is None else torch.from_numpy(users)


def check_train_shape(X: sp.csr_matrix) -> None:
    """A DataError unless the training matrix has at least one user and one item."""
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(
            f"cannot train on a {X.shape[0]} x {X.shape[1]} matrix: it needs at "
            f"least one user and one item"
        )


def check_counts(X: sp.csr_matrix, name: str) -> None:
    """A multinomial likelihood needs counts: a DataError on a negative value."""
    if X.nnz and X.data.min() < 0:
        raise DataError(
            f"{name}: the training matrix has {int((X.data < 0).sum())} negative "
            f"values (the smallest {float(X.data.min()):g}); the multinomial "
            f"likelihood needs counts or 0/1 interactions"
        )


class TorchRecommender(Recommender):
    """A Recommender whose fitted state is one ``nn.Module`` trained by :class:`Trainer`.

    Attributes
    ----------
    module_ : nn.Module
        The trained network (the best validation epoch's weights when ``valid`` was given).
    history_ : list of dict
        One record per epoch (losses, validation metrics, seconds), as in train_log.jsonl.
    best_epoch_ : int or None
        1-based epoch whose weights were kept (None without validation: the last).
    """

    capabilities = Capabilities(trainer=True, selects_on="ranking")
    fitted_attributes: ClassVar[tuple[str, ...]] = ("n_items_", "module_")
    #: draws its training noise through ``StepContext.rng_for`` (train.noise = "keyed"):
    #: the same run whatever the number of processes
    keyed_noise: ClassVar[bool] = False
    #: how train_step reduces its loss over the batch: "mean" or "sum" (a distributed run
    #: weights each process's loss by its share of the global batch for "mean")
    loss_reduction: ClassVar[str] = "mean"

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.module_: nn.Module | None = None
        self.history_: list[dict] | None = None
        self.best_epoch_: int | None = None

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def _build_module(self, n_items: int, generator: torch.Generator) -> nn.Module:
        """The network for ``n_items`` items, initialised from ``generator``."""

    @abstractmethod
    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, Any]:
        """Loss (scalar tensor, key "loss") and numbers to log for one batch."""

    def loss_terms(self, batch: Any) -> int:
        """The terms that a mean loss of ``batch`` averages (default: its rows); a
        distributed run weights each process's mean loss by its share of the global
        batch's terms, so that the sum is the global batch's mean."""
        return len(batch)

    @abstractmethod
    def _scores(self, batch: Batch) -> torch.Tensor:
        """Scores (B, I) from the batch's history rows, module in eval mode, no grad."""

    def _check_train_data(self, X: sp.csr_matrix) -> None:
        """Refuse training values the model's likelihood is not defined for (default: any
        finite value is accepted)."""

    def _encode(self, batch: Batch) -> torch.Tensor:
        """User embeddings (B, K) from the history rows: the encoder means (models without an
        encoder keep this default, so :meth:`user_embeddings` raises the base's error)."""
        raise self._no_embeddings("user")

    # ------------------------------------------------------------------ training
    def _train_data(self, X: Any) -> tuple[Any, int]:
        """The training data as the trainer gets it, and the item count: a CSR matrix with
        interactions, checked by ``_check_train_data`` (sequential models: their sequences)."""
        X = as_csr(X)
        check_train_shape(X)
        if X.nnz == 0 or not X.data.any():
            raise DataError(
                f"cannot train on a {X.shape[0]} x {X.shape[1]} matrix without "
                f"interactions (every value is 0): there is nothing to learn"
            )
        self._check_train_data(X)
        return X, X.shape[1]

    def train_config(self) -> TrainConfig:
        """The trainer's settings: this model's ``config.train``."""
        train = getattr(self.config, "train", None)
        if not isinstance(train, TrainConfig):
            raise ConfigError(
                f"{self.name}: {type(self.config).__name__} has no train "
                f"settings (a field train: TrainConfig), got {train!r}"
            )
        return train

    def fit(
        self, X: Any, *, valid: Any = None, context: FitContext | None = None
    ) -> TorchRecommender:
        """Train on X (CSR, n_users x n_items), selecting epochs on ``valid`` if given.

        Parameters
        ----------
        X : csr_matrix, shape (n_users, n_items)
        valid : RankingTask, optional
            Validation task: the epoch with the best ``select_metric`` is kept, and training
            stops after ``patience`` validations without improvement.
        context : FitContext, optional
            ``run_dir`` (where ``train_log.jsonl`` and ``checkpoint/`` are written each
            epoch), ``resume`` (continue from its checkpoint: same config, data and
            fingerprint), ``callbacks`` (a progress bar...), ``fingerprint``.
        """
        X, n_items = self._train_data(X)
        cfg = self.train_config()
        device = resolve_device(cfg.device)
        init = torch.Generator().manual_seed(cfg.seed)
        self.module_ = self._build_module(n_items, init).to(device)
        self.n_items_ = n_items
        try:  # a Trainable now: module_ is set
            result: TrainResult = Trainer.from_context(cfg, context).fit(
                cast(Trainable, self), X, valid, resume=context is not None and context.resume
            )
        except BaseException:
            self.module_ = None
            del self.n_items_  # a failed fit leaves the model unfitted
            raise
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        return self

    # ------------------------------------------------------------------ using
    def _module(self) -> nn.Module:
        """The fitted network (callers have checked the model is fitted, or are training)."""
        assert self.module_ is not None
        return self.module_

    def _n_items(self) -> int:
        assert self.n_items_ is not None  # set with module_
        return self.n_items_

    def _device(self) -> torch.device:
        return next(self._module().parameters()).device

    def _batches(self, X: sp.csr_matrix, users: np.ndarray | None = None):
        """Scoring batches of ``SCORE_BATCH`` rows; ``Batch.users`` holds the rows' training
        indices when ``users`` is given, else None."""
        device = self._device()
        for start in range(0, X.shape[0], SCORE_BATCH):
            u = None if users is None else torch.from_numpy(users[start : start + SCORE_BATCH])
            yield Batch.from_csr(X[start : start + SCORE_BATCH], u, device)

    def score(self, users: np.ndarray | None, X_users: Any) -> torch.Tensor:
        """Scores (B, n_items), float32, on the model's device, from the rows ``X_users``
        (fold-in: users unseen in training work). ``users`` reaches ``_scores`` as
        ``Batch.users``; only models with per-user parameters read it."""
        users, X = self._check_users(users, X_users)
        self._module().eval()
        with torch.inference_mode():
            out = [self._scores(b).float() for b in self._batches(X, users)]
        if not out:
            return torch.zeros((0, self._n_items()), device=self._device())
        return out[0] if len(out) == 1 else torch.cat(out)  # (B, I)

    def user_embeddings(self, X_users: Any, users: np.ndarray | None = None) -> np.ndarray:
        """Encoder means (B, K), float32, of the users with histories ``X_users`` (B,
        n_items); ``users`` (training rows) reaches ``_encode`` as ``Batch.users``."""
        users, X = self._check_users(users, X_users)
        self._module().eval()
        with torch.inference_mode():
            if X.shape[0] == 0:  # the width K from one empty history, then no rows: (0, K)
                empty = sp.csr_matrix((1, self._n_items()), dtype=np.float32)
                one = None if users is None else np.zeros(1, np.int64)
                code = self._encode(Batch.from_csr(empty, _as_users(one), self._device()))
                return code[:0].float().cpu().numpy()
            out = [self._encode(b).float().cpu() for b in self._batches(X, users)]
        return torch.cat(out).numpy()

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self._module().state_dict().items()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        try:
            device = resolve_device(self.train_config().device)
        except ConfigError:
            warnings.warn(
                f"{self.name}: device {self.train_config().device!r} is not "
                f"available here; loading on the CPU",
                stacklevel=2,
            )
            device = torch.device("cpu")
        module = self._build_module(self._n_items(), torch.Generator().manual_seed(0))
        try:
            module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
        except RuntimeError as e:  # missing, unexpected or mis-sized arrays
            detail = " ".join(str(e).split("\n", 1)[-1].split())
            raise DataError(
                f"{self.name}: the saved weights do not match the saved config "
                f"and item count ({detail[:300]}); were model.json and weights.npz "
                f"written together?"
            ) from None
        self.module_ = module.to(device).eval()
