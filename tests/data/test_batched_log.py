"""The batched path of the generic log reader (``read_log`` on a large CSV/TSV log): the same
Dataset as the careful reader, and the careful reader (with its messages) for every log the
batched path refuses. The size threshold is lowered here so that small files take it."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from genrec.data.readers import logs
from genrec.data.readers.batched import FastPathRefused, scan_log
from genrec.data.readers.logs import read_log
from genrec.errors import DataError


def _rows(n: int = 300, seed: int = 0, implicit: bool = False) -> list[tuple]:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 25, n) * 3
    items = rng.integers(1, 40, n) * 11
    stars = np.ones(n) if implicit else rng.integers(1, 11, n) / 2
    times = rng.integers(1_600_000_000, 1_600_000_040, n)  # ties: the stable order counts
    return list(zip(users, items, stars, times))


def _write(tmp_path, rows, sep=",", header="user,item,rating,timestamp", name="log.csv", fmt=None):
    p = tmp_path / name
    lines = [header.replace(",", sep)] + [sep.join(str(v) for v in r) for r in rows]
    p.write_text("\n".join(lines) + "\n")
    return p


def _same(a, b) -> None:
    assert a.name == b.name and a.implicit == b.implicit and a.rating_range == b.rating_range
    assert (a.interactions.matrix != b.interactions.matrix).nnz == 0
    np.testing.assert_array_equal(a.interactions.matrix.data, b.interactions.matrix.data)
    for f in ("user_ids", "item_ids", "times"):
        x, y = getattr(a.interactions, f), getattr(b.interactions, f)
        assert (x is None) == (y is None)
        if x is not None:
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
    assert (a.sequences is None) == (b.sequences is None)
    if a.sequences is not None:
        for f in ("offsets", "items", "times"):
            np.testing.assert_array_equal(getattr(a.sequences, f), getattr(b.sequences, f))


def _both(monkeypatch, path, caplog=None, **kw):
    """(batched, careful) reads of ``path``, and whether the batched read took the path."""
    calls = []

    def spying(real):
        def spy(*a, **k):
            calls.append(a[0])
            return real(*a, **k)

        return spy

    monkeypatch.setattr(logs, "scan_log", spying(logs.scan_log))
    monkeypatch.setattr(logs, "scan_parquet", spying(logs.scan_parquet))
    monkeypatch.setattr(logs, "BATCHED_LOG_BYTES", 0)
    fast = read_log(path, **kw)
    took = bool(calls) and not _refused(caplog)
    monkeypatch.setattr(logs, "BATCHED_LOG_BYTES", 1 << 62)
    careful = read_log(path, **kw)
    return fast, careful, took


def _refused(caplog) -> bool:
    return caplog is not None and any("read the careful way" in r.message for r in caplog.records)


@pytest.mark.parametrize("sep,name", [(",", "log.csv"), ("\t", "log.tsv")])
@pytest.mark.parametrize("duplicates", ["last", "first", "max"])
def test_the_batched_path_gives_the_careful_readers_dataset(
    tmp_path, monkeypatch, caplog, sep, name, duplicates
):
    caplog.set_level(logging.INFO, "genrec.data.readers")
    p = _write(tmp_path, _rows(), sep=sep, name=name)
    fast, careful, took = _both(monkeypatch, p, caplog, duplicates=duplicates)
    assert took
    _same(fast, careful)
    assert not fast.implicit and fast.sequences is not None


def test_implicit_logs_and_logs_without_time_or_rating(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, "genrec.data.readers")
    p = _write(tmp_path, _rows(implicit=True))
    fast, careful, took = _both(monkeypatch, p, caplog)
    assert took and fast.implicit
    _same(fast, careful)
    q = _write(tmp_path, [r[:2] for r in _rows()], header="user,item", name="ui.csv")
    fast, careful, took = _both(monkeypatch, q, caplog, ordered=True)
    assert took and fast.implicit and fast.interactions.times is None
    _same(fast, careful)


def test_mapped_columns_and_the_unused_column_warning(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, "genrec.data.readers")
    rows = [(*r, "x") for r in _rows()]
    p = _write(tmp_path, rows, header="uid,sku,stars,ts,note")
    kw = dict(user_col="uid", item_col="sku", rating_col="stars", time_col=None)
    fast, careful, took = _both(monkeypatch, p, caplog, **kw)
    assert took
    _same(fast, careful)
    warned = [r.message for r in caplog.records if "not read" in r.message]
    assert len(warned) == 2 and warned[0] == warned[1]  # the same warning on both paths


@pytest.mark.parametrize(
    "ids",
    [["07", "7"], ["+7", "8"], ["u1", "u2"], [" 7", "8"], ["99999999999999999999", "1"]],
)
def test_ids_the_careful_reader_keeps_as_text_refuse_the_batched_path(
    tmp_path, monkeypatch, caplog, ids
):
    caplog.set_level(logging.INFO, "genrec.data.readers")
    rows = [(ids[k % 2], 11 * (k % 5 + 1), 3.0 + k % 2, 1_600_000_000 + k) for k in range(40)]
    p = _write(tmp_path, rows)
    fast, careful, took = _both(monkeypatch, p, caplog)
    assert not took and _refused(caplog)
    _same(fast, careful)


def test_iso_dates_and_empty_fields_fall_back_to_the_careful_reader(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, "genrec.data.readers")
    rows = [(1, 2, 3.0, "2024-01-31T12:00:00"), (2, 3, 4.0, "2024-02-01T08:00:00")]
    p = _write(tmp_path, rows)
    fast, careful, took = _both(monkeypatch, p, caplog)
    assert not took
    _same(fast, careful)
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating,timestamp\n1,2,3,100\n1,,4,101\n")
    monkeypatch.setattr(logs, "BATCHED_LOG_BYTES", 0)
    with pytest.raises(DataError, match=r"bad\.csv, line 3"):  # the careful reader's message
        read_log(bad)


def test_ratings_that_are_times_get_the_careful_readers_message(tmp_path, monkeypatch):
    p = _write(tmp_path, [(1, 2, 1_600_000_000, 5), (2, 3, 1_600_000_001, 4)])
    monkeypatch.setattr(logs, "BATCHED_LOG_BYTES", 0)
    with pytest.raises(DataError, match="Unix times"):
        read_log(p)


def test_small_logs_and_other_formats_stay_on_the_careful_path(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(logs, "scan_log", lambda *a, **k: calls.append(a) or {})
    read_log(_write(tmp_path, _rows()))  # below the threshold
    monkeypatch.setattr(logs, "BATCHED_LOG_BYTES", 0)
    read_log(_write(tmp_path, _rows(), header="1,2,3,4", name="nh.csv"), header=False)
    quoted = tmp_path / "q.csv"
    quoted.write_text('"user","item"\n1,2\n3,4\n')
    read_log(quoted)
    assert calls == []


def test_scan_log_in_many_small_batches_equals_one(tmp_path):
    p = _write(tmp_path, _rows(2000))
    one = scan_log(p, ",", ["user", "item"], ["rating", "timestamp"])
    many = scan_log(p, ",", ["user", "item"], ["rating", "timestamp"], block_size=1 << 10)
    for k in one:
        np.testing.assert_array_equal(one[k], many[k])
    assert one["user"].dtype == np.int64 and one["rating"].dtype == np.float64
    with pytest.raises(FastPathRefused):
        scan_log(p, ",", ["user", "nope"], [])


def _parquet(tmp_path, frame, name="log.parquet"):
    p = tmp_path / name
    frame.to_parquet(p, index=False, row_group_size=64)  # several row groups
    return p


def test_parquet_logs_give_the_careful_readers_dataset(tmp_path, monkeypatch, caplog):
    import pandas as pd

    caplog.set_level(logging.INFO, "genrec.data.readers")
    rows = _rows(500)
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    frame = frame.astype({"user": "int32", "item": "int64", "rating": "float32"})
    fast, careful, took = _both(monkeypatch, _parquet(tmp_path, frame), caplog)
    assert took
    _same(fast, careful)


@pytest.mark.parametrize("change", ["float ids", "text ids", "dates", "null rating"])
def test_parquet_logs_the_batched_path_refuses(tmp_path, monkeypatch, caplog, change):
    import pandas as pd

    caplog.set_level(logging.INFO, "genrec.data.readers")
    frame = pd.DataFrame(_rows(200), columns=["user", "item", "rating", "timestamp"])
    if change == "float ids":
        frame["user"] = frame["user"].astype("float64")  # 3.0 is the id 3 to the careful reader
    elif change == "text ids":
        frame["item"] = "i" + frame["item"].astype(str)
    elif change == "dates":
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s")
    else:
        frame["rating"] = frame["rating"].astype("float64")
        frame.loc[5, "rating"] = None
    p = _parquet(tmp_path, frame)
    if change == "null rating":
        monkeypatch.setattr(logs, "BATCHED_LOG_BYTES", 0)
        with pytest.raises(DataError, match="row 5: column 'rating' has null"):
            read_log(p)
        assert _refused(caplog)
        return
    fast, careful, took = _both(monkeypatch, p, caplog)
    assert not took
    _same(fast, careful)


@pytest.mark.parametrize(
    "header",
    [
        "user,item, rating,timestamp",
        "user,item,rating,timestamp ",
        "\ufeffuser,item,rating,timestamp",
    ],
)
def test_header_names_the_careful_reader_strips_fall_back(tmp_path, monkeypatch, header):
    p = _write(tmp_path, _rows(50), header=header)
    fast, careful, took = _both(monkeypatch, p)
    assert not took
    _same(fast, careful)
    assert not fast.implicit


def test_logs_the_careful_reader_refuses_are_refused_with_the_batched_path_on(
    tmp_path, monkeypatch
):
    import pandas as pd

    monkeypatch.setattr(logs, "BATCHED_LOG_BYTES", 0)
    p = _write(tmp_path, _rows(20))
    with pytest.raises(DataError, match="stars"):  # a named rating column the log lacks
        read_log(p, rating_col="stars")
    frame = pd.DataFrame(_rows(20), columns=["user", "item", "rating", "timestamp"])
    indexed = tmp_path / "indexed.parquet"
    frame.set_index("user").to_parquet(indexed)  # 'user' is the pandas index, not a column
    with pytest.raises(DataError, match="user"):
        read_log(indexed)
    empty = tmp_path / "empty.csv"
    empty.write_text("user,item,rating,timestamp\n")
    with pytest.raises(DataError, match="no interactions"):
        read_log(empty)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"user,item,rating,note\n1,2,3,caf\xe9\n2,3,4,ok\n")
    monkeypatch.setattr(logs, "BATCHED_LOG_BYTES", 1 << 62)
    with pytest.raises(DataError) as careful:
        read_log(latin)
    monkeypatch.setattr(logs, "BATCHED_LOG_BYTES", 0)
    with pytest.raises(DataError) as fast:  # text that is not UTF-8 in a column not read
        read_log(latin)
    assert str(fast.value) == str(careful.value)


def test_long_separators_and_lone_cr_lines_take_the_careful_path(tmp_path, monkeypatch):
    colons = tmp_path / "log.csv"
    colons.write_text("user::item::rating\n1::2::3\n2::3::4\n")
    fast, careful, took = _both(monkeypatch, colons, sep="::")
    assert not took
    _same(fast, careful)
    cr = tmp_path / "cr.csv"
    cr.write_bytes(b"user,item,rating\r1,2,3\r2,3,4\r")
    monkeypatch.setattr(logs, "BATCHED_LOG_BYTES", 0)
    calls = []
    real = logs.scan_log
    monkeypatch.setattr(logs, "scan_log", lambda *a, **k: calls.append(a) or real(*a, **k))
    ds = read_log(cr)  # the careful reader reads lone-CR lines as lines
    assert calls == [] and ds.interactions.nnz == 2 and not ds.implicit
