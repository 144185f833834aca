"""The Recommender contract every model implements.

A model implements (checked by the conformance suite, ``tests/models/conformance.py``):

* ``fit(X, *, valid=None, context=None) -> Self``: ``X`` the training matrix, CSR
  (n_users, n_items); ``valid`` an optional RankingTask or RatingTask to select on;
  ``context`` an optional :class:`genrec.train.FitContext` (run folder, resume, callbacks,
  data fingerprint, side features).
* ``score(users, X_users) -> (B, n_items)``: ``users`` row indices into the training matrix
  (None for users unseen in training), ``X_users`` their histories. A model that does not
  fold in (:meth:`Recommender.folds_in` False) sets ``n_users_`` in ``fit`` and ``load``;
  ``_check_users`` refuses ``users=None`` and indices outside ``[0, n_users_)`` for it.
* optionally ``user_embeddings(X_users, users=None) -> (B, d)`` and ``item_embeddings() ->
  (n_items, d)``, float32; the base raises a ConfigError ("MODEL has no user embeddings").
* ``_get_state() -> {name: array}`` and ``_set_state(arrays)`` for saving, and
  ``state_arrays() -> {name: ArraySpec}``, the shapes and kinds of those arrays, against
  which ``load`` checks ``weights.npz`` before using it (:mod:`genrec.models.saved`).
* ``capabilities``: one :class:`Capabilities` per class saying what it can do.
* Fitted state: attributes ending in ``_``, declared as class annotations, created only by
  ``fit`` (or ``load``) and named in ``fitted_attributes``.
* ``predict(users, items)`` when it is a :class:`RatingPredictor`.

The base gives: config building from overrides, ``recommend`` (top-k, seen items excluded),
``save``/``load`` (``model.json`` + ``weights.npz``, nothing unpickled), ``check_task`` and
``check_valid_task`` (read from ``capabilities``), ``folds_in``, ``_check_users`` and
``upgrade_config``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from typing_extensions import Self

from genrec import __version__
from genrec.config import (
    build_config,
    config_to_dict,
    nested_config_fields,
    valid_device_name,
)
from genrec.errors import ConfigError, CorruptFileError, DataError, NotFittedError, check_is_fitted
from genrec.io import (
    atomic_files,
    file_digest,
    npz_writer,
    seal_record,
    to_json,
    write_file,
)
from genrec.metrics import topk_indices
from genrec.models.saved import ArraySpec, load_state, read_model_json

__all__ = [
    "Capabilities",
    "Recommender",
    "RatingPredictor",
    "resolve_device",
    "as_csr",
    "MODEL_FORMAT",
    "ArraySpec",
]

MODEL_FORMAT = "genrec-model/1"

TaskKind = Literal["ranking", "rating"]


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a model class can do (one per class, ``capabilities: ClassVar[Capabilities]``).

    task : what the model is evaluated on by default ("ranking" or "rating").
    folds_in : scores users unseen in training from their histories alone.
    trainer : trained by :class:`genrec.train.Trainer` (resume, weight averaging, bf16,
        early stopping).
    side_features : fit uses the side features of ``context.side``.
    predicts_ratings : implements :meth:`RatingPredictor.predict`.
    selects_on : the kind of validation task fit selects on by default; None when fit
        takes no validation (:meth:`Recommender.selects_on` may answer by config).
    sequential : fits on and scores from ordered histories (:class:`genrec.data.Sequences`).
    item_features : fit reads an item feature matrix from ``context.side`` (the runner builds
        it from ``config.item_features``: :mod:`genrec.runs.item_features`).
    """

    task: TaskKind = "ranking"
    folds_in: bool = True
    trainer: bool = False
    side_features: bool = False
    predicts_ratings: bool = False
    selects_on: TaskKind | None = None
    sequential: bool = False
    item_features: bool = False

    def __post_init__(self) -> None:
        if self.task not in ("ranking", "rating"):
            raise ValueError(f"task must be ranking or rating, got {self.task!r}")
        if self.selects_on not in ("ranking", "rating", None):
            raise ValueError(f"selects_on must be ranking, rating or None, got {self.selects_on!r}")


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without CUDA is an error."""
    if not valid_device_name(name):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use cpu or auto")
    device = torch.device(name)
    if (
        device.type == "cuda"
        and device.index is not None
        and (device.index >= torch.cuda.device_count())
    ):
        raise ConfigError(
            f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA "
            f"device(s), numbered from 0; use cuda, cuda:0 or auto"
        )
    return device


def as_csr(X: Any, n_items: int | None = None, what: str = "X") -> sp.csr_matrix:
    """Validate a user x item matrix and return it as float32 CSR."""
    from genrec.data.interactions import Interactions

    if isinstance(X, Interactions):
        X = X.matrix
    if not (sp.issparse(X) or hasattr(X, "__array__") or isinstance(X, (list, tuple))):
        raise DataError(  # a Dataset, a run's RunData, ...: say which matrix to pass
            f"{what} must be a user x item matrix (scipy sparse or 2-D array), not a "
            f"{type(X).__name__}; pass Interactions.matrix, or a run's Run.train_matrix"
        )
    if isinstance(X, np.ndarray) and X.ndim == 1:
        X = X[None, :]
    if not sp.issparse(X):
        X = np.asarray(X)
        if X.ndim != 2:
            raise DataError(f"{what} must be a 2-D user x item matrix, got shape {X.shape}")
    X = sp.csr_matrix(X, dtype=np.float32)
    bad = ~np.isfinite(X.data)
    if bad.any():
        j = int(bad.argmax())  # the first stored entry that is not finite
        r = int(np.searchsorted(X.indptr, j, side="right")) - 1
        raise DataError(
            f"{what} has {int(bad.sum())} values that are NaN or infinite (the "
            f"first at row {r}, column {int(X.indices[j])}); remove or fill them"
        )
    if n_items is not None and X.shape[1] != n_items:
        raise DataError(
            f"{what} has {X.shape[1]} item columns but the model was fitted on {n_items} items"
        )
    return X


#: named in the refusals of :meth:`Recommender.check_task` (tests check them against the
#: registry: every rating model, and fold-in ranking models)
RATING_MODELS = ("biased-mf", "fm", "autorec")
FOLD_IN_MODELS = ("ease", "mult-vae", "recvae")


class Recommender(ABC):
    """Base class: implement ``fit``, ``score``, ``_get_state`` and ``_set_state``.

    Parameters
    ----------
    config : the model's config dataclass, optional
        Defaults to the paper's settings.
    **overrides
        Field values replacing those of ``config`` (``EASE(l2=500.0)``).
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    #: fitted attributes that must exist before score/recommend/save
    fitted_attributes: ClassVar[tuple[str, ...]] = ("n_items_",)
    #: what the class can do (each model class declares its own)
    capabilities: ClassVar[Capabilities] = Capabilities()
    n_items_: int
    #: training users; set by ``fit`` and ``load`` of the models that do not fold in
    n_users_: int

    def __init__(self, config: Any = None, **overrides: Any):
        if config is None:
            config = self.config_class()
        elif not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        if overrides:
            config = build_config(self.config_class, overrides, base=config, where=self.name)
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    def folds_in(self) -> bool:
        """Whether this model scores users from their histories alone (``users=None``),
        under this config: ``capabilities.folds_in`` unless a model answers by config."""
        return self.capabilities.folds_in

    def selects_on(self) -> TaskKind | None:
        """ "ranking" or "rating": the kind of task ``fit(valid=...)`` selects on, under this
        config; None when fit takes no validation."""
        return self.capabilities.selects_on

    @classmethod
    def check_task(cls, task: Any) -> None:
        """A ConfigError unless a model of this class can be evaluated on ``task`` (a
        RankingTask or RatingTask): rating tasks need a rating predictor, tasks of users
        unseen in training (strong generalization) a model that folds in."""
        from genrec.evaluate import RankingTask, RatingTask

        if isinstance(task, RatingTask) and not cls.capabilities.predicts_ratings:
            raise ConfigError(
                f"model {cls.name} does not predict ratings, and the rating protocol "
                f"scores held-out ratings; use a ranking protocol (diffrec, strong or "
                f"loo) with {cls.name}, or a rating model ({', '.join(RATING_MODELS)})"
            )
        if isinstance(task, RankingTask) and task.users is None and not cls.capabilities.folds_in:
            raise ConfigError(
                f"model {cls.name} cannot score users unseen in training, and the strong "
                f"protocol evaluates such users; use protocol diffrec or loo with "
                f"{cls.name}, or a fold-in model ({', '.join(FOLD_IN_MODELS)}, ...)"
            )

    def check_valid_task(self, valid: Any) -> None:
        """A ConfigError unless ``valid`` is None or the kind of task ``fit`` selects on (the
        CLI asks this before it trains or writes anything)."""
        from genrec.evaluate import RankingTask, RatingTask

        kind = self.selects_on()
        if valid is None or kind is None:
            return
        want = RatingTask if kind == "rating" else RankingTask
        if not isinstance(valid, want):
            fix = (
                f"use the rating protocol (explicit ratings) with {self.name}, or a "
                f"ranking model ({', '.join(FOLD_IN_MODELS)}, ...) under a ranking protocol"
                if kind == "rating"
                else f"use a ranking protocol (diffrec, strong or loo) with {self.name}"
            )
            raise ConfigError(
                f"{self.name} selects on a {want.__name__} under this config, got a "
                f"{type(valid).__name__}; {fix}"
            )

    @classmethod
    def upgrade_config(cls, values: dict[str, Any]) -> dict[str, Any]:
        """A config dict saved by an older genrec (``model.json``, ``run.json``) as today's.

        Called by :meth:`load` before the config is built (never on user input, where an old
        key is an error that names its new spelling). The default moves each key that is not
        a field of the config but is one of a nested config field (``epochs`` ->
        ``train.epochs``) into that field's dict; models whose configs changed otherwise
        override it (and call it).
        """
        config_cls = cls.config_class
        top = {f.name for f in dataclasses.fields(config_cls)}
        out = dict(values)
        for name, sub in nested_config_fields(config_cls).items():
            moved = {
                k: out.pop(k)
                for k in [f.name for f in dataclasses.fields(sub)]
                if k in out and k not in top
            }
            if moved:
                given = out.get(name)
                out[name] = {**moved, **given} if isinstance(given, dict) else moved
        return out

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def fit(self, X: Any, *, valid: Any = None, context: Any = None) -> Self:
        """Fit on the training matrix X, CSR (n_users, n_items); see the module docstring."""

    @abstractmethod
    def score(self, users: np.ndarray | None, X_users: Any) -> np.ndarray | torch.Tensor:
        """Scores (B, n_items) of ``users`` with histories ``X_users``, in new memory."""

    @abstractmethod
    def _get_state(self) -> dict[str, np.ndarray]:
        """Fitted arrays to save (names -> arrays)."""

    @abstractmethod
    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore fitted state from ``_get_state``'s arrays (checked against
        :meth:`state_arrays`); a DataError naming the array when they do not fit together."""

    def state_arrays(self) -> dict[str, ArraySpec] | None:
        """The arrays of ``_get_state``: name -> :class:`ArraySpec` (shape, dtype kind), in
        sizes computed from the config and ``n_items_`` (set: :meth:`load` calls it on the
        model built from ``model.json``) or named dimensions (``"n_users"``) that the saved
        arrays must agree on. :meth:`load` checks ``weights.npz`` against it before any
        array is read. Every genrec model declares its arrays; the default, None, checks
        only that float arrays are finite."""
        return None

    # ------------------------------------------------------------------ shared
    def _check_fitted(self) -> None:
        check_is_fitted(self, self.fitted_attributes)

    def _check_users(
        self, users: np.ndarray | None, X_users: Any
    ) -> tuple[np.ndarray | None, sp.csr_matrix]:
        """Validate (users, X_users) against the fitted model; return (users, CSR).

        A model that does not fold in needs ``users``, each a row of its training matrix:
        ``users=None`` is a ConfigError and an index outside ``[0, n_users_)`` a DataError
        (such a model has nothing to score a new history with).
        """
        self._check_fitted()
        X = as_csr(X_users, self.n_items_, what="X_users")
        if users is not None:
            users = np.asarray(users, dtype=np.int64).reshape(-1)
            if len(users) != X.shape[0]:
                raise DataError(f"{len(users)} user indices but {X.shape[0]} history rows")
        if not self.folds_in():
            known = getattr(self, "n_users_", None)  # a model of the contract sets it in fit
            n_users = None if known is None else int(known)
            if users is None:
                rows = "" if n_users is None else f" (0..{n_users - 1})"
                raise ConfigError(
                    f"model {self.name} cannot score or embed users unseen in training (it "
                    f"does not fold in): give users, their rows of the training matrix"
                    f"{rows}, or use a fold-in model (ease, mult-vae, ...)"
                )
            bad = users < 0 if n_users is None else (users < 0) | (users >= n_users)
            if bad.any():
                span = "not negative" if n_users is None else f"in [0, {n_users})"
                raise DataError(
                    f"user index {int(users[bad.argmax()])} is not a training user of "
                    f"{self.name} (users must be {span}); a new user needs a "
                    f"fold-in model (ease, mult-vae, ...)"
                )
        return users, X

    def user_embeddings(self, X_users: Any, users: np.ndarray | None = None) -> np.ndarray:
        """User embeddings (B, d), float32, of the users with histories ``X_users``
        (B, n_items); ``users`` their training rows (needed by a model that does not fold
        in). Models with user vectors override this; docs/analysis.md lists what each
        model returns."""
        raise self._no_embeddings("user")

    def item_embeddings(self) -> np.ndarray:
        """Item embeddings (n_items, d), float32. Models with item vectors override this;
        docs/analysis.md lists what each model returns."""
        raise self._no_embeddings("item")

    def _no_embeddings(self, kind: Literal["user", "item"]) -> ConfigError:
        """The error of a model without ``kind`` embeddings."""
        have = (
            "user factors or an encoder (bpr-mf, mult-vae"
            if kind == "user"
            else ("item factors (bpr-mf, biased-mf, mult-vae")
        )
        return ConfigError(
            f"model {self.name} has no {kind} embeddings; use a model with {have}, ...) "
            f"or a truncated SVD of the interactions (genrec.analysis.svd_embeddings)"
        )

    def _embedding_users(self, X_users: Any, users: np.ndarray | None) -> np.ndarray:
        """The training rows (B,) of ``user_embeddings``'s users, for a model that embeds
        training users only (user factors): checked as ``score`` checks them."""
        users, _ = self._check_users(users, X_users)
        assert users is not None  # _check_users refuses None for a model that does not fold in
        return users

    def recommend(
        self,
        users: np.ndarray | None,
        X_users: Any,
        k: int = 10,
        exclude_seen: bool = True,
        exclude: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items per user, best first.

        ``exclude_seen`` leaves out the items of ``X_users`` and, when given, those of
        ``exclude`` (CSR, one row per user: items the user has that are not in the history
        scored from, such as low ratings).

        Returns
        -------
        items : ndarray of int64, shape (B, min(k, n_items))
            Item indices; -1 where fewer than k items are left to recommend. A k past the
            item count is clamped to it (a list cannot hold more), so memory does not grow
            with k.
        scores : ndarray of float32, shape (B, min(k, n_items))
            Their scores (-inf at -1 pads).
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        users, X = self._check_users(users, X_users)
        scores = torch.as_tensor(self.score(users, X)).float().cpu()  # (B, I)
        if exclude_seen:
            scores = scores.clone()
            X = X.to_csr() if hasattr(X, "to_csr") else X  # ordered histories: their items
            masks = [X] if exclude is None else [X, as_csr(exclude, X.shape[1], "exclude")]
            if masks[-1].shape[0] != X.shape[0]:
                raise DataError(f"exclude has {masks[-1].shape[0]} rows for {X.shape[0]} users")
            for M in masks:
                rows = np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))
                scores[torch.from_numpy(rows), torch.from_numpy(M.indices.astype(np.int64))] = (
                    float("-inf")
                )
        top = topk_indices(scores, k)  # (B, min(k, I))
        safe = top.clamp(min=0)
        vals = scores.gather(1, safe)
        vals = torch.where(top < 0, torch.full_like(vals, float("-inf")), vals)
        return top.numpy().astype(np.int64), vals.numpy().astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write ``model.json`` and ``weights.npz`` into the folder ``path`` (atomically)."""
        self._check_fitted()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        state = self._get_state()
        write_weights = npz_writer({k: np.asarray(v) for k, v in state.items()})
        meta = {
            "format": MODEL_FORMAT,
            "model": self.name,
            "config": config_to_dict(self.config),
            "n_items": int(self.n_items_),
            "genrec_version": __version__,
        }
        with atomic_files(out, ["weights.npz", "model.json"]) as tmp:  # model.json lands last
            write_file(tmp["weights.npz"], write_weights, target=out / "weights.npz")
            meta["files"] = {"weights.npz": file_digest(tmp["weights.npz"])}
            text = to_json(seal_record(meta)).encode("utf-8")
            write_file(tmp["model.json"], lambda f: f.write(text), target=out / "model.json")
        return out

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Rebuild a saved model through the registry (no pickle).

        ``Recommender.load`` loads any saved model; ``SomeModel.load`` also checks that the
        saved model is a ``SomeModel`` (a DataError names the saved class otherwise).
        """
        from genrec.models import get_model_class

        p = Path(path)
        meta_path = p / "model.json"
        if not meta_path.is_file():
            raise DataError(
                f"{p}: not a saved genrec model (no model.json); train one with "
                f"`genrec train` or Recommender.save"
            )
        meta = read_model_json(meta_path, MODEL_FORMAT)
        try:
            saved = get_model_class(meta["model"])
        except ConfigError as e:
            raise DataError(f"{meta_path}: not a genrec model folder: field 'model': {e}") from None
        if not issubclass(saved, cls):
            raise DataError(
                f"{p}: holds a saved {meta['model']} model ({saved.__name__}), not "
                f"a {cls.__name__}; load it with Recommender.load or "
                f"{saved.__name__}.load"
            )
        config: Any = build_config(
            saved.config_class, saved.upgrade_config(meta["config"]), where=str(meta_path)
        )
        model = saved(config)
        weights = p / "weights.npz"
        if not weights.is_file():
            raise DataError(f"{p}: weights.npz is missing")
        files = meta.get("files")  # absent in older saves
        want = files.get("weights.npz") if isinstance(files, dict) else None
        if want is not None and file_digest(weights) != want:
            raise CorruptFileError(
                f"{weights}: corrupt file (its SHA-256 differs from the one in model.json); "
                f"save the model again or restore the file"
            )
        model.n_items_ = meta["n_items"]
        state = load_state(model.state_arrays(), weights, meta_path)  # checked before use
        try:
            model._set_state(state)
        except DataError as e:  # the arrays do not fit together: name the file
            raise DataError(f"{weights}: {e}") from None
        return model


class RatingPredictor(ABC):
    """Mixin for models that predict explicit ratings (the ``rating`` protocol)."""

    @abstractmethod
    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings for (user index, item index) pairs, shape (n,).

        Users or items unknown to the model (index -1 or out of range) get a fallback
        prediction (the biases or the global mean), never an error.
        """


__all__ += ["NotFittedError"]
