"""Generic CSV/TSV logs: id types, encodings and the messages for malformed files."""

import numpy as np
import pytest

from genrec.data import DataOptions, Interactions, load_dataset
from genrec.data.readers import read_log, read_pair_lists
from genrec.errors import DataError
from genrec.protocols import build_protocol

TEXT_LOG = (
    "user,item,rating,timestamp\n"
    "u0,sku-12,3,1000\nu1,sku-1,4,1001\nu0,sku-1,5,1002\nu2,sku-12,2,1003\n"
)


def _write(tmp_path, content, name="log.csv"):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def _error(path, **kwargs) -> str:
    with pytest.raises(DataError) as e:
        load_dataset(path, DataOptions(**kwargs))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ----------------------------------------------------------------------------- id types
def test_ids_with_leading_zeros_stay_distinct_strings(tmp_path):
    p = _write(tmp_path, "user,item\n007,10\n7,11\n07,12\n1,10\n1,11\n")
    inter = load_dataset(p).interactions
    assert inter.user_ids.tolist() == ["007", "07", "1", "7"]
    assert inter.user_ids.dtype.kind == "U"
    assert inter.item_ids.dtype == np.int64  # canonical integers stay integers
    assert inter.nnz == 5


@pytest.mark.parametrize(
    "ids", [["+7", "8"], ["-0", "1"], ["1.0", "2"], ["99999999999999999999", "1"]]
)
def test_ids_that_do_not_round_trip_through_int_stay_strings(tmp_path, ids):
    p = _write(tmp_path, "user,item\n" + "".join(f"{u},5\n" for u in ids))
    inter = load_dataset(p).interactions
    assert inter.user_ids.dtype.kind == "U"
    assert sorted(inter.user_ids.tolist()) == sorted(ids)


def test_integer_ids_stay_integers(tmp_path):
    p = _write(tmp_path, "user,item\n10,-3\n0,20\n")
    inter = load_dataset(p).interactions
    assert inter.user_ids.tolist() == [0, 10] and inter.user_ids.dtype == np.int64
    assert inter.item_ids.tolist() == [-3, 20] and inter.item_ids.dtype == np.int64


def test_text_ids_are_fixed_width_unicode_everywhere(tmp_path):
    p = _write(tmp_path, TEXT_LOG)
    ds = load_dataset(p)
    arrays = [ds.interactions.user_ids, ds.interactions.item_ids]
    pdata = build_protocol(ds)
    arrays += [pdata.train.user_ids, pdata.train.item_ids]
    for a in arrays:
        assert a.dtype.kind == "U", a.dtype
    assert ds.interactions.item_ids.tolist() == ["sku-1", "sku-12"]
    np.savez(tmp_path / "ids.npz", user_ids=pdata.train.user_ids, item_ids=pdata.train.item_ids)
    with np.load(tmp_path / "ids.npz", allow_pickle=False) as z:
        assert z["item_ids"].tolist() == pdata.train.item_ids.tolist()


def test_object_id_arrays_become_unicode_or_integers():
    inter = Interactions.from_raw(
        np.array(["b", "a", "b"], dtype=object), np.array([3, 1, 3], dtype=object)
    )
    assert inter.user_ids.dtype.kind == "U" and inter.user_ids.tolist() == ["a", "b"]
    assert inter.item_ids.dtype == np.int64 and inter.item_ids.tolist() == [1, 3]


# ----------------------------------------------------------------------------- encodings
@pytest.mark.parametrize(
    "content,line",
    [
        ("user,item\nu1,caf\xe9\n".encode("latin-1"), 2),
        (b"us\xe9r,item\nu1,i1\n", 1),
        (b"\x93NUMPY\x01\x00v\x00{'descr': '<i8'}\n\x00\x00", 1),
        (bytes(range(256)) * 4, 2),
    ],
)
def test_non_utf8_files_give_one_line(tmp_path, content, line):
    p = _write(tmp_path, content)
    msg = _error(p)
    assert f"log.csv, line {line}: not UTF-8 text" in msg
    assert "save it as UTF-8" in msg


def test_npy_given_as_a_log(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(6).reshape(3, 2))
    with pytest.raises(DataError, match=r"x\.npy, line 1: not UTF-8 text.*save it as UTF-8"):
        read_log(tmp_path / "x.npy")


def test_non_utf8_pair_list_text(tmp_path):
    d = tmp_path / "p"
    d.mkdir()
    (d / "train.txt").write_bytes(b"u1 i1\nu2 caf\xe9\n")
    (d / "test.txt").write_bytes(b"u1 i1\n")
    with pytest.raises(DataError, match=r"train\.txt, line 2: not UTF-8 text"):
        read_pair_lists(d)


@pytest.mark.parametrize("name", ["log.csv", "log.tsv"])
def test_utf8_byte_order_mark_is_stripped(tmp_path, name):
    sep = "\t" if name.endswith("tsv") else ","
    text = TEXT_LOG.replace(",", sep)
    p = _write(tmp_path, "\ufeff" + text, name)
    ds = load_dataset(p)
    assert ds.interactions.user_ids.tolist() == ["u0", "u1", "u2"]
    assert ds.interactions.nnz == 4 and ds.interactions.times is not None


def test_byte_order_mark_in_movielens_csv(tmp_path):
    d = tmp_path / "ml-latest-small"
    d.mkdir()
    (d / "ratings.csv").write_text(
        "\ufeffuserId,movieId,rating,timestamp\n1,2,4.5,10\n", encoding="utf-8"
    )
    assert load_dataset(d).interactions.nnz == 1


def test_quoted_header(tmp_path):
    p = _write(tmp_path, '"user","item"\n"u 1","i,1"\n')
    assert load_dataset(p).interactions.item_ids.tolist() == ["i,1"]


# ----------------------------------------------------------------------------- layout
@pytest.mark.parametrize("blank", ["", "   ", ",,,", "\t"])
def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path, blank):
    lines = TEXT_LOG.splitlines()
    lines[2:2] = [blank, blank]
    lines.append("u3,sku-1,x,1")  # line 8 of the file
    p = _write(tmp_path, "\n".join(lines) + "\n")
    assert "line 8: field 'rating' has 'x'" in _error(p)
    del lines[-1]
    p.write_text("\n".join(lines) + "\n\n")
    assert load_dataset(p).interactions.nnz == 4


def test_blank_lines_in_two_column_log(tmp_path):
    p = _write(tmp_path, "user,item\nu1,i1\n\nu2,i2\n")
    assert load_dataset(p).interactions.nnz == 2


def test_short_line_is_reported_as_short(tmp_path):
    p = _write(tmp_path, TEXT_LOG + "u3,sku-1\n")
    msg = _error(p)
    assert "log.csv, line 6 has 2 fields, the header has 4" in msg
    p = _write(tmp_path, "user,item\nu1,i1\nu2\n")
    assert "log.csv, line 3 has 1 field, the header has 2" in _error(p)


def test_short_line_in_headerless_movielens_file(tmp_path):
    d = tmp_path / "ml-1m"
    d.mkdir()
    (d / "ratings.dat").write_text("1::2::5::100\n1::3\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"ratings\.dat, line 2 has 2 fields, expected 4"):
        load_dataset(d, DataOptions(format="ml-10m"))


def test_line_numbers_count_line_breaks_inside_quoted_fields(tmp_path):
    head = 'user,item,rating\nu1,"the\nlong\nname",5\n'  # the record spans lines 2-4
    assert "line 6: field 'rating' has 'x'" in _error(_write(tmp_path, head + "u2,i2,4\nu3,i3,x\n"))
    assert "line 5 has 2 fields" in _error(_write(tmp_path, head + "u2,i2\n"))
    p = _write(tmp_path, head + 'u2,"two\nlines"\n')  # a short record that spans lines
    assert "line 5 has 2 fields, the header has 3" in _error(p)
    assert load_dataset(_write(tmp_path, head)).interactions.item_ids.tolist() == [
        "the\nlong\nname"
    ]


def test_empty_id_is_still_reported_as_empty(tmp_path):
    p = _write(tmp_path, "user,item,rating\nu1,i1,5\n,i2,4\n")
    assert "log.csv, line 3: field 'user' is empty" in _error(p)


@pytest.mark.parametrize(
    "content,fmt", [("u0,sku-12,4,1000\nu1,sku-3,5,1001\n", "csv"), ("1\t2\n3\t4\n", "tsv")]
)
def test_missing_header_line_is_named(tmp_path, content, fmt):
    p = _write(tmp_path, content, f"log.{fmt}")
    msg = _error(p)
    assert "looks like data, not a header" in msg
    assert "set data.header=false" in msg
    assert "add a header line naming them (user, item[, rating][, timestamp]" in msg
    opts = DataOptions(header=False)
    ds = load_dataset(p, opts)  # the same file read by position
    assert ds.interactions.nnz == 2
    assert ds.interactions.user_ids.tolist() == (["u0", "u1"] if fmt == "csv" else [1, 3])
    assert ds.implicit == (fmt == "tsv") and (ds.interactions.times is not None) == (fmt == "csv")


def test_headerless_log_takes_two_to_four_fields(tmp_path):
    p = _write(tmp_path, "1\t2\t5\t1000\t7\n", "log.tsv")
    with pytest.raises(DataError, match="5 field.*without a header has 2 to 4"):
        load_dataset(p, DataOptions(header=False))
    p = _write(tmp_path, "1\t2\t4\n3\t4\n", "log.tsv")  # a short line is reported as usual
    with pytest.raises(DataError, match="line 2"):
        load_dataset(p, DataOptions(header=False))


def test_wrong_header_still_suggests_the_mapping(tmp_path):
    p = _write(tmp_path, "uid,sku,stars\nu1,i1,5\n")
    msg = _error(p)
    assert msg.endswith(
        "log.csv: no column 'user' for the user ids (data.user_col) or 'item' for the "
        "item ids (data.item_col); the columns are uid, sku, stars: set each setting to "
        "the name of its column"
    )  # both missing columns at once
    assert "looks like data" not in msg
    assert (
        load_dataset(
            p, DataOptions(user_col="uid", item_col="sku", rating_col="stars")
        ).interactions.nnz
        == 1
    )


def test_nan_id_is_reported_with_its_file_line(tmp_path):
    p = _write(tmp_path, "user,item\nu1,i1\n\nNaN,i2\n")
    assert "log.csv, line 4: missing user id ('NaN') in column 'user'" in _error(p)


@pytest.mark.parametrize("sep,hint", [("\t", "data.sep='\\t'"), (";", "data.sep=';'")])
def test_a_header_split_on_another_separator_names_it(tmp_path, sep, hint):
    path = tmp_path / "log.csv"
    path.write_text(
        sep.join(["user", "item", "rating"])
        + "\n"
        + sep.join(["u1", "i1", "5"])
        + "\n"
        + sep.join(["u2", "i2", "4"])
        + "\n"
    )
    with pytest.raises(DataError, match="the header is one field") as e:
        read_log(path)
    assert hint in str(e.value)
    typed = "\\t" if sep == "\t" else sep  # what the shell passes for --set data.sep='\t'
    assert read_log(path, sep=typed).interactions.nnz == 2


def test_a_repeated_header_name_is_refused(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("user,user,item\nu1,u9,i1\nu2,u8,i2\n")
    with pytest.raises(DataError, match="names column 'user' more than once"):
        read_log(p)


def test_a_named_rating_or_time_column_must_exist(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("uid,sku,ts,stars\nu1,a,2024-01-01,5\nu2,b,2024-01-02,3\n")
    for key, value in (("rating_col", "star"), ("time_col", "time")):
        with pytest.raises(DataError, match=f"no column '{value}'.*data.{key}.*ts, stars"):
            read_log(p, user_col="uid", item_col="sku", **{key: value})
    ds = read_log(p, user_col="uid", item_col="sku", rating_col="stars", time_col="ts")
    assert not ds.implicit and ds.interactions.times is not None


def test_columns_left_unread_are_named(tmp_path, caplog):
    p = tmp_path / "log.csv"
    p.write_text("uid,sku,ts,stars\nu1,a,2024-01-01,5\nu2,b,2024-01-02,3\n")
    with caplog.at_level("WARNING"):
        ds = read_log(p, user_col="uid", item_col="sku")  # the default names are not there
    assert ds.implicit
    assert "'ts', 'stars' not read" in caplog.text and "as implicit feedback" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        read_log(p, user_col="uid", item_col="sku", rating_col="stars", time_col="ts")
    assert caplog.text == ""


def test_empty_rating_column_setting_reads_the_log_as_implicit(tmp_path):
    p = _write(tmp_path, "user,item,rating\nu1,i1,5\nu2,i2,1\n")
    assert load_dataset(p, DataOptions(rating_col="")).implicit  # '' = no rating column
    p = _write(tmp_path, "\nu1,i1,1000\nu2,i2,1001\n", "t.csv")  # blank first line skipped
    ds = load_dataset(p, DataOptions(header=False, rating_col=""))
    assert ds.implicit and ds.interactions.times is not None


# issue 28, defect 13: input edge cases
@pytest.mark.parametrize("value", ["1e39", "-1e39", "1e38", "3.4e38"])
def test_a_rating_beyond_float32_arithmetic_is_refused_naming_the_line(tmp_path, value):
    # 1e39 overflowed to inf in float32 past the finite check; 1e38 fits but its square
    # (every rating loss) overflows
    p = _write(tmp_path, f"user,item,rating\nu0,i0,4\nu1,i1,{value}\n")
    msg = _error(p)
    assert f"{p}, line 3" in msg and f"'rating' has '{value}'" in msg and "rescale" in msg
    assert "1.84e+19" in msg


def test_a_rating_within_the_limit_is_read_exactly(tmp_path):
    p = _write(tmp_path, "user,item,rating\nu0,i0,4\nu1,i1,1e19\n")
    ds = load_dataset(p, DataOptions())
    assert sorted(ds.interactions.matrix.data.tolist()) == [4.0, np.float32(1e19)]


def test_a_rating_beyond_the_limit_in_a_parquet_log_names_the_row(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    p = tmp_path / "log.parquet"
    pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [4.0, 1e39]}).to_parquet(p)
    msg = _error(p)
    assert f"{p}, row 1: column 'rating' has 1e+39" in msg and "rescale" in msg


def test_ratings_beyond_the_limit_are_refused_by_from_arrays():
    ids = np.arange(2)
    with pytest.raises(DataError, match=r"ratings\[1\] is 1e\+39"):
        Interactions.from_arrays(ids, ids, np.array([4.0, 1e39]), user_ids=ids, item_ids=ids)


def test_iso_dates_in_year_9999_are_read_in_order(tmp_path):
    # the seconds since 1970 were a nanosecond subtraction: OutOfBoundsDatetime past 2262
    p = _write(
        tmp_path,
        "user,item,rating,timestamp\nu0,i0,4,9999-12-31T00:00:00\nu0,i1,5,2024-01-01T00:00:00+01:00\n",
    )
    ds = load_dataset(p, DataOptions())
    times = sorted(ds.interactions.times.tolist())
    assert times == [1704063600.0, 253402214400.0]  # 2023-12-31T23:00Z; 9999-12-31T00:00Z


def test_parquet_timestamps_in_year_9999_are_read(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    p = tmp_path / "log.parquet"
    when = np.array(["2024-01-01", "9999-12-31"], dtype="datetime64[s]")
    pd.DataFrame(
        {"user": [1, 1], "item": [1, 2], "rating": [4.0, 5.0], "timestamp": when}
    ).to_parquet(p)
    ds = load_dataset(p, DataOptions())
    assert sorted(ds.interactions.times.tolist()) == [1704067200.0, 253402214400.0]


def test_a_pair_list_rating_beyond_the_limit_names_the_line(tmp_path):
    d = tmp_path / "pairs"
    d.mkdir()
    (d / "train.txt").write_text("0 0 4\n0 1 1e39\n")
    (d / "test.txt").write_text("1 0 3\n")
    with pytest.raises(DataError, match=r"train.txt, line 2: rating is 1e39, beyond"):
        read_pair_lists(d)
