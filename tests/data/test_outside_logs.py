"""Logs written outside the project (issue 27): header-less ``user item time`` lines,
``user item 1`` lines, folders of train/valid/test logs. Each test is named after the defect
it pins."""

import json

import pytest

from genrec.cli import main
from genrec.data import DataOptions, load_dataset
from genrec.data.readers import read_pair_lists
from genrec.errors import DataError
from genrec.protocols import ProtocolConfig, build_protocol


def _lines(rows) -> str:
    return "".join("\t".join(map(str, r)) + "\n" for r in rows)


def _uit_rows(n_users=6, n_items=5):
    """Every user rates every item, an hour apart: ``user item unix_time``."""
    return [
        (f"u{u}", f"i{(u + k) % n_items}", 1_400_000_000 + 3600 * (u * n_items + k))
        for u in range(n_users)
        for k in range(n_items)
    ]


def _error(path, **options) -> str:
    with pytest.raises(DataError) as e:
        load_dataset(path, DataOptions(**options))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------ 1: time read as the rating
def test_headerless_user_item_time_is_not_read_as_ratings(tmp_path):
    p = tmp_path / "sports_uit.tsv"
    p.write_text(_lines(_uit_rows()))
    msg = _error(p, header=False)
    assert msg.startswith(f"{p}, line 1: the rating field is 1400000000")
    assert "Unix times (1400000000 is 2014-05-13)" in msg
    assert "data.rating_col to ''" in msg


def test_headerless_user_item_time_reads_with_no_rating_column(tmp_path):
    rows = _uit_rows()
    p = tmp_path / "sports_uit.tsv"
    p.write_text(_lines(rows))
    ds = load_dataset(p, DataOptions(header=False, rating_col=""))
    assert ds.implicit and ds.rating_range is None
    inter = ds.interactions
    assert inter.times is not None and inter.nnz == len(rows)
    assert set(inter.matrix.data.tolist()) == {1.0}
    u, i, _ = inter.coo()
    got = {(inter.user_ids[a], inter.item_ids[b]) for a, b in zip(u, i)}
    assert got == {(r[0], r[1]) for r in rows}
    # the times are the third field: a per-user temporal split holds out each user's last
    pdata = build_protocol(ds, ProtocolConfig(name="loo"))
    t = pdata.test.truth.tocoo()
    last = {}
    for user, item, time in rows:
        if time > last.get(user, (0, None))[0]:
            last[user] = (time, item)
    held = {(inter.user_ids[a], inter.item_ids[b]) for a, b in zip(t.row, t.col)}
    assert held == {(user, item) for user, (_, item) in last.items()}


def test_headerless_millisecond_times_are_refused_too(tmp_path):
    p = tmp_path / "ms.tsv"
    p.write_text(_lines([("u0", "i0", 1_400_000_000_000), ("u1", "i0", 1_400_000_003_000)]))
    assert "Unix times (1400000000000 is 2014-05-13)" in _error(p, header=False)


def test_headerless_four_columns_with_times_in_the_rating_place_ask_for_a_header(tmp_path):
    p = tmp_path / "uitr.tsv"
    p.write_text(_lines([("u0", "i0", 1_400_000_000, 5), ("u1", "i0", 1_400_000_500, 3)]))
    msg = _error(p, header=False)
    assert "not ratings; give the log a header line" in msg


def test_headerless_ratings_below_unix_times_stay_ratings(tmp_path):
    # one value under 1e8 (3 here) and the column is ratings, as before
    p = tmp_path / "big.tsv"
    p.write_text(_lines([("u0", "i0", 1_400_000_000), ("u1", "i0", 3)]))
    ds = load_dataset(p, DataOptions(header=False))
    assert not ds.implicit and ds.rating_range == (3.0, 1_400_000_000.0)


def test_headerless_unix_times_through_the_cli_exit_1_without_traceback(tmp_path, capsys):
    p = tmp_path / "sports_uit.tsv"
    p.write_text(_lines(_uit_rows()))
    code = main(["data", "info", str(p), "--set", "data.header=false"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "Unix times" in err
    assert (
        main(["data", "info", str(p), "--set", "data.header=false", "--set", "data.rating_col="])
        == 0
    )


# ------------------------------------------------------------ 3: a rating column of 1s
def test_constant_rating_column_in_a_log_is_implicit(tmp_path):
    rows = [(f"u{u}", f"i{(u + k) % 7}", 1) for u in range(8) for k in range(4)]
    p = tmp_path / "ui1.tsv"
    p.write_text(_lines(rows))
    ds = load_dataset(p, DataOptions(header=False))
    assert ds.implicit and ds.rating_range is None
    # every row is a positive under the ranking protocols (no binarize_threshold applies)
    pdata = build_protocol(ds, ProtocolConfig(name="diffrec"))
    total = pdata.train.nnz + pdata.valid.truth.nnz + pdata.test.truth.nnz
    assert total == len(rows)


def test_constant_rating_column_is_implicit_in_logs_and_pair_lists_alike(tmp_path):
    rows = [(f"{u}", f"{(u + k) % 5}", 5) for u in range(4) for k in range(3)]
    log = tmp_path / "u5.csv"
    log.write_text("user,item,rating\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "train.txt").write_text("".join(" ".join(map(str, r)) + "\n" for r in rows[:-2]))
    (folder / "test.txt").write_text("".join(" ".join(map(str, r)) + "\n" for r in rows[-2:]))
    from_log, from_pairs = load_dataset(log), read_pair_lists(folder)
    assert from_log.implicit and from_pairs.implicit
    assert (from_log.interactions.matrix != from_pairs.interactions.matrix).nnz == 0
    # two values: explicit in both
    log.write_text("user,item,rating\n0,0,5\n1,0,4\n")
    (folder / "train.txt").write_text("0 0 5\n")
    (folder / "test.txt").write_text("1 0 4\n")
    assert not load_dataset(log).implicit and not read_pair_lists(folder).implicit


def test_no_rating_above_the_threshold_names_the_protocol_setting(tmp_path):
    p = tmp_path / "low.tsv"
    p.write_text(_lines([("u0", "i0", 1), ("u0", "i1", 2), ("u1", "i0", 3)]))
    ds = load_dataset(p, DataOptions(header=False))
    with pytest.raises(DataError) as e:
        build_protocol(ds, ProtocolConfig(name="diffrec"))
    assert str(e.value) == (
        "low: no interaction has a rating >= 4.0 (the highest is 3), so the ranking "
        "protocols have no positives; lower protocol.binarize_threshold"
    )
    pdata = build_protocol(ds, ProtocolConfig(name="diffrec", binarize_threshold=3.0))
    assert pdata.train.nnz + pdata.valid.truth.nnz + pdata.test.truth.nnz == 1


def test_user_item_1_log_trains_ease_through_the_cli(tmp_path, capsys):
    rows = [(f"u{u}", f"i{(u * 3 + k) % 11}", 1) for u in range(30) for k in range(6)]
    p = tmp_path / "ui1.tsv"
    p.write_text(_lines(rows))
    args = ["train", "--model", "ease", "--dataset", str(p), "--set", "data.header=false"]
    code = main([*args, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 0, err
    described = json.loads((tmp_path / "run" / "run.json").read_text())["protocol_description"]
    held = described["valid"]["truth"] + described["test"]["truth"]
    assert described["train_interactions"] + held == len(rows)  # every row a positive


# ------------------------------------------------------------ 14a: folders of split logs
def _split_rows():
    """Train, valid and test rows (user, item, rating) of 12 users over 9 items; every
    (user, item) pair occurs once."""
    parts = {"train": [], "valid": [], "test": []}
    for u in range(12):
        items = [(u * 2 + k) % 9 for k in range(7)]
        for k, i in enumerate(items):
            part = "train" if k < 5 else ("valid" if k == 5 else "test")
            parts[part].append((f"user-{u:03d}", f"sku{i}", 1 + (u + k) % 5))
    return parts


def _pairs(inter, matrix):
    m = matrix.tocoo()
    return {
        (inter.user_ids[a], inter.item_ids[b], float(v)) for a, b, v in zip(m.row, m.col, m.data)
    }


def test_folder_of_train_valid_test_csv_logs_is_read_as_its_given_split(tmp_path):
    rows = _split_rows()
    for part, part_rows in rows.items():
        text = "user,item,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r in part_rows)
        (tmp_path / f"{part}.csv").write_text(text)
    ds = load_dataset(tmp_path)
    assert not ds.implicit and ds.rating_range == (1.0, 5.0)
    inter = ds.interactions
    assert inter.nnz == sum(len(r) for r in rows.values())
    for part, part_rows in rows.items():
        given = ds.splits["given"][part]
        assert _pairs(inter, given.matrix) == {(u, i, float(r)) for u, i, r in part_rows}
    # the rating protocol tests on test.csv and validates on valid.csv, as given
    pdata = build_protocol(ds, ProtocolConfig(name="rating"))
    test = pdata.test
    got = {
        (inter.user_ids[a], inter.item_ids[b], float(r))
        for a, b, r in zip(test.users, test.items, test.ratings)
    }
    assert got == {(u, i, float(r)) for u, i, r in rows["test"]}
    assert len(pdata.valid.ratings) == len(rows["valid"])
    # diffrec ranks against the test file's liked items (rating >= 4)
    pdata = build_protocol(ds, ProtocolConfig(name="diffrec"))
    liked = {(u, i, 1.0) for u, i, r in rows["test"] if r >= 4}
    assert _pairs(inter, pdata.test.truth) == liked


def test_folder_of_headerless_train_test_tsv_logs_keeps_its_test_part(tmp_path):
    rows = _split_rows()
    train = rows["train"] + rows["valid"]
    t0 = 1_600_000_000
    (tmp_path / "train.tsv").write_text(_lines((u, i, t0 + k) for k, (u, i, _) in enumerate(train)))
    (tmp_path / "test.tsv").write_text(
        _lines((u, i, t0 + 10**6 + k) for k, (u, i, _) in enumerate(rows["test"]))
    )
    assert "Unix times" in _error(tmp_path, header=False)  # the rule of one log, per file
    ds = load_dataset(tmp_path, DataOptions(header=False, rating_col=""))
    assert ds.implicit and ds.interactions.times is not None
    assert set(ds.splits["given"]) == {"train", "test"}
    pdata = build_protocol(ds, ProtocolConfig(name="diffrec"))
    inter = ds.interactions
    assert _pairs(inter, pdata.test.truth) == {(u, i, 1.0) for u, i, _ in rows["test"]}
    # validation comes out of train.tsv only
    assert pdata.train.nnz + pdata.valid.truth.nnz == len(train)


def test_folder_of_parquet_split_logs_is_read(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    rows = _split_rows()
    for part in ("train", "test"):
        frame = pd.DataFrame(rows[part], columns=["user", "item", "rating"])
        frame.to_parquet(tmp_path / f"{part}.parquet")
    ds = load_dataset(tmp_path)
    assert ds.splits["given"]["test"].nnz == len(rows["test"])


def test_split_logs_with_different_columns_are_refused(tmp_path):
    (tmp_path / "train.csv").write_text("user,item,rating\na,x,5\nb,y,3\n")
    (tmp_path / "test.csv").write_text("user,item\na,y\n")
    msg = _error(tmp_path)
    assert msg == (
        f"{tmp_path / 'test.csv'}: no rating column (data.rating_col), but train.csv "
        f"has one; give every part the same columns"
    )


def test_split_logs_name_a_missing_test_part_and_a_part_given_twice(tmp_path):
    (tmp_path / "train.csv").write_text("user,item\na,x\n")
    (tmp_path / "valid.csv").write_text("user,item\na,y\n")
    assert "needs a train and a test file (found train.csv, valid.csv)" in _error(tmp_path)
    (tmp_path / "test.csv").write_text("user,item\nb,y\n")
    (tmp_path / "test.tsv.gz").write_bytes(b"")
    assert "the test part is given twice (test.csv, test.tsv.gz)" in _error(tmp_path)


def test_split_logs_ids_are_one_space_when_a_part_has_text_ids(tmp_path):
    (tmp_path / "train.csv").write_text("user,item\n7,1\n8,2\n")
    (tmp_path / "test.csv").write_text("user,item\n07,2\n7,2\n")
    ds = load_dataset(tmp_path)
    assert sorted(ds.interactions.user_ids.tolist()) == ["07", "7", "8"]
    test = ds.splits["given"]["test"]
    assert _pairs(ds.interactions, test.matrix) == {("07", 2, 1.0), ("7", 2, 1.0)}


def test_unknown_folder_lists_the_layouts_looked_for_not_a_format_that_cannot_fit(tmp_path):
    (tmp_path / "data.txt").write_text("a b\n")
    msg = _error(tmp_path)
    for looked in ("u.data", "ratings.dat", "ratings.csv", "train_list.npy", "train.txt"):
        assert looked in msg
    assert "train.csv + test.csv" in msg and "found data.txt" in msg
    assert "--format" not in msg and "format" not in msg.split("found data.txt")[1]
    msg = _error(tmp_path, format="csv")
    assert msg.startswith(f"{tmp_path}: a folder, and data.format csv reads one log file")


def test_split_folder_through_the_cli(tmp_path, capsys):
    rows = _split_rows()
    folder = tmp_path / "split"
    folder.mkdir()
    for part, part_rows in rows.items():
        text = "user,item,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r in part_rows)
        (folder / f"{part}.csv").write_text(text)
    assert main(["data", "info", str(folder)]) == 0
    assert "train 60, valid 12, test 12" in " ".join(capsys.readouterr().out.split())
    out = tmp_path / "run"
    code = main(["train", "--model", "ease", "--dataset", str(folder), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    described = json.loads((out / "run.json").read_text())["protocol_description"]
    assert described["test"]["truth"] == sum(r >= 4 for _, _, r in rows["test"])


def test_a_rating_column_mapped_to_unix_times_is_refused_with_a_header(tmp_path):
    """The same misreading in a log with a header: data.rating_col names its time column."""
    p = tmp_path / "log.csv"
    rows = [("reviewerID", "asin", "unixtime")] + _uit_rows()
    p.write_text("".join(",".join(map(str, r)) + "\n" for r in rows))
    msg = _error(p, user_col="reviewerID", item_col="asin", rating_col="unixtime", time_col=None)
    assert "the rating column 'unixtime' holds 1400000000" in msg
    assert "Unix times (1400000000 is 2014-05-13)" in msg and "data.rating_col" in msg
    ok = load_dataset(
        p, DataOptions(user_col="reviewerID", item_col="asin", rating_col="", time_col="unixtime")
    )
    assert ok.implicit and ok.interactions.times is not None


@pytest.mark.parametrize("protocol", ["loo", "diffrec"])
def test_a_split_without_timestamps_says_it_is_random(tmp_path, caplog, protocol):
    """Held-out items of a log without times are drawn at random: said in the log and in
    the protocol's description (run.json), not silently."""
    rows = _uit_rows(n_users=8)
    timed, untimed = tmp_path / "uit.tsv", tmp_path / "ui.tsv"
    timed.write_text(_lines(rows))
    untimed.write_text(_lines([(u, i) for u, i, _ in rows]))
    cfg = ProtocolConfig(name=protocol)
    with caplog.at_level("WARNING", logger="genrec.protocols"):
        pdata = build_protocol(load_dataset(untimed, DataOptions(header=False)), cfg)
    assert pdata.describe()["split_order"] == "random"
    assert "no timestamps" in caplog.text and "data.time_col" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="genrec.protocols"):
        ds = load_dataset(timed, DataOptions(header=False, rating_col=""))
        pdata = build_protocol(ds, cfg)
    assert pdata.describe()["split_order"] == "time" and "no timestamps" not in caplog.text
