"""The batched reader of MovieLens ratings.csv: the same Dataset as the careful reader, in
many batches as in one, the careful reader's line-naming errors for a file it refuses, and
no frame of the whole file on the clean path."""

from __future__ import annotations

import numpy as np
import pytest

from genrec.data.readers import batched, movielens
from genrec.data.readers.batched import FastPathRefused, scan_numeric
from genrec.data.readers.movielens import read_ml_csv
from genrec.errors import DataError

HEADER = "userId,movieId,rating,timestamp\n"


def _ratings(n: int = 400, seed: int = 0) -> str:
    """Rows out of time order, with ties and repeated (user, movie) pairs."""
    rng = np.random.default_rng(seed)
    users = rng.integers(1, 30, n)
    movies = rng.integers(1, 50, n) * 7
    stars = rng.integers(1, 11, n) / 2
    times = rng.integers(964_000_000, 964_000_050, n)
    rows = [f"{u},{m},{s:.1f},{t}" for u, m, s, t in zip(users, movies, stars, times)]
    return HEADER + "\n".join(rows) + "\n"


def _folder(tmp_path, text: str):
    d = tmp_path / "ml-20m"
    d.mkdir()
    (d / "ratings.csv").write_text(text)
    (d / "movies.csv").write_text('movieId,title,genres\n7,"A (1995)",Comedy\n14,B (1996),Drama\n')
    return d


def _same(a, b) -> None:
    assert (a.interactions.matrix != b.interactions.matrix).nnz == 0
    np.testing.assert_array_equal(a.interactions.user_ids, b.interactions.user_ids)
    np.testing.assert_array_equal(a.interactions.item_ids, b.interactions.item_ids)
    np.testing.assert_array_equal(a.interactions.times, b.interactions.times)
    for f in ("offsets", "items", "times"):
        np.testing.assert_array_equal(getattr(a.sequences, f), getattr(b.sequences, f))
    assert a.items.fillna("").equals(b.items.fillna(""))


@pytest.mark.parametrize("duplicates", ["last", "first", "max"])
def test_the_batched_path_gives_the_careful_readers_dataset(tmp_path, monkeypatch, duplicates):
    d = _folder(tmp_path, _ratings())
    fast = read_ml_csv(d, duplicates=duplicates)
    monkeypatch.setattr(movielens, "scan_ml_csv_ratings", lambda path: None)
    careful = read_ml_csv(d, duplicates=duplicates)
    _same(fast, careful)


def test_a_clean_file_never_goes_through_the_careful_reader(tmp_path, monkeypatch):
    d = _folder(tmp_path, _ratings())

    def refuse(path, *a, **k):
        if path.name == "ratings.csv":
            raise AssertionError("the careful reader read ratings.csv")
        return real(path, *a, **k)

    real = movielens._read_table
    monkeypatch.setattr(movielens, "_read_table", refuse)
    assert read_ml_csv(d).interactions.nnz > 0


def test_many_small_batches_equal_one(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text(_ratings(300, seed=2))
    cols = {"userId": "int64", "movieId": "int64", "rating": "float32", "timestamp": "float64"}
    small = scan_numeric(p, ",", cols, block_size=256)
    whole = np.loadtxt(p, delimiter=",", skiprows=1)
    for j, c in enumerate(cols):
        assert small[c].dtype == np.dtype(cols[c])
        np.testing.assert_array_equal(small[c], whole[:, j].astype(cols[c]))


@pytest.mark.parametrize(
    "bad_line, line_no",
    [
        ("5,14,four,964000001", 4),
        ("5,14,4.0", 4),
        ("5,,4.0,964000001", 4),
        ("5,14,inf,964000001", 4),
    ],
)
def test_a_file_the_batched_path_refuses_gets_the_careful_readers_error(
    tmp_path, bad_line, line_no
):
    text = HEADER + "1,7,4.0,964000000\n2,14,3.5,964000001\n" + bad_line + "\n3,7,1.0,964000002\n"
    d = _folder(tmp_path, text)
    cols = {"userId": "int64", "movieId": "int64", "rating": "float32", "timestamp": "float64"}
    with pytest.raises(FastPathRefused):
        scan_numeric(d / "ratings.csv", ",", cols)
    with pytest.raises(DataError, match=f"line {line_no}") as e:
        read_ml_csv(d)
    assert "ratings.csv" in str(e.value) and "\n" not in str(e.value)


def test_without_pyarrow_the_careful_reader_reads(tmp_path, monkeypatch):
    d = _folder(tmp_path, _ratings(100))
    fast = read_ml_csv(d)
    monkeypatch.setattr(movielens, "have_pyarrow", lambda: False)
    _same(read_ml_csv(d), fast)
    assert batched.have_pyarrow()  # the extra is installed where the suite runs
