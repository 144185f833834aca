"""A new user's messy logs (issue 27, the reader defects left open): header-less logs whose
columns are named with ``data.columns``, a header read as data and data read as a header,
binary files given as text, and a file split on the wrong separator. Each test is named
after the defect it pins."""

import gzip
import zipfile

import pytest

from genrec.cli import main
from genrec.config import build_config
from genrec.data import DataOptions, load_dataset
from genrec.errors import ConfigError, DataError

# user, item, rating, unix time: every user rates three items, a day apart
ROWS = [
    (f"u{u}", f"i{(u + k) % 5}", 1 + (u + 2 * k) % 5, 1_400_000_000 + 86_400 * (3 * u + k))
    for u in range(4)
    for k in range(3)
]


def _log(tmp_path, rows=ROWS, name="log.tsv", sep="\t", header=None):
    p = tmp_path / name
    lines = ([sep.join(header)] if header else []) + [sep.join(map(str, r)) for r in rows]
    p.write_text("\n".join(lines) + "\n")
    return p


def _error(path, **options) -> str:
    with pytest.raises(DataError) as e:
        load_dataset(path, DataOptions(**options))
    msg = str(e.value)
    assert "\n" not in msg and "--" not in msg  # one line, naming settings, never flags
    return msg


def _pairs(ds) -> dict:
    """{(raw user, raw item): (value, time)} of a data set."""
    inter = ds.interactions
    u, i, v = inter.coo()
    m = inter.matrix.tocsr()
    times = inter.times
    out = {}
    for a, b, x in zip(u, i, v):
        pos = m.indptr[a] + list(m.indices[m.indptr[a] : m.indptr[a + 1]]).index(b)
        out[(inter.user_ids[a], inter.item_ids[b])] = (float(x), float(times[pos]))
    return out


# ------------------------------------------------------- 1: names of header-less columns
def test_headerless_log_honours_column_names(tmp_path):
    p = _log(tmp_path)
    ds = load_dataset(
        p,
        DataOptions(
            header=False,
            columns="uid,sku,stars,ts",
            user_col="uid",
            item_col="sku",
            rating_col="stars",
            time_col="ts",
        ),
    )
    assert not ds.implicit and ds.rating_range == (1.0, 5.0)
    assert _pairs(ds) == {(u, i): (float(r), float(t)) for u, i, r, t in ROWS}


def test_headerless_log_drops_its_rating_column_by_name(tmp_path):
    p = _log(tmp_path)
    opts = DataOptions(
        header=False, columns="user,item,rating,time", rating_col="", time_col="time"
    )
    ds = load_dataset(p, opts)
    assert ds.implicit and ds.rating_range is None
    assert _pairs(ds) == {(u, i): (1.0, float(t)) for u, i, _, t in ROWS}


def test_headerless_four_columns_drop_the_rating_with_rating_col_empty(tmp_path):
    # user item rating time with data.rating_col='' was "4 fields, 2 to 3" before
    ds = load_dataset(_log(tmp_path), DataOptions(header=False, rating_col=""))
    assert ds.implicit and _pairs(ds) == {(u, i): (1.0, float(t)) for u, i, _, t in ROWS}


def test_headerless_log_skips_a_field_with_an_empty_name(tmp_path, caplog):
    with caplog.at_level("WARNING"):
        ds = load_dataset(_log(tmp_path), DataOptions(header=False, columns="user,item,,timestamp"))
    assert ds.implicit and _pairs(ds) == {(u, i): (1.0, float(t)) for u, i, _, t in ROWS}
    assert caplog.text == ""  # a field skipped by name is not "left unread"


def test_headerless_three_columns_keep_the_user_item_time_default(tmp_path):
    rows = [(u, i, t) for u, i, _, t in ROWS]
    ds = load_dataset(_log(tmp_path, rows), DataOptions(header=False, rating_col=""))
    assert ds.implicit and _pairs(ds) == {(u, i): (1.0, float(t)) for u, i, t in rows}
    msg = _error(_log(tmp_path, rows), header=False)  # defect 1 of issue 27 stays
    assert "Unix times" in msg and "data.rating_col to ''" in msg


def test_headerless_log_refuses_a_column_name_that_matches_nothing(tmp_path):
    p = _log(tmp_path)
    msg = _error(p, header=False, user_col="uid")  # was read by position, the name ignored
    assert msg.startswith(f"{p}: data.user_col=uid names a column, but a log without a header")
    assert "its 4 fields are read as user, item, rating, timestamp by position" in msg
    assert "data.columns=uid,item,rating,timestamp" in msg and "leave data.user_col out" in msg
    msg = _error(p, header=False, columns="user,item,rating,time", time_col="ts")
    assert (
        "no column 'ts' for the timestamps (data.time_col) among the names of data.columns" in msg
    )
    msg = _error(p, header=False, columns="uid,sku,rating,time")
    assert "'user' for the user ids (data.user_col) or 'item' for the item ids" in msg
    msg = _error(p, header=False, columns="user,item,rating")
    assert "line 1: 4 fields separated by '\\t', but data.columns names 3" in msg


def test_headerless_log_with_more_fields_than_four_points_to_the_columns_setting(tmp_path):
    rows = [r + ("x",) for r in ROWS]
    msg = _error(_log(tmp_path, rows), header=False)
    assert (
        "5 field(s)" in msg
        and "name more with data.columns (e.g. user,item,rating,timestamp,;" in msg
    )
    opts = DataOptions(header=False, columns="user,item,rating,timestamp,")
    assert load_dataset(_log(tmp_path, rows), opts).interactions.nnz == len(ROWS)


def test_columns_setting_needs_a_headerless_log(tmp_path):
    with pytest.raises(ValueError, match="set header=false with it"):
        DataOptions(columns="user,item")
    with pytest.raises(ConfigError, match="data: columns 'user,item,user' names 'user' more"):
        build_config(DataOptions, {"header": False, "columns": "user,item,user"}, where="data")


def test_columns_setting_through_the_cli(tmp_path, capsys):
    p = _log(tmp_path)
    out = tmp_path / "info.json"
    args = ["data", "info", str(p), "--set", "data.header=false", "--output", str(out)]
    assert main(args + ["--set", "data.columns=user,item,,timestamp"]) == 0
    assert '"implicit": true' in out.read_text() and '"timestamps": true' in out.read_text()
    capsys.readouterr()
    assert main(args + ["--set", "data.user_col=uid"]) == 1
    err = capsys.readouterr().err
    assert "data.user_col=uid names a column" in err and "Traceback" not in err


# ------------------------------------------------- 2: a header read with data.header=false
@pytest.mark.parametrize(
    "header,why",
    [
        (("user", "item", "rating", "timestamp"), "words where the lines below hold numbers"),
        (("u", "i", "r", "t"), "words where the lines below hold numbers"),
    ],
)
def test_header_read_with_header_false_is_named_a_header(tmp_path, header, why):
    p = _log(tmp_path, header=header)
    msg = _error(p, header=False)
    assert msg.startswith(f"{p}, line 1: the first line ({', '.join(header)}) looks like a header")
    assert why in msg and "drop data.header=false" in msg
    mapping = dict(zip(("user_col", "item_col", "rating_col", "time_col"), header))
    ds = load_dataset(p, DataOptions(**mapping))  # read with its header: the same data
    assert _pairs(ds) == {(u, i): (float(r), float(t)) for u, i, r, t in ROWS}


def test_header_of_text_ids_read_with_header_false_is_named_a_header(tmp_path):
    # 'user item' over text ids parsed, and 'user' became a user
    p = _log(tmp_path, [(u, i) for u, i, _, _ in ROWS], header=("user", "item"))
    assert "column names in the user and item fields" in _error(p, header=False)
    p = _log(tmp_path, [(k, k + 1) for k in range(5)], header=("reviewer", "product"))
    assert "words where the lines below hold numeric ids" in _error(p, header=False)


def test_headerless_first_line_of_text_ids_is_still_data(tmp_path):
    p = _log(tmp_path, [("alice", "sku-1"), ("bob", "sku-2"), ("carol", "sku-1")])
    assert load_dataset(p, DataOptions(header=False)).interactions.nnz == 3


# ------------------------------------------------ 3: data.header=false forgotten, mappings
def test_forgotten_header_false_is_suggested_for_text_ids(tmp_path):
    # Amazon ids: no field is a number, so the first line was taken for a header naming
    # the columns A39HTATAQ9V7YF and B0055KIQ1C
    rows = [("A39HTATAQ9V7YF", "B0055KIQ1C"), ("A3JM6GV9MNOF9X", "B00AE07BMB")]
    p = _log(tmp_path, rows, name="beauty.csv", sep=",")
    msg = _error(p)
    assert "the first line (A39HTATAQ9V7YF, B0055KIQ1C) looks like data" in msg
    assert "set data.header=false" in msg and "data.columns" in msg
    assert load_dataset(p, DataOptions(header=False)).interactions.nnz == 2


def test_every_missing_column_is_reported_at_once(tmp_path):
    p = _log(tmp_path, name="log.csv", sep=",", header=("uid", "sku", "stars", "ts"))
    msg = _error(p, rating_col="star", time_col="time")
    assert msg == (
        f"{p}: no column 'user' for the user ids (data.user_col), 'item' for the item ids "
        f"(data.item_col), 'star' for the ratings (data.rating_col) or 'time' for the "
        f"timestamps (data.time_col); the columns are uid, sku, stars, ts: set each setting "
        f"to the name of its column, or leave data.rating_col and data.time_col out"
    )


# -------------------------------------------------------- 4: binary files given as text
def test_parquet_read_as_csv_is_named_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame(ROWS, columns=["user", "item", "rating", "timestamp"])
    p = tmp_path / "log.parquet"
    frame.to_parquet(p)
    msg = _error(p, format="csv")  # was "line 1: not UTF-8 text"
    assert (
        msg == f"{p}: a Parquet file, not text; set data.format=parquet, or leave data.format out"
    )
    named_csv = tmp_path / "log.csv"
    named_csv.write_bytes(p.read_bytes())
    assert "set data.format=parquet (or give the file a .parquet suffix)" in _error(named_csv)
    assert load_dataset(named_csv, DataOptions(format="parquet")).interactions.nnz == len(ROWS)


def test_other_binary_files_given_as_text_are_named(tmp_path):
    p = tmp_path / "log.csv"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("log.csv", "user,item\nu1,i1\n")
    assert "a zip archive (an Excel workbook is one too), not text; unzip it" in _error(p)
    p.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(200, 256)))
    assert "a zstd-compressed file, not text" in _error(p)
    p.write_bytes(gzip.compress(b"user,item\nu1,i1\n"))  # gzip without .gz: read as it is
    assert load_dataset(p).interactions.nnz == 1


def test_text_read_as_parquet_is_named_text(tmp_path):
    pytest.importorskip("pyarrow")
    p = _log(tmp_path, name="log.csv", sep=",", header=("user", "item", "rating", "timestamp"))
    msg = _error(p, format="parquet")  # was pyarrow's "Parquet magic bytes not found"
    assert "not a Parquet file (no PAR1 at its start)" in msg and "data.format=csv" in msg
    gz = tmp_path / "log.parquet"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    assert f"{gz}: a gzip-compressed file, read as Parquet" in _error(gz)


# ----------------------------------------------------- 5: the wrong format's separator
def test_tsv_format_on_a_comma_separated_file_suggests_csv(tmp_path):
    p = _log(tmp_path, name="log.csv", sep=",", header=("user", "item", "rating", "timestamp"))
    msg = _error(p, format="tsv")
    assert "the header is one field split on '\\t', but ',' separates its fields" in msg
    assert msg.endswith("set data.format=csv, or leave data.format out")
    msg = _error(p.rename(tmp_path / "log.tsv"))  # the suffix says tsv: name the format
    assert msg.endswith("set data.format=csv (or data.sep=',')")
    msg = _error(tmp_path / "log.tsv", sep="\t")  # a separator set by hand: name that one
    assert msg.endswith("set data.sep=','")
    headerless = _log(tmp_path, name="h.csv", sep=",")
    msg = _error(headerless, format="tsv", header=False)
    assert "1 field(s)" in msg and msg.endswith("set data.format=csv, or leave data.format out")
    assert load_dataset(headerless, DataOptions(header=False)).interactions.nnz == len(ROWS)
