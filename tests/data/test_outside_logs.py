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
