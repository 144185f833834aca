import numpy as np
import pytest

from genrec.data import IdMap, Interactions, compact, k_core
from genrec.errors import DataError


def test_from_raw_builds_sorted_id_maps_and_dedups_latest():
    inter = Interactions.from_raw(
        ["b", "a", "a", "b"], [10, 20, 20, 30], np.array([1, 2, 5, 3.0]), np.array([1, 2, 3, 4.0])
    )
    assert inter.user_ids.tolist() == ["a", "b"]
    assert inter.item_ids.tolist() == [10, 20, 30]
    assert inter.matrix.toarray().tolist() == [[0, 5, 0], [1, 0, 3]]  # latest (t=3) kept
    assert inter.times.tolist() == [3.0, 1.0, 4.0]


def test_duplicate_policies():
    u, i, r, t = [0, 0], [0, 0], np.array([5.0, 2.0]), np.array([2.0, 1.0])
    kw = dict(user_ids=np.array([7]), item_ids=np.array([9]))
    assert Interactions.from_arrays(u, i, r, t, **kw, duplicates="last").matrix[0, 0] == 5
    assert Interactions.from_arrays(u, i, r, t, **kw, duplicates="first").matrix[0, 0] == 2
    assert Interactions.from_arrays(u, i, r, t, **kw, duplicates="max").matrix[0, 0] == 5
    with pytest.raises(DataError, match="duplicate interaction .user 7, item 9"):
        Interactions.from_arrays(u, i, r, t, **kw, duplicates="error")


def test_binarize_threshold_and_select_keep_times_aligned():
    inter = Interactions.from_raw(
        [1, 1, 2], [1, 2, 1], np.array([5, 2, 4.0]), np.array([10, 20, 30.0])
    )
    b = inter.binarize(4)
    assert b.matrix.toarray().tolist() == [[1, 0], [1, 0]]
    assert b.times.tolist() == [10.0, 30.0]


def test_idmap_matches_strings_to_int_ids():
    m = IdMap(np.array([196, 5]))
    assert m.get("196") == 0 and m.get(5) == 1 and m.get("x") is None
    with pytest.raises(DataError, match="unknown user '3'"):
        m.index("3", "user")


def test_k_core_reaches_a_fixed_point():
    rng = np.random.default_rng(0)
    u = rng.integers(0, 50, 1500)
    i = (rng.zipf(1.3, 1500) - 1) % 60
    inter = Interactions.from_raw(u, i)
    core = k_core(inter, user_k=5, item_k=5)
    m = core.matrix
    ucount = np.diff(m.indptr)
    icount = np.bincount(m.indices, minlength=m.shape[1])
    assert ((ucount == 0) | (ucount >= 5)).all()
    assert ((icount == 0) | (icount >= 5)).all()
    c = compact(core)
    assert c.nnz == core.nnz and np.diff(c.matrix.indptr).min() >= 5
    with pytest.raises(DataError, match="removed every interaction"):
        k_core(inter, user_k=10_000)


def test_whole_float_ids_become_integer_ids():
    from genrec.data.interactions import as_id_array

    ids = as_id_array(np.array([1.0, 20.0, 3.0]))  # a Parquet id column stored as float
    assert ids.dtype == np.int64 and ids.tolist() == [1, 20, 3]
    assert IdMap(ids).index("20", "user") == 1  # matches --user 20
    assert as_id_array(np.array([1.5, 2.0])).tolist() == ["1.5", "2.0"]  # not whole: text
    assert as_id_array(np.array([1.0, np.nan])).dtype.kind == "U"
    assert as_id_array(np.array(["a", "b"], dtype=object)).tolist() == ["a", "b"]


def test_parquet_float_id_columns_load_as_integer_ids(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from genrec.data import load_dataset

    path = tmp_path / "log.parquet"
    pd.DataFrame({"user": [1.0, 2.0, 2.0], "item": [10.0, 10.0, 11.0]}).to_parquet(path)
    ds = load_dataset(path)
    assert ds.interactions.user_ids.dtype.kind == "i"
    assert sorted(ds.interactions.user_ids.tolist()) == [1, 2]
    assert sorted(ds.interactions.item_ids.tolist()) == [10, 11]


@pytest.mark.parametrize(
    "raw",
    [
        np.array([7, 3, 7, 0, 12], dtype=np.int64),
        np.array([5, 1, 5], dtype=np.int32),
        np.array([3, -1, 3]),  # negative: sorted
        np.array([2**40, 1, 2**40]),  # beyond the compact range: sorted
        np.array(["b", "a", "b"]),
        [3, 1, 3],
    ],
)
def test_factorize_ids_equals_np_unique(raw):
    from genrec.data.interactions import as_id_array, factorize_ids

    uniq, inv = factorize_ids(raw)
    want_u, want_i = np.unique(as_id_array(raw), return_inverse=True)
    np.testing.assert_array_equal(uniq, want_u)
    assert uniq.dtype == want_u.dtype
    np.testing.assert_array_equal(inv, want_i.ravel())
