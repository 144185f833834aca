"""Readers of the MovieLens layouts: ml-100k, ml-1m, ml-10m and the ratings.csv releases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset
from genrec.data.readers._parse import (
    _build,
    _part,
    _read_table,
    build_arrays,
)
from genrec.data.readers.batched import FastPathRefused, have_pyarrow, scan_numeric

ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
ML1M_OCCUPATIONS = [
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
]


# ----------------------------------------------------------------------------- MovieLens
def read_ml100k(folder: str | Path, *, duplicates: str = "last") -> Dataset:
    """ML-100K: ``u.data`` (tab), ``u.item`` and ``u.user`` ('|', latin-1), folds u1..u5.

    The canonical folds become ``splits["u1"] .. splits["u5"]`` with parts ``train``
    (``uN.base``, or ``u.data`` minus ``uN.test`` when the base file is absent) and ``test``.
    """
    d = Path(folder)
    cols = ["user", "item", "rating", "timestamp"]
    ratings = _read_table(d / "u.data", "\t", cols, cols)
    item_cols = ["item_id", "title", "release", "video_release", "url"] + ML100K_GENRES
    items = None
    if (d / "u.item").is_file():
        raw = _read_table(
            d / "u.item", "|", item_cols, ["item_id"] + ML100K_GENRES, encoding="latin-1"
        )
        flags = raw[ML100K_GENRES].to_numpy().astype(bool)
        genres = ["|".join(g for g, f in zip(ML100K_GENRES, row) if f) for row in flags]
        items = pd.DataFrame(
            {"item_id": raw["item_id"].astype(np.int64), "title": raw["title"], "genres": genres}
        )
    users = None
    if (d / "u.user").is_file():
        raw = _read_table(
            d / "u.user",
            "|",
            ["user_id", "age", "gender", "occupation", "zip"],
            ["user_id", "age"],
            encoding="latin-1",
        )
        users = raw.assign(user_id=raw["user_id"].astype(np.int64), age=raw["age"].astype(int))
    ratings = ratings.astype({"user": np.int64, "item": np.int64})
    ds, umap, imap = _build(
        "ml-100k",
        ratings,
        d,
        rating_range=(1.0, 5.0),
        items=items,
        users=users,
        duplicates=duplicates,
    )
    for n in range(1, 6):
        test_path = d / f"u{n}.test"
        if not test_path.is_file():
            continue
        test = _read_table(test_path, "\t", cols, cols).astype({"user": np.int64, "item": np.int64})
        base_path = d / f"u{n}.base"
        if base_path.is_file():
            base = _read_table(base_path, "\t", cols, cols).astype(
                {"user": np.int64, "item": np.int64}
            )
        else:
            key = ratings["user"] * 10**7 + ratings["item"]
            base = ratings[~key.isin(test["user"] * 10**7 + test["item"])]
        ds.splits[f"u{n}"] = {
            "train": _part(ds, base, umap, imap, base_path),
            "test": _part(ds, test, umap, imap, test_path),
        }
    return ds


def _read_movies_dat(path: Path) -> pd.DataFrame:
    raw = _read_table(path, "::", ["item_id", "title", "genres"], ["item_id"], encoding="latin-1")
    return raw.assign(item_id=raw["item_id"].astype(np.int64))


def read_ml1m(folder: str | Path, *, duplicates: str = "last") -> Dataset:
    """ML-1M: ``ratings.dat``, ``movies.dat``, ``users.dat`` ('::', latin-1)."""
    d = Path(folder)
    cols = ["user", "item", "rating", "timestamp"]
    ratings = _read_table(d / "ratings.dat", "::", cols, cols, encoding="latin-1")
    ratings = ratings.astype({"user": np.int64, "item": np.int64})
    items = _read_movies_dat(d / "movies.dat") if (d / "movies.dat").is_file() else None
    users = None
    if (d / "users.dat").is_file():
        raw = _read_table(
            d / "users.dat",
            "::",
            ["user_id", "gender", "age", "occupation", "zip"],
            ["user_id", "age", "occupation"],
            encoding="latin-1",
        )
        occ = (
            raw["occupation"]
            .astype(int)
            .map(lambda c: ML1M_OCCUPATIONS[c] if 0 <= c < len(ML1M_OCCUPATIONS) else str(c))
        )
        users = raw.assign(
            user_id=raw["user_id"].astype(np.int64), age=raw["age"].astype(int), occupation=occ
        )[["user_id", "age", "gender", "occupation", "zip"]]
    return _build(
        "ml-1m",
        ratings,
        d,
        rating_range=(1.0, 5.0),
        items=items,
        users=users,
        duplicates=duplicates,
    )[0]


def read_ml10m(folder: str | Path, *, duplicates: str = "last") -> Dataset:
    """ML-10M (``ml-10M100K``): ``ratings.dat`` and ``movies.dat`` ('::'); half-star ratings."""
    d = Path(folder)
    cols = ["user", "item", "rating", "timestamp"]
    ratings = _read_table(d / "ratings.dat", "::", cols, cols, encoding="latin-1")
    ratings = ratings.astype({"user": np.int64, "item": np.int64})
    items = _read_movies_dat(d / "movies.dat") if (d / "movies.dat").is_file() else None
    return _build(
        "ml-10m", ratings, d, rating_range=(0.5, 5.0), items=items, duplicates=duplicates
    )[0]


def read_ml_csv(folder: str | Path, name: str = "ml-20m", *, duplicates: str = "last") -> Dataset:
    """ML-20M, ML-25M, ml-latest(-small): ``ratings.csv`` and ``movies.csv`` with headers."""
    d = Path(folder)
    cols = scan_ml_csv_ratings(d / "ratings.csv")
    if cols is not None:  # the batched path: a clean file, never a whole frame
        items = _ml_csv_movies(d)
        columns: dict[str, np.ndarray | None] = {
            "user": cols.pop("userId"),
            "item": cols.pop("movieId"),
            "rating": cols.pop("rating"),
            "timestamp": cols.pop("timestamp"),
        }
        return build_arrays(
            name,
            columns,
            d,
            rating_range=(0.5, 5.0),
            items=items,
            duplicates=duplicates,
        )[0]
    raw = _read_table(  # the careful path: its errors name the line and the field
        d / "ratings.csv",
        ",",
        ["userId", "movieId", "rating", "timestamp"],
        ["userId", "movieId", "rating", "timestamp"],
        header=True,
    )
    items = _ml_csv_movies(d)
    ratings = pd.DataFrame(
        {
            "user": raw["userId"].astype(np.int64),
            "item": raw["movieId"].astype(np.int64),
            "rating": raw["rating"],
            "timestamp": raw["timestamp"],
        }
    )
    return _build(name, ratings, d, rating_range=(0.5, 5.0), items=items, duplicates=duplicates)[0]


#: the columns of a MovieLens ratings.csv and the types the batched reader parses them as
ML_CSV_COLUMNS = {
    "userId": "int64",
    "movieId": "int64",
    "rating": "float32",
    "timestamp": "float64",
}


def scan_ml_csv_ratings(path: Path) -> dict[str, np.ndarray] | None:
    """The columns of a clean ``ratings.csv`` read in batches, or None when pyarrow is not
    installed or the file is not clean (then the careful reader reads it and names the
    problem)."""
    if not have_pyarrow() or not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            if f.readline().strip().decode("utf-8", "replace") != ",".join(ML_CSV_COLUMNS):
                return None  # another header: the careful reader says what is wrong
        cols = scan_numeric(path, ",", ML_CSV_COLUMNS)
    except (FastPathRefused, OSError):
        return None
    if not np.isin(cols["rating"], _ML_STARS).all():
        return None  # the careful reader's rules apply to anything unusual
    return cols


_ML_STARS = np.arange(1, 11, dtype=np.float32) / 2  # 0.5, 1.0, ..., 5.0


def _ml_csv_movies(d: Path) -> pd.DataFrame | None:
    items = None
    if (d / "movies.csv").is_file():
        m = _read_table(
            d / "movies.csv", ",", ["movieId", "title", "genres"], ["movieId"], header=True
        )
        items = pd.DataFrame(
            {"item_id": m["movieId"].astype(np.int64), "title": m["title"], "genres": m["genres"]}
        )
    return items
