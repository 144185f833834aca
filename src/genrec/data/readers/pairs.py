"""Reader of pre-split pair lists (train/valid/test as .npy or text)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset
from genrec.data.interactions import Interactions
from genrec.data.readers._parse import (
    _build,
    _id_values,
    _load_text,
    _part,
    constant_ratings,
    rating_limit_text,
    rating_problem,
)
from genrec.errors import DataError

# ----------------------------------------------------------------------------- pair lists
_PARTS = ("train", "valid", "test")


def _load_npy_pairs(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise DataError(f"{path}: not a plain numeric .npy array ({e})") from None
    if arr.ndim != 2 or arr.shape[1] < 2 or arr.dtype.kind not in "iu":
        raise DataError(
            f"{path}: expected an integer array of shape (n, 2) of (user, item) "
            f"rows, got {arr.dtype} {arr.shape}"
        )
    if len(arr) and arr[:, :2].min() < 0:
        row = int(np.flatnonzero((arr[:, :2] < 0).any(1))[0])
        raise DataError(
            f"{path}, row {row}: negative id {arr[row, :2].tolist()}; pair lists "
            f"hold 0-based indices"
        )
    return arr


def _read_text_pairs(path: Path) -> pd.DataFrame:
    """Whitespace ``user item [rating]`` lines."""
    rows = []
    for lineno, line in enumerate(_load_text(path).split("\n"), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (2, 3):
            raise DataError(
                f"{path}, line {lineno}: expected 'user item [rating]', got {line.strip()!r}"
            )
        if len(parts) == 3:
            try:
                r = float(parts[2])
            except ValueError:
                raise DataError(
                    f"{path}, line {lineno}: rating {parts[2]!r} is not a number"
                ) from None
            if not np.isfinite(r):
                raise DataError(
                    f"{path}, line {lineno}: rating is {parts[2]}; NaN and "
                    f"infinite ratings are not allowed"
                )
            if rating_problem(np.array([r])).any():
                raise DataError(
                    f"{path}, line {lineno}: {rating_limit_text(f'rating is {parts[2]}')}"
                )
        else:
            r = 1.0
        rows.append((parts[0], parts[1], r))
    if not rows:
        raise DataError(f"{path}: no interactions found")
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


def read_pair_lists(
    folder: str | Path,
    *,
    name: str | None = None,
    n_users: int | None = None,
    n_items: int | None = None,
) -> Dataset:
    """A folder of pre-split pair lists.

    Either DiffRec's ``train_list.npy``, ``valid_list.npy``, ``test_list.npy`` (int64 (n, 2)
    rows of 0-based (user, item) indices), or text files ``train.txt``, ``valid.txt``,
    ``test.txt`` (``valid`` optional) with whitespace ``user item [rating]`` lines; a rating
    column with one value throughout (``user item 1``) is implicit data, as in logs.

    For ``.npy`` lists the indices are the ids: the matrix has ``max + 1`` rows and columns
    over all parts (or ``n_users``/``n_items`` when given, which out-of-range ids violate).
    """
    d = Path(folder)
    npy = {p: d / f"{p}_list.npy" for p in _PARTS}
    txt = {p: d / f"{p}.txt" for p in _PARTS}
    label = name or d.name
    if npy["train"].is_file():
        arrays = {p: _load_npy_pairs(f) for p, f in npy.items() if f.is_file()}
        if "test" not in arrays:
            raise DataError(f"{d}: test_list.npy is missing (found {', '.join(arrays)})")
        if not any(len(a) for a in arrays.values()):
            raise DataError(f"{d}: no interactions found (every pair list is empty)")
        max_u = max(int(a[:, 0].max()) for a in arrays.values() if len(a)) + 1
        max_i = max(int(a[:, 1].max()) for a in arrays.values() if len(a)) + 1
        U = n_users if n_users is not None else max_u
        I = n_items if n_items is not None else max_i
        for p, a in arrays.items():
            bad_u, bad_i = a[:, 0] >= U, a[:, 1] >= I
            if bad_u.any() or bad_i.any():
                row = int(np.flatnonzero(bad_u | bad_i)[0])
                raise DataError(
                    f"{npy[p]}, row {row}: id {a[row, :2].tolist()} out of range "
                    f"for {U} users x {I} items"
                )
        uid, iid = np.arange(U, dtype=np.int64), np.arange(I, dtype=np.int64)
        parts = {
            p: Interactions.from_arrays(a[:, 0], a[:, 1], user_ids=uid, item_ids=iid)
            for p, a in arrays.items()
        }
        allp = np.concatenate(list(arrays.values()))
        whole = Interactions.from_arrays(allp[:, 0], allp[:, 1], user_ids=uid, item_ids=iid)
        return Dataset(label, whole, None, None, {"given": parts}, True, None, str(d))
    if txt["train"].is_file():
        frames = {p: _read_text_pairs(f) for p, f in txt.items() if f.is_file()}
        if "test" not in frames:
            raise DataError(f"{d}: test.txt is missing (found {', '.join(frames)})")
        allf = pd.concat(list(frames.values()), ignore_index=True)
        for col in ("user", "item"):  # integer ids when all read back as written, as in logs
            ids = _id_values(allf[col])
            if ids.dtype.kind == "i":
                allf[col] = ids
                for f in frames.values():
                    f[col] = f[col].astype(np.int64)
        implicit = constant_ratings(allf["rating"].to_numpy())
        ds, umap, imap = _build(label, allf, d, implicit=implicit)
        ds.splits["given"] = {
            p: _part(ds, f, umap, imap, txt[p], implicit) for p, f in frames.items()
        }
        return ds
    raise DataError(
        f"{d}: no pair lists found; expected train_list.npy/valid_list.npy/"
        f"test_list.npy or train.txt/valid.txt/test.txt"
    )
