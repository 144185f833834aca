"""Side features: sparse user and item feature matrices built from a Dataset's metadata.

Factorization machines (and any model that takes side information) read users and items as
rows of sparse feature matrices. :func:`side_features` builds them from ``Dataset.users`` and
``Dataset.items`` column by column:

* ``age`` (numeric) -> one-hot age band, with ML-1M's groups (<18, 18-24, 25-34, 35-44, 45-49,
  50-55, 56+); ML-1M stores the group codes themselves (1, 18, 25, ...) and maps to the same
  bands, ML-100K stores ages.
* ``genres`` and any text column holding ``"A|B"`` sets -> multi-hot (optionally each row's set
  scaled to sum 1, ``normalize_sets``). ``"(no genres listed)"`` is no genre.
* other text, boolean or categorical columns (``gender``, ``occupation``, a user's own column)
  -> one-hot per distinct value.
* other numeric columns -> one real-valued feature, standardized to mean 0 and variance 1 (cast
  a numeric code column to ``str`` to one-hot it instead).

Missing values (NaN, empty text) give no feature. Each column's features are named
``"column=value"`` (``"age=25-34"``, ``"genres=Comedy"``) or the column name (numeric).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genrec.data.dataset import Dataset
from genrec.errors import DataError

__all__ = [
    "SideFeatures",
    "side_features",
    "AGE_BANDS",
    "DEFAULT_USER_COLUMNS",
    "DEFAULT_ITEM_COLUMNS",
]

AGE_BANDS = (18, 25, 35, 45, 50, 56)  # lower edges of ML-1M's age groups after "<18"
DEFAULT_USER_COLUMNS = ("age", "gender", "occupation")
DEFAULT_ITEM_COLUMNS = ("genres",)
_NO_VALUE = {"", "(no genres listed)", "nan", "None"}


@dataclass
class SideFeatures:
    """User and item feature matrices, rows aligned with the Dataset's users and items.

    Attributes
    ----------
    user : csr_matrix, shape (n_users, n_user_features), float32
    item : csr_matrix, shape (n_items, n_item_features), float32
    user_names, item_names : list of str
        One name per column.
    """

    user: sp.csr_matrix
    item: sp.csr_matrix
    user_names: list[str]
    item_names: list[str]

    def __post_init__(self) -> None:
        self.user = sp.csr_matrix(self.user, dtype=np.float32)
        self.item = sp.csr_matrix(self.item, dtype=np.float32)
        if self.user.shape[1] != len(self.user_names):
            raise ValueError(
                f"{self.user.shape[1]} user feature columns but {len(self.user_names)} names"
            )
        if self.item.shape[1] != len(self.item_names):
            raise ValueError(
                f"{self.item.shape[1]} item feature columns but {len(self.item_names)} names"
            )

    @property
    def names(self) -> list[str]:
        """User feature names, then item feature names."""
        return [*self.user_names, *self.item_names]


def age_band(age: float, bands: Sequence[int] = AGE_BANDS) -> str:
    """The band label of an age: ``"<18"``, ``"18-24"``, ..., ``"56+"``."""
    k = int(np.searchsorted(np.asarray(bands), age, side="right"))
    if k == 0:
        return f"<{bands[0]}"
    if k == len(bands):
        return f"{bands[-1]}+"
    return f"{bands[k - 1]}-{bands[k] - 1}"


def _is_missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() in _NO_VALUE


def _one_hot(
    name: str, values: Sequence[object], vocab: list[str] | None = None
) -> tuple[sp.csr_matrix, list[str]]:
    """One-hot (multi-hot where a value is a list) encoding of one column, in ``vocab`` order
    (default: sorted values)."""
    sets = [v if isinstance(v, list) else ([] if _is_missing(v) else [v]) for v in values]
    if vocab is None:
        vocab = sorted({str(x) for s in sets for x in s})
    col = {v: j for j, v in enumerate(vocab)}
    rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    cols = np.array([col[str(x)] for s in sets for x in s], dtype=np.int64)
    m = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(sets), len(vocab)))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m, [f"{name}={v}" for v in vocab]


def _encode(
    name: str, s: pd.Series, age_bands: Sequence[int], normalize_sets: bool
) -> tuple[sp.csr_matrix, list[str]]:
    """Encode one metadata column as a sparse block (n, f) and its feature names."""
    numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
    if numeric and name == "age":
        labels = [None if pd.isna(a) else age_band(float(a), age_bands) for a in s]
        bands = [f"<{age_bands[0]}"] + [age_band(b, age_bands) for b in age_bands]
        return _one_hot(name, labels, [b for b in bands if b in set(labels)])
    if numeric:
        x = s.to_numpy(np.float64)
        ok = ~np.isnan(x)
        mean = x[ok].mean() if ok.any() else 0.0
        std = x[ok].std() if ok.sum() > 1 else 0.0
        z = np.where(ok, (x - mean) / (std if std > 0 else 1.0), 0.0)
        return sp.csr_matrix(z[:, None].astype(np.float32)), [name]
    values = [None if _is_missing(v) else str(v) for v in s.tolist()]
    if name == "genres" or any(v is not None and "|" in v for v in values):
        sets = [
            [] if v is None else [x for x in v.split("|") if x.strip() not in _NO_VALUE]
            for v in values
        ]
        m, names = _one_hot(name, sets)
        if normalize_sets:
            n = np.maximum(np.diff(m.indptr), 1)
            m = sp.csr_matrix(sp.diags(1.0 / n) @ m, dtype=np.float32)
        return m, names
    return _one_hot(name, values)


def _block(
    frame: pd.DataFrame | None,
    n: int,
    columns: Sequence[str] | None,
    defaults: Sequence[str],
    what: str,
    age_bands: Sequence[int],
    normalize_sets: bool,
) -> tuple[sp.csr_matrix, list[str]]:
    if frame is None:
        if columns:
            raise DataError(
                f"no {what} metadata in this data set, so {what} columns "
                f"{', '.join(columns)} cannot be used"
            )
        return sp.csr_matrix((n, 0), dtype=np.float32), []
    if columns is None:  # the standard columns this data set has
        columns = [c for c in defaults if c in frame.columns]
    blocks, names = [], []
    for c in columns:
        if c not in frame.columns:
            have = ", ".join(x for x in frame.columns if x != f"{what}_id")
            raise DataError(f"{what} column {c!r} not found; available: {have}")
        m, nm = _encode(c, frame[c], age_bands, normalize_sets)
        blocks.append(m)
        names += nm
    if len(frame) != n:
        raise DataError(f"{what} metadata has {len(frame)} rows for {n} {what}s")
    if not blocks:
        return sp.csr_matrix((n, 0), dtype=np.float32), []
    return sp.csr_matrix(sp.hstack(blocks, format="csr"), dtype=np.float32), names


def side_features(
    ds: Dataset,
    user_columns: Sequence[str] | None = None,
    item_columns: Sequence[str] | None = None,
    *,
    age_bands: Sequence[int] = AGE_BANDS,
    normalize_sets: bool = False,
) -> SideFeatures:
    """Sparse user and item feature matrices from a Dataset's metadata.

    Parameters
    ----------
    ds : Dataset
    user_columns : column names of ``ds.users``, optional
        Default: those of ``age``, ``gender``, ``occupation`` the data set has. Add your own
        by adding a column to ``ds.users`` and naming it here. ``[]`` for none.
    item_columns : column names of ``ds.items``, optional
        Default: ``genres`` when present.
    age_bands : lower edges of the age bands after the first (``<18``)
    normalize_sets : scale each row of a set-valued column (genres) to sum 1

    Returns
    -------
    SideFeatures
        ``user`` (n_users, Fu) and ``item`` (n_items, Fi); zero columns where the data set
        has no metadata.

    Examples
    --------
    >>> import numpy as np, pandas as pd, scipy.sparse as sp
    >>> from genrec.data import Dataset, Interactions
    >>> inter = Interactions(sp.csr_matrix(np.ones((2, 2), np.float32)), np.array([1, 2]),
    ...                      np.array([10, 20]))
    >>> ds = Dataset("toy", inter, items=pd.DataFrame({"item_id": [10, 20],
    ...                                                "genres": ["Comedy", "Action|Comedy"]}))
    >>> side_features(ds).item_names
    ['genres=Action', 'genres=Comedy']
    """
    n_users, n_items = ds.interactions.n_users, ds.interactions.n_items
    um, un = _block(
        ds.users, n_users, user_columns, DEFAULT_USER_COLUMNS, "user", age_bands, normalize_sets
    )
    im, iname = _block(
        ds.items, n_items, item_columns, DEFAULT_ITEM_COLUMNS, "item", age_bands, normalize_sets
    )
    return SideFeatures(um, im, un, iname)
