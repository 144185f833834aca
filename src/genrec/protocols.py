"""Named evaluation protocols: how a data set becomes training data and evaluation tasks.

``diffrec``
    The protocol of the DiffRec paper's tables (Wang et al., SIGIR 2023). The model is fitted
    on the training interactions and scores every user from them. Validation ranks all items
    except the user's training items against the validation items; test ranks all items
    except training and validation items against the test items. Every user is averaged; a
    user with no held-out item counts 0 (a user whom binarizing or k-core filtering left with
    no interaction at all is not a user here). Data with a given train/valid/test split
    (DiffRec's pair lists) keeps it (given ratings are binarized at ``binarize_threshold``,
    as below); a given train/test split without validation keeps its test
    part and takes validation out of its train part (per user, by time when there are
    timestamps, else seeded, in the proportion ``ratios[1] / (ratios[0] + ratios[1])``).
    Other data is binarized (rating >= ``binarize_threshold``), k-core filtered, and split
    per user by time (random when there are no timestamps) into ``ratios``.
``strong``
    Strong generalization (Liang et al., WWW 2018). ``n_heldout`` users go to validation and
    as many to test; the model trains on the remaining users' full histories. Each held-out
    user's interactions are split fold-in (``fold_in``) / target: the model scores from the
    fold-in part (so it must fold in), the fold-in items are masked, and users with an empty
    target are skipped.
``loo``
    Leave-last-one-out: each user's last interaction is the test item, the one before the
    validation item; masks as in ``diffrec``; users without a held-out item are skipped.
``seq-loo``
    Sequential leave-one-out (Kang and McAuley, ICDM 2018, and the papers after it): over
    each user's items in consumption order (the data's ``sequences``: a time column, ``user
    i1 i2 ... in`` lines, or ``data.ordered``), the last item is the test target, the one
    before it the validation target, the rest is training. Validation scores from the
    training part, test from the training part and the validation item (here it differs
    from ``loo``, whose test input is the training part only). Full ranking; the input
    items are masked unless ``mask_history`` is false (for repeat consumption). Users with
    fewer than 3 items are trained on and not evaluated (their count is logged and
    recorded). Every interaction counts (ratings are not binarized: the presence of a
    rating is the event); ``user_k`` / ``item_k`` filter events before the split.
    Reported at 5, 10 and 20 besides ``ks``. ``sampled_negatives`` > 0 adds a sampled
    evaluation beside the full ranking (:func:`genrec.evaluate.evaluate_sampled`).
``rating``
    RMSE and MAE on held-out ratings. ML-100K uses its canonical fold ``u{fold}`` (base /
    test); data with a given train/test split (a folder of ``train.txt``, ``test.txt`` with
    ratings) keeps it; other data a seeded random 90/10 split. A validation slice
    (``valid_fraction`` of the training part, seeded; the given ``valid.txt`` when there is
    one) is held out of fitting for model selection; ``train_full`` keeps the whole training
    part (with a given validation part) for a final refit.

What binarizing and k-core filtering drop is logged and kept (``ProtocolData.filters``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp

from genrec.data import (
    Dataset,
    Interactions,
    Sequences,
    binarize,
    k_core,
    leave_last_one_out,
    random_ratio_split,
    random_split,
    sequence_leave_one_out,
    strong_generalization_split,
    temporal_ratio_split,
)
from genrec.errors import DataError
from genrec.evaluate import RankingTask, RatingTask

__all__ = [
    "ProtocolConfig",
    "ProtocolData",
    "FilterStep",
    "build_protocol",
    "ranking_filters",
    "PROTOCOLS",
]

log = logging.getLogger(__name__)

PROTOCOLS = ("diffrec", "strong", "loo", "seq-loo", "rating")
#: the cut-offs seq-loo always reports (those of the sequential-recommendation literature)
SEQUENTIAL_KS = (5, 10, 20)


@dataclass(frozen=True)
class ProtocolConfig:
    """Parameters of a protocol (the ``[protocol]`` table of a run config)."""

    name: Literal["diffrec", "strong", "loo", "seq-loo", "rating"] = "diffrec"
    binarize_threshold: float | None = 4.0  # ranking protocols on ratings: keep r >= this
    user_k: int = 0  # k-core: drop users with fewer interactions (ranking protocols)
    item_k: int = 0  # k-core: drop items with fewer interactions (ranking protocols)
    ratios: tuple[float, ...] = (0.8, 0.1, 0.1)  # diffrec without a given split
    n_heldout: float = 0.1  # strong: held-out users per side (fraction, or a count if >= 1)
    fold_in: float = 0.8  # strong: share of a held-out user's items given as input
    fold: int = 1  # rating on ML-100K: canonical fold u1..u5
    valid_fraction: float = 0.05  # rating: share of training ratings held out for selection
    ks: tuple[int, ...] = (10, 20)  # cut-offs reported
    seed: int = 0  # all random splits
    mask_history: bool = True  # seq-loo: mask the input items (false: repeat consumption)
    sampled_negatives: int = 0  # seq-loo: > 0 adds a sampled evaluation with N negatives
    sampler: Literal["uniform", "popularity", "sasrec"] = "uniform"  # its negatives

    def __post_init__(self) -> None:
        if not 1 <= self.fold <= 5:
            raise ValueError(f"fold must be 1..5, got {self.fold}")
        if not 0 < self.valid_fraction < 1:
            raise ValueError(f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
        if self.sampled_negatives < 0:
            raise ValueError(f"sampled_negatives must be >= 0, got {self.sampled_negatives}")
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be positive cut-offs, got {self.ks}")
        if not (
            0 < self.n_heldout < 1 or (self.n_heldout >= 1 and float(self.n_heldout).is_integer())
        ):
            raise ValueError(
                f"n_heldout must be a fraction in (0, 1) or a whole number of "
                f"users, got {self.n_heldout}"
            )


@dataclass(frozen=True, eq=False)  # holds an array: compared by identity
class FilterStep:
    """What one filter of a ranking protocol dropped: binarizing (ratings below
    ``protocol.binarize_threshold``) or k-core filtering (``protocol.user_k`` /
    ``protocol.item_k``)."""

    step: Literal["binarize", "k_core"]
    config: ProtocolConfig
    kept: int  # interactions left
    of: int  # interactions before the step
    users: np.ndarray  # (K,) int64: the users it left with no interaction (who had some)
    items: int  # items it left with no interaction

    def setting(self) -> str:
        """The settings behind the step, as a config spells them."""
        c = self.config
        if self.step == "binarize":
            return f"protocol.binarize_threshold={c.binarize_threshold}"
        return f"protocol.user_k={c.user_k}, protocol.item_k={c.item_k}"

    def line(self) -> str:
        """``binarized at 4.0: kept N of M interactions; K users and J items left with none``."""
        c, k = self.config, len(self.users)
        what = (
            f"binarized at {c.binarize_threshold}"
            if self.step == "binarize"
            else f"k-core (users >= {c.user_k}, items >= {c.item_k})"
        )
        return (
            f"{what}: kept {self.kept:,} of {self.of:,} interactions; {k:,} "
            f"user{'s' * (k != 1)} and {self.items:,} item{'s' * (self.items != 1)} "
            f"left with none"
        )

    def summary(self) -> dict:
        """The step for results files (``protocol_description.filters`` of run.json)."""
        c = self.config
        given = (
            {"threshold": c.binarize_threshold}
            if self.step == "binarize"
            else {"user_k": c.user_k, "item_k": c.item_k}
        )
        return {
            "step": self.step,
            **given,
            "kept": self.kept,
            "of": self.of,
            "users_left_empty": len(self.users),
            "items_left_empty": self.items,
        }


def _filter_step(
    step: Literal["binarize", "k_core"],
    cfg: ProtocolConfig,
    before: list[sp.csr_matrix],
    after: list[sp.csr_matrix],
) -> FilterStep:
    """The :class:`FilterStep` that turned the parts ``before`` into ``after`` (same
    shapes; one matrix each for the whole data, or one per given part)."""
    n_users, n_items = before[0].shape

    def counts(parts: list[sp.csr_matrix]) -> tuple[np.ndarray, np.ndarray]:
        per_user = sum(np.diff(m.indptr) for m in parts)
        per_item = sum(np.bincount(m.indices, minlength=n_items) for m in parts)
        return np.asarray(per_user), np.asarray(per_item)

    (u0, i0), (u1, i1) = counts(before), counts(after)
    return FilterStep(
        step,
        cfg,
        kept=int(sum(m.nnz for m in after)),
        of=int(sum(m.nnz for m in before)),
        users=np.flatnonzero((u0 > 0) & (u1 == 0)).astype(np.int64),
        items=int(((i0 > 0) & (i1 == 0)).sum()),
    )


@dataclass
class ProtocolData:
    """Training data and evaluation tasks of one protocol on one data set."""

    config: ProtocolConfig
    train: Interactions  # what fit sees
    valid: RankingTask | RatingTask
    test: RankingTask | RatingTask
    train_full: Interactions | None = None  # rating: train + validation slice, for a refit
    #: ranking protocols: every user's positives in all parts (training, held-out, fold-in),
    #: 0/1 CSR in the training matrix's shape: the history a deployed model recommends from
    positives: sp.csr_matrix | None = None
    #: how held-out items were picked where the protocol orders them: "time" (the latest),
    #: "random" (no timestamps: a seeded draw), "given" (the data's own parts; "given;
    #: validation by time / random" when the validation part is cut from the given training
    #: part); None for the strong and rating protocols
    split_order: str | None = None
    #: seq-loo: every user's training sequence (what a sequential model fits on)
    train_sequences: Sequences | None = None
    #: users trained on but not evaluated (seq-loo: fewer than 3 items)
    n_not_evaluated: int = 0
    #: seq-loo: every user's whole ordered history (what a deployed model recommends from)
    sequences: Sequences | None = None
    #: what binarizing and k-core filtering dropped, in order (ranking protocols; empty when
    #: neither applies: implicit data without k-core, the rating protocol)
    filters: tuple[FilterStep, ...] = field(default_factory=tuple)

    @property
    def kind(self) -> Literal["ranking", "rating"]:
        return "rating" if self.config.name == "rating" else "ranking"

    @property
    def ks(self) -> tuple[int, ...]:
        """The cut-offs reported: ``config.ks``, and 5, 10, 20 under seq-loo."""
        if self.config.name == "seq-loo":
            return tuple(sorted(set(self.config.ks) | set(SEQUENTIAL_KS)))
        return tuple(self.config.ks)

    def describe(self) -> dict:
        """What was masked and averaged, for results files."""
        d: dict = {
            "protocol": self.config.name,
            "train_interactions": self.train.nnz,
            "users": self.train.n_users,
            "items": self.train.n_items,
        }
        if self.split_order is not None:
            d["split_order"] = self.split_order
        if self.train_sequences is not None:
            d["train_events"] = self.train_sequences.n_events
            d["not_evaluated"] = self.n_not_evaluated
        if self.filters:
            d["filters"] = [f.summary() for f in self.filters]
        for part in ("valid", "test"):
            t = getattr(self, part)
            if isinstance(t, RankingTask):
                d[part] = {
                    "users": t.n_users,
                    "truth": int(t.truth.nnz),
                    "masked": int(t.exclude.nnz),
                    "empty_truth": t.empty_truth,
                    "fold_in": t.users is None,
                }
            else:
                d[part] = {"ratings": len(t.ratings)}
        return d


def _random_order(ds: Dataset, what: str) -> str:
    """Say that ``what`` is drawn at random (the data has no timestamps); "random"."""
    log.warning(
        "%s has no timestamps, so %s are drawn at random (seeded), not the latest; give the "
        "log a time column (data.time_col) for a split by time",
        ds.name,
        what,
    )
    return "random"


def _positives(
    ds: Dataset, inter: Interactions, cfg: ProtocolConfig, part: str | None = None
) -> Interactions:
    """The interactions the ranking protocols use: all of implicit data, the ratings >=
    ``binarize_threshold`` of explicit data (each as 1). ``part`` names a given part."""
    if ds.implicit:
        return inter.binarize()
    try:
        return binarize(inter, cfg.binarize_threshold)
    except DataError:
        if part is not None:
            raise DataError(
                f"{ds.name}: the given {part} part has no rating >= "
                f"{cfg.binarize_threshold}; lower protocol.binarize_threshold or move "
                f"some liked items into it"
            ) from None
        top = float(inter.matrix.data.max()) if inter.nnz else None
        raise DataError(
            f"{ds.name}: no interaction has a rating >= {cfg.binarize_threshold}"
            f"{'' if top is None else f' (the highest is {top:g})'}, so the ranking "
            f"protocols have no positives; lower protocol.binarize_threshold"
        ) from None


def ranking_filters(ds: Dataset, cfg: ProtocolConfig | None = None) -> tuple[FilterStep, ...]:
    """What binarizing and k-core filtering under ``cfg`` drop from the whole of ``ds``, as
    the ranking protocols apply them to data without a given split (``genrec data info``)."""
    return tuple(_ranking_parts(ds, cfg or ProtocolConfig(), say=False)[1])


def _ranking_parts(
    ds: Dataset, cfg: ProtocolConfig, say: bool = True
) -> tuple[Interactions, list[FilterStep]]:
    """The positives after k-core filtering, and what each step dropped (logged)."""
    positives = _positives(ds, ds.interactions, cfg)
    steps = []
    if not ds.implicit and cfg.binarize_threshold is not None:
        steps.append(_filter_step("binarize", cfg, [ds.interactions.matrix], [positives.matrix]))
    kept = k_core(positives, cfg.user_k, cfg.item_k)
    if cfg.user_k > 0 or cfg.item_k > 0:
        steps.append(_filter_step("k_core", cfg, [positives.matrix], [kept.matrix]))
    return kept, _logged(ds, steps) if say else steps


def _logged(ds: Dataset, steps: list[FilterStep]) -> list[FilterStep]:
    for step in steps:
        log.info("%s: %s", ds.name, step.line())
    return steps


def _given_positives(
    ds: Dataset, cfg: ProtocolConfig, given: dict[str, Interactions], names: tuple[str, ...]
) -> tuple[dict[str, Interactions], list[FilterStep]]:
    """The positives of the given parts ``names``, and what binarizing dropped (logged)."""
    parts = {p: _positives(ds, given[p], cfg, p) for p in names}
    if ds.implicit or cfg.binarize_threshold is None:
        return parts, []
    before, after = [given[p].matrix for p in names], [parts[p].matrix for p in names]
    return parts, _logged(ds, [_filter_step("binarize", cfg, before, after)])


def _pattern(parts: dict[str, Interactions]) -> sp.csr_matrix:
    """Which (user, item) pairs occur in any of ``parts``, as a 0/1 float32 CSR matrix."""
    m = sum((part.matrix != 0).astype(np.float32) for part in parts.values()).tocsr()
    m.data[:] = 1.0
    return m


def _masked_tasks(
    parts: dict[str, Interactions], empty: Literal["zero", "skip"]
) -> tuple[RankingTask, RankingTask]:
    """Validation and test of the users left with an interaction in any part (a user whom
    binarizing or k-core filtering left with none is not averaged)."""
    train, valid, test = parts["train"].matrix, parts["valid"].matrix, parts["test"].matrix
    seen = (train + valid).tocsr()
    users = np.flatnonzero(np.diff((seen + test).tocsr().indptr)).astype(np.int64)
    if len(users) < train.shape[0]:
        train, valid, seen, test = (_rows(m, users) for m in (train, valid, seen, test))
    return (
        RankingTask(users, train, train, valid, empty, "valid"),
        RankingTask(users, train, seen, test, empty, "test"),
    )


def _rows(m: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix(m[rows])


def _rating_task(inter: Interactions, name: str) -> RatingTask:
    u, i, r = inter.coo()
    return RatingTask(u, i, r.astype(np.float32), name)


def _union(ds: Dataset, train: Interactions, valid: Interactions) -> Interactions:
    """The given training and validation ratings together (the rating protocol's refit set);
    a (user, item) pair given in both would have two ratings, so it is refused."""
    both = train.binarize().matrix.multiply(valid.binarize().matrix)  # stored pairs of both
    if both.nnz:
        u, i = (int(x[0]) for x in both.nonzero())
        raise DataError(
            f"{ds.name}: user {train.user_ids[u]!r} rates item "
            f"{train.item_ids[i]!r} in both the given train and valid parts; "
            f"keep each rating in one part"
        )
    return train.with_matrix(train.matrix + valid.matrix)


def _checked(ds: Dataset, pdata: ProtocolData, why: str = "") -> ProtocolData:
    """``pdata``, unless its test part holds nothing: these protocols skip users without
    held-out items, so every test metric would be NaN. (diffrec averages every user, a user
    without test items counting 0.)"""
    test = pdata.test
    n = int(test.truth.nnz) if isinstance(test, RankingTask) else len(test.ratings)
    if n == 0:
        name = pdata.config.name
        raise DataError(
            f"{ds.name}: protocol {name} leaves no test interactions "
            f"({pdata.train.nnz} training interactions of {pdata.train.n_users} "
            f"users{'; ' + why if why else ''}); use more data (more interactions "
            f"per user) or another protocol"
        )
    return pdata


def _targets(items: np.ndarray, n_items: int) -> sp.csr_matrix:
    """One relevant item per row."""
    n = len(items)
    return sp.csr_matrix(
        (np.ones(n, np.float32), items.astype(np.int64), np.arange(n + 1)), shape=(n, n_items)
    )


def _ordered(ds: Dataset) -> Sequences | None:
    """The data set's ordered histories: those the reader built, else (a Dataset built in
    Python) its interactions ordered by their timestamps, ties by item column."""
    if ds.sequences is not None:
        return ds.sequences
    inter = ds.interactions
    if inter.times is None:
        return None
    m = inter.matrix.tocsr()
    users = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    return Sequences.from_events(users, m.indices, m.shape[0], m.shape[1], inter.times, ds.name)


def _seq_loo(ds: Dataset, cfg: ProtocolConfig) -> ProtocolData:
    seqs = _ordered(ds)
    if seqs is None:
        raise DataError(
            f"{ds.name}: protocol seq-loo needs each user's items in order, and this data "
            f"has none: map a time column with data.time_col, write the histories as "
            f"'user item1 item2 ...' lines (data.format=sequences), or set data.ordered=true "
            f"when the log's rows are already in time order"
        )
    seqs = seqs.k_core(cfg.user_k, cfg.item_k)
    split = sequence_leave_one_out(seqs)
    if split.n_short:
        log.warning(
            "%s: %d users with fewer than 3 items are trained on and not evaluated "
            "(protocol seq-loo holds out the last two items)",
            ds.name,
            split.n_short,
        )
    n_items = seqs.n_items
    tasks = []
    for name, inputs, target in (
        ("valid", split.valid_inputs(), split.valid_target),
        ("test", split.test_inputs(), split.test_target),
    ):
        x = inputs.to_csr()
        exclude = x if cfg.mask_history else sp.csr_matrix(x.shape, dtype=np.float32)
        task = RankingTask(
            split.users, x, exclude, _targets(target, n_items), "skip", name, sequences=inputs
        )
        tasks.append(task)
    return ProtocolData(
        cfg,
        ds.interactions.with_matrix(split.train.to_csr()),
        tasks[0],
        tasks[1],
        positives=seqs.to_csr(),
        split_order="time" if seqs.times is not None else "file",
        train_sequences=split.train,
        n_not_evaluated=split.n_short,
        sequences=seqs,
    )


def build_protocol(ds: Dataset, cfg: ProtocolConfig | None = None) -> ProtocolData:
    """Build the training data and the validation/test tasks of protocol ``cfg.name``."""
    cfg = cfg or ProtocolConfig()
    if cfg.name == "diffrec":
        given = ds.splits.get("given")
        if given is not None and {"train", "valid", "test"} <= set(given):
            parts, steps = _given_positives(ds, cfg, given, ("train", "valid", "test"))
            order = "given"
        elif given is not None and {"train", "test"} <= set(given):
            # never re-split the whole data: that would put given test items into training
            if len(cfg.ratios) != 3:
                raise DataError(f"protocol diffrec needs three ratios, got {cfg.ratios}")
            r_train, r_valid = cfg.ratios[0], cfg.ratios[1]
            share = (r_train / (r_train + r_valid), r_valid / (r_train + r_valid))
            given_parts, steps = _given_positives(ds, cfg, given, ("train", "test"))
            train = given_parts["train"]
            inner = (
                temporal_ratio_split(train, share, names=("train", "valid"))
                if train.times is not None
                else random_ratio_split(train, share, names=("train", "valid"), seed=cfg.seed)
            )
            parts = {**inner, "test": given_parts["test"]}
            order = "given; validation by " + (
                "time" if train.times is not None else _random_order(ds, "the validation items")
            )
        else:
            inter, steps = _ranking_parts(ds, cfg)
            if len(cfg.ratios) != 3:
                raise DataError(f"protocol diffrec needs three ratios, got {cfg.ratios}")
            if inter.times is not None:
                parts, order = temporal_ratio_split(inter, cfg.ratios), "time"
            else:
                parts = random_ratio_split(inter, cfg.ratios, seed=cfg.seed)
                order = _random_order(ds, "each user's validation and test items")
        valid, test = _masked_tasks(parts, "zero")
        return ProtocolData(
            cfg,
            parts["train"],
            valid,
            test,
            positives=_pattern(parts),
            split_order=order,
            filters=tuple(steps),
        )
    if cfg.name == "loo":
        inter, steps = _ranking_parts(ds, cfg)
        parts = leave_last_one_out(inter, seed=cfg.seed)
        order = (
            "time" if inter.times is not None else _random_order(ds, "each user's held-out items")
        )
        valid, test = _masked_tasks(parts, "skip")
        return _checked(
            ds,
            ProtocolData(
                cfg,
                parts["train"],
                valid,
                test,
                positives=_pattern(parts),
                split_order=order,
                filters=tuple(steps),
            ),
            "loo holds out items only of users with 3 or more interactions",
        )
    if cfg.name == "seq-loo":
        return _seq_loo(ds, cfg)
    if cfg.name == "strong":
        inter, steps = _ranking_parts(ds, cfg)
        n = cfg.n_heldout if cfg.n_heldout < 1 else int(cfg.n_heldout)
        p = strong_generalization_split(inter, n, cfg.fold_in, cfg.seed)
        tasks = []
        for side in ("valid", "test"):
            fin, fout = p[f"{side}_in"].matrix, p[f"{side}_out"].matrix
            rows = np.flatnonzero(np.diff((fin + fout).tocsr().indptr))
            tasks.append(
                RankingTask(
                    None, _rows(fin, rows), _rows(fin, rows), _rows(fout, rows), "skip", side
                )
            )
        return _checked(
            ds,
            ProtocolData(
                cfg,
                p["train"],
                tasks[0],
                tasks[1],
                positives=_pattern({"all": inter}),
                filters=tuple(steps),
            ),
        )
    if cfg.name == "rating":
        if ds.implicit:
            raise DataError(
                f"{ds.name}: protocol rating needs explicit ratings, and this data "
                f"set is implicit (no rating column, or one value throughout); use a "
                f"ranking protocol (diffrec, strong or loo) with a ranking model"
            )
        fold, given = ds.splits.get(f"u{cfg.fold}"), ds.splits.get("given")
        # the fitted part and the validation slice, unless given
        fit_parts: dict[str, Interactions] | None = None
        if fold is not None:
            full, test_part = fold["train"], fold["test"]
        elif given is not None and {"train", "test"} <= set(given):
            full, test_part = given["train"], given["test"]  # never re-split a given test part
            if "valid" in given:
                fit_parts = {"train": full, "valid": given["valid"]}
                full = _union(ds, full, given["valid"])
        else:
            sp_ = random_split(ds.interactions, (0.9, 0.1), seed=cfg.seed)
            full, test_part = sp_["train"], sp_["test"]
        if fit_parts is None:
            fit_parts = random_split(
                full,
                (1 - cfg.valid_fraction, cfg.valid_fraction),
                names=("train", "valid"),
                seed=cfg.seed,
            )
        return _checked(
            ds,
            ProtocolData(
                cfg,
                fit_parts["train"],
                _rating_task(fit_parts["valid"], "valid"),
                _rating_task(test_part, "test"),
                train_full=full,
            ),
        )
    raise DataError(f"unknown protocol {cfg.name!r}; known: {', '.join(PROTOCOLS)}")
