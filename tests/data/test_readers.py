import numpy as np
import pandas as pd
import pytest

from genrec.data import DataOptions, load_dataset
from genrec.data.readers import read_ml1m, read_ml100k, read_pair_lists
from genrec.errors import DataError
from tests.synthetic import write_ml100k, write_pair_lists


def test_ml100k_layout(tmp_path):
    d = write_ml100k(tmp_path / "ml-100k")
    ds = load_dataset(d)
    raw = np.loadtxt(d / "u.data", dtype=np.int64)
    assert ds.interactions.nnz == len(raw)
    assert ds.items["title"].iloc[0] == "Movie 1 (1995)"
    assert ds.genre_names == ["Action", "Adventure"]
    assert ds.users.columns.tolist() == ["user_id", "age", "gender", "occupation", "zip"]
    assert set(ds.splits) == {"u1", "u2", "u3", "u4", "u5"}
    for fold in ds.splits.values():
        overlap = (fold["train"].matrix != 0).multiply(fold["test"].matrix != 0)
        assert overlap.nnz == 0
        assert fold["train"].nnz + fold["test"].nnz == len(raw)


def test_ml100k_folds_without_base_files(tmp_path):
    d = write_ml100k(tmp_path / "ml-100k")
    for n in range(1, 6):
        (d / f"u{n}.base").unlink()
    ds = read_ml100k(d)
    assert ds.splits["u1"]["train"].nnz + ds.splits["u1"]["test"].nnz == ds.interactions.nnz


def test_ml1m_layout_latin1_and_double_colon(tmp_path):
    d = tmp_path / "ml-1m"
    d.mkdir()
    (d / "ratings.dat").write_text(
        "1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n"
    )
    (d / "movies.dat").write_bytes(
        "10::Am\xe9lie (2001)::Comedy|Romance\n20::Heat (1995)::Action\n".encode("latin-1")
    )
    (d / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    ds = read_ml1m(d)
    assert ds.interactions.matrix.toarray().tolist() == [[5, 3], [4, 0]]
    assert ds.items["title"].tolist() == ["Amélie (2001)", "Heat (1995)"]
    assert ds.users["occupation"].tolist() == ["K-12 student", "self-employed"]
    assert ds.genre_names == ["Action", "Comedy", "Romance"]


def test_ml_csv_layout(tmp_path):
    d = tmp_path / "ml-latest-small"
    d.mkdir()
    (d / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n"
    )
    (d / "movies.csv").write_text(
        'movieId,title,genres\n1,"Toy Story (1995)",Animation|Comedy\n'
        '3,"Grumpier Old Men, The (1995)",Comedy\n'
    )
    ds = load_dataset(d)
    assert ds.interactions.matrix.toarray().tolist() == [[4.0, 4.5]]
    assert ds.items["title"].tolist()[1] == "Grumpier Old Men, The (1995)"


def test_pair_lists_npy(tmp_path):
    d = write_pair_lists(tmp_path / "p")
    ds = read_pair_lists(d)
    parts = ds.splits["given"]
    assert ds.implicit
    assert sum(p.nnz for p in parts.values()) == ds.interactions.nnz
    assert parts["train"].matrix.shape == ds.interactions.matrix.shape


def test_pair_lists_text(tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    (d / "train.txt").write_text("u1 i1\nu1 i2\nu2 i2\n")
    (d / "test.txt").write_text("u2 i1\n")
    ds = load_dataset(d)
    assert ds.splits["given"]["test"].matrix.toarray().tolist() == [[0, 0], [1, 0]]


def test_pair_lists_text_ids_are_integers_as_in_logs(tmp_path):
    d = tmp_path / "n"
    d.mkdir()
    (d / "train.txt").write_text("10 7\n10 8\n2 8\n")
    (d / "test.txt").write_text("2 7\n")
    ds = load_dataset(d)
    inter = ds.interactions
    assert inter.user_ids.dtype == np.int64 and inter.user_ids.tolist() == [2, 10]
    assert inter.item_ids.dtype == np.int64 and inter.item_ids.tolist() == [7, 8]
    assert ds.splits["given"]["test"].matrix.toarray().tolist() == [[1, 0], [0, 0]]
    (d / "test.txt").write_text("02 7\n")  # '02' is not '2': every user id stays text
    ds = load_dataset(d)
    assert ds.interactions.user_ids.dtype.kind == "U"
    assert sorted(ds.interactions.user_ids.tolist()) == ["02", "10", "2"]
    assert ds.interactions.item_ids.dtype == np.int64


def test_generic_csv_tsv_parquet_with_column_mapping(tmp_path):
    df = pd.DataFrame(
        {"uid": ["a", "a", "b"], "sku": [1, 2, 1], "stars": [5, 3, 4], "ts": [1, 2, 3]}
    )
    opts = DataOptions(user_col="uid", item_col="sku", rating_col="stars", time_col="ts")
    df.to_csv(tmp_path / "log.csv", index=False)
    df.to_csv(tmp_path / "log.tsv", index=False, sep="\t")
    df.to_parquet(tmp_path / "log.parquet")
    for name in ("log.csv", "log.tsv", "log.parquet"):
        ds = load_dataset(tmp_path / name, opts)
        assert ds.interactions.matrix.toarray().tolist() == [[5, 3], [4, 0]], name
        assert ds.interactions.times is not None


@pytest.mark.parametrize(
    "content,match",
    [
        ("user,item,rating\n1,2,5\n1,3,nan\n", r"log\.csv, line 3: field 'rating' has 'nan'"),
        ("user,item,rating\n1,2,5\n1,3,\n", r"line 3: field 'rating' has an empty value"),
        (
            "user,item,rating\n1,2,5\n1,3,4,9\n",
            r"log\.csv, line 3 has 4 fields, the header has 3; every line needs 3 fields",
        ),
        ("user,item,rating\n1,2,5\n\n1,3,4,9\n", r"log\.csv, line 4 has 4 fields"),
        ('user,item,rating\n1,"2",5\n1,3,4,9\n', r"log\.csv: malformed line"),  # quoted: pandas'
        ("", r"log\.csv: the file is empty \(no header line\)"),
        ("uid,item,rating\n1,2,5\n", r"no column 'user' for the user ids.*data\.user_col"),
        ("user,item,rating\n", r"no interactions found"),
    ],
)
def test_bad_logs_give_one_line_errors_naming_file_and_line(tmp_path, content, match):
    p = tmp_path / "log.csv"
    p.write_text(content)
    with pytest.raises(DataError, match=match) as e:
        load_dataset(p)
    assert "\n" not in str(e.value)


def test_bad_pair_lists(tmp_path):
    d = tmp_path / "p"
    d.mkdir()
    np.save(d / "train_list.npy", np.array([[0, 1], [1, -2]]))
    np.save(d / "test_list.npy", np.array([[0, 0]]))
    with pytest.raises(DataError, match=r"train_list\.npy, row 1: negative id"):
        load_dataset(d)
    np.save(d / "train_list.npy", np.array([[0, 1], [1, 5]]))
    with pytest.raises(DataError, match=r"train_list\.npy, row 1: id \[1, 5\] out of range"):
        read_pair_lists(d, n_items=3)
    np.save(d / "train_list.npy", np.array([0.5, 1.5]))
    with pytest.raises(DataError, match=r"expected an integer array"):
        read_pair_lists(d)


def test_malformed_ml100k_line(tmp_path):
    d = write_ml100k(tmp_path / "ml-100k")
    lines = (d / "u.data").read_text().splitlines()
    lines[4] = "1\t2\tfive\t3"
    (d / "u.data").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"u\.data, line 5: field 'rating' has 'five'"):
        load_dataset(d)


def test_unknown_path_and_undetectable_folder(tmp_path):
    with pytest.raises(DataError, match="not a known data set"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no data set layout found .*found nothing"):
        load_dataset(tmp_path / "empty")


def test_ml10m_layout_detected_without_users_file(tmp_path):
    d = tmp_path / "ml-10M100K"
    d.mkdir()
    (d / "ratings.dat").write_text("1::122::5::838985046\n1::185::4.5::838983525\n")
    (d / "movies.dat").write_text(
        "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action|Crime|Thriller\n"
    )
    ds = load_dataset(d)
    assert ds.interactions.matrix.toarray().tolist() == [[5.0, 4.5]]
    assert ds.rating_range == (0.5, 5.0) and ds.users is None
    assert "Thriller" in ds.genre_names


def test_a_movielens_rating_beyond_float32_arithmetic_names_the_line(tmp_path):
    # issue 28, defect 13: 1e39 became inf in float32 after the finite check
    d = write_ml100k(tmp_path / "ml-100k")
    lines = (d / "u.data").read_text().splitlines()
    u, i, _, t = lines[4].split("\t")
    lines[4] = "\t".join([u, i, "1e39", t])
    (d / "u.data").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"u.data, line 5: field 'rating' has '1e39', beyond"):
        read_ml100k(d)
