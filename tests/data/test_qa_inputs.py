"""Inputs found in QA: long rows, infinities, compressed logs, ISO dates, column mappings,
empty pair lists, duplicate messages and the protocol checks on degenerate data."""

import bz2
import gzip
import lzma

import numpy as np
import pandas as pd
import pytest

from genrec.data import Interactions, load_dataset
from genrec.data.dataset import Dataset
from genrec.data.splits import strong_generalization_split
from genrec.errors import DataError
from genrec.protocols import ProtocolConfig, build_protocol
from tests.data.test_logs import _error, _write


# ----------------------------------------------------------------------------- long rows
@pytest.mark.parametrize(
    "content",
    [
        "user,item,rating\nalice,i1,4,5\nbob,i2,5,3\n",  # every row one field too many
        "user,item,rating\nalice,i1,4,\nbob,i2,5,\n",  # trailing separators
        "user,item,rating\nalice,i1,4,5\nbob,i2,5\n",  # the first row only
    ],
)
def test_rows_longer_than_the_header_are_refused_not_shifted(tmp_path, content):
    # pandas made the first column an index, shifting users into items and items into ratings
    msg = _error(_write(tmp_path, content))
    assert "line 2 has 4 fields, the header has 3" in msg


def test_long_rows_in_movielens_dat_name_the_file_separator(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1::5::978300760::9\n2::2::4::978300761::9\n")
    msg = _error(tmp_path, format="ml-10m")
    assert "line 1 has 5 fields, expected 4" in msg and "'::'" in msg
    (tmp_path / "ratings.dat").write_text("1::1::5::978300760\n1::2::4\n")
    msg = _error(tmp_path, format="ml-10m")
    assert "line 2 has 3 fields" in msg and "'::'" in msg and "'\\t'" not in msg


# ----------------------------------------------------------------------------- numbers
@pytest.mark.parametrize(
    "rating,stamp,field",
    [("inf", "1", "rating"), ("1e400", "1", "rating"), ("4", "-inf", "timestamp")],
)
def test_infinite_values_are_refused(tmp_path, rating, stamp, field):
    p = _write(tmp_path, f"user,item,rating,timestamp\na,1,4,1\nb,2,{rating},{stamp}\n")
    msg = _error(p)
    assert "line 3" in msg and repr(field) in msg


def test_infinite_or_null_parquet_values_are_refused(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "log.parquet"
    pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [4.0, np.inf]}).to_parquet(p)
    assert "row 1" in _error(p) and "'rating'" in _error(p)
    pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [4.0, None]}).to_parquet(p)
    msg = _error(p)
    assert "row 1" in msg and "null" in msg and "np.float64" not in msg


# ----------------------------------------------------------------------------- compression
@pytest.mark.parametrize(
    "suffix,compress",
    [
        (".csv.gz", gzip.compress),
        (".tsv.gz", gzip.compress),
        (".csv.bz2", bz2.compress),
        (".tsv.xz", lzma.compress),
    ],
)
def test_compressed_logs_are_read(tmp_path, suffix, compress):
    sep = "\t" if ".tsv" in suffix else ","
    text = (
        sep.join(["user", "item", "rating"])
        + "\n"
        + sep.join(["u1", "i1", "4"])
        + "\n"
        + sep.join(["u2", "i2", "5"])
        + "\n"
    )
    ds = load_dataset(_write(tmp_path, compress(text.encode()), "log" + suffix))
    assert ds.interactions.nnz == 2 and ds.interactions.user_ids.tolist() == ["u1", "u2"]
    assert ds.name == "log"


def test_truncated_gzip_is_one_line(tmp_path):
    data = gzip.compress(b"user,item\n" + b"u,i\n" * 1000)
    msg = _error(_write(tmp_path, data[: len(data) // 2], "log.csv.gz"))
    assert "log.csv.gz" in msg and "truncated or corrupt" in msg


# ----------------------------------------------------------------------------- timestamps
def test_iso_timestamps_become_seconds(tmp_path):
    p = _write(
        tmp_path,
        "user,item,timestamp\na,1,2020-01-01\na,2,2020-01-01T01:00:00+01:00\n"
        "b,1,2020-01-02 00:00:01\n",
    )
    ds = load_dataset(p)
    assert ds.interactions.times.tolist() == [1577836800.0, 1577836800.0, 1577923201.0]


@pytest.mark.parametrize(
    "stamps,line", [("2020-01-01,1577836800", 2), ("1,yesterday", 3), ("2020-01-01,", 3)]
)
def test_bad_or_mixed_timestamps_name_the_line(tmp_path, stamps, line):
    a, b = stamps.split(",")
    msg = _error(_write(tmp_path, f"user,item,timestamp\nu,1,{a}\nu,2,{b}\n"))
    assert f"line {line}" in msg and "ISO 8601" in msg


def test_parquet_datetimes_become_seconds(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "log.parquet"
    pd.DataFrame(
        {"user": [1, 2], "item": [1, 2], "timestamp": pd.to_datetime(["2020-01-01", "2020-01-02"])}
    ).to_parquet(p)
    assert load_dataset(p).interactions.times.tolist() == [1577836800.0, 1577923200.0]


# ----------------------------------------------------------------------------- mapping
def test_one_column_for_two_roles_is_refused(tmp_path):
    p = _write(tmp_path, "user,item\na,1\n")
    msg = _error(p, item_col="user")
    assert "user_col" in msg and "item_col" in msg and "'user'" in msg


def test_duplicate_error_names_the_file_and_the_option(tmp_path):
    p = _write(tmp_path, "user,item\na,1\na,1\n")
    msg = _error(p, duplicates="error")
    assert str(p) in msg and "data.duplicates" in msg


# ----------------------------------------------------------------------------- pair lists
def test_empty_npy_pair_lists_are_one_error(tmp_path):
    for part in ("train", "test"):
        np.save(tmp_path / f"{part}_list.npy", np.zeros((0, 2), np.int64))
    assert "no interactions" in _error(tmp_path)


def test_given_train_test_without_valid_keeps_the_given_test(tmp_path):
    rng = np.random.default_rng(0)
    train = [f"{u} {i}" for u in range(20) for i in rng.choice(30, 8, replace=False)]
    test = [f"{u} {30 + u % 4}" for u in range(20)]
    (tmp_path / "train.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(test) + "\n")
    ds = load_dataset(tmp_path)
    given = ds.splits["given"]
    p = build_protocol(ds, ProtocolConfig(seed=1))
    assert (p.test.truth != given["test"].matrix).nnz == 0  # the given test part, untouched
    assert p.train.matrix.multiply(given["test"].matrix).nnz == 0
    assert p.valid.truth.multiply(given["test"].matrix).nnz == 0
    assert p.train.nnz + p.valid.truth.nnz == given["train"].nnz
    assert p.valid.truth.nnz > 0
    again = build_protocol(ds, ProtocolConfig(seed=1))
    assert (again.valid.truth != p.valid.truth).nnz == 0


# ----------------------------------------------------------------------------- protocols
def _dataset(users, items):
    inter = Interactions.from_raw(np.array(users), np.array(items))
    return Dataset("tiny", inter, implicit=True)


def test_loo_without_test_items_is_an_error_not_nan():
    ds = _dataset([0, 0, 1, 1], [0, 1, 0, 2])  # nobody has 3 interactions
    with pytest.raises(DataError, match="no test interactions"):
        build_protocol(ds, ProtocolConfig(name="loo"))


@pytest.mark.parametrize("n_active", [0, 1, 2])
def test_strong_with_too_few_users_says_how_many_are_needed(n_active):
    users = [u for u in range(n_active) for _ in range(2)] + [9]
    inter = Interactions.from_raw(np.array(users), np.arange(len(users)))
    with pytest.raises(DataError) as e:
        strong_generalization_split(inter, 0.1)
    msg = str(e.value)
    assert "at least 3 users" in msg and f"found {n_active}" in msg and "< 0" not in msg


def test_strong_n_heldout_out_of_range_names_the_range():
    users = [u for u in range(7) for _ in range(2)]
    inter = Interactions.from_raw(np.array(users), np.arange(len(users)))
    with pytest.raises(DataError, match=r"1 to 3 users per side.*is 0"):
        strong_generalization_split(inter, 0.01)
    with pytest.raises(DataError, match=r"1 to 3 users per side.*is 4"):
        strong_generalization_split(inter, 4)
    assert strong_generalization_split(inter, 3)["train"].nnz == 2
