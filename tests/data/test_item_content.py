"""Item content: the item -> attributes JSON as a multi-hot matrix aligned with the item map,
TF-IDF rows equal to scikit-learn's, and the truncated SVD equal to a full one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from genrec.data import IdMap
from genrec.data.item_content import dense_features, read_item_attributes, tfidf_rows
from genrec.errors import DataError


def _write(tmp_path, obj, raw: str | None = None):
    p = tmp_path / "item2attributes.json"
    p.write_text(raw if raw is not None else json.dumps(obj))
    return p


def test_attributes_follow_the_item_map(tmp_path):
    items = IdMap(np.array([4, 83, 165, 7]))
    p = _write(tmp_path, {"83": [1, 2, 2], "4": [2, 3], "999": [1], "165": []})
    got = read_item_attributes(p, items)
    dense = got.matrix.toarray()
    cols = {name: j for j, name in enumerate(got.names)}
    assert set(cols) == {"1", "2", "3"}
    assert dense.shape == (4, 3)
    assert dense[1, cols["1"]] == 1 and dense[1, cols["2"]] == 1  # a repeated id counts once
    assert dense[0, cols["2"]] == 1 and dense[0, cols["3"]] == 1 and dense[0].sum() == 2
    assert dense[2].sum() == 0 and dense[3].sum() == 0
    assert got.unknown_items == 1  # "999"
    assert got.missing_items == 1  # item 7 has no entry (165 has an empty one)


@pytest.mark.parametrize(
    "raw, match",
    [
        ('{"4": [1, 2]', "not a JSON file \\(line 1"),
        ("[1, 2]", "not an object"),
        ('{"4": 3}', "item '4' has 3, not a list"),
        ('{"4": [1, [2]]}', "not a list of attribute ids"),
    ],
)
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, raw, match):
    p = _write(tmp_path, None, raw)
    with pytest.raises(DataError, match=match) as e:
        read_item_attributes(p, IdMap(np.array([4])))
    assert str(p) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="no such file"):
        read_item_attributes(tmp_path / "absent.json", IdMap(np.array([4])))


def test_tfidf_rows_equal_scikit_learn():
    from sklearn.feature_extraction.text import TfidfTransformer

    rng = np.random.default_rng(0)
    dense = (rng.random((30, 12)) < 0.3).astype(float)
    dense[5] = 0  # an empty row stays empty
    X = sp.csr_matrix(dense)
    want = TfidfTransformer().fit_transform(X).toarray()
    np.testing.assert_allclose(tfidf_rows(X).toarray(), want, rtol=1e-10, atol=1e-12)


def test_dense_features_equal_the_leading_part_of_a_full_svd():
    rng = np.random.default_rng(1)
    X = sp.csr_matrix((rng.random((40, 15)) < 0.3).astype(float))
    F = dense_features(X, 4)
    U, S, _ = np.linalg.svd(tfidf_rows(X).toarray(), full_matrices=False)
    want = U[:, :4] * S[:4]
    signs = np.sign(want[np.abs(want).argmax(axis=0), np.arange(4)])
    np.testing.assert_allclose(F, want * signs, rtol=1e-4, atol=1e-5)
    assert F.dtype == np.float32
    assert dense_features(X, 100).shape == (40, 14)  # capped at min(shape) - 1
    with pytest.raises(DataError, match="dim must be positive"):
        dense_features(X, 0)


def test_two_keys_of_one_item_merge_into_one_multi_hot_row(tmp_path):
    p = _write(tmp_path, {"4": [1, 2], "04": [2, 3]})
    got = read_item_attributes(p, IdMap(np.array([4])))
    assert got.matrix.toarray().tolist() == [[1.0, 1.0, 1.0]]


def test_stored_zeros_and_repeated_entries_do_not_count_as_occurrences():
    X = sp.csr_matrix(
        (np.array([1.0, 0.0, 1.0]), np.array([0, 1, 1]), np.array([0, 2, 3])), shape=(2, 2)
    )
    clean = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_allclose(tfidf_rows(X).toarray(), tfidf_rows(clean).toarray())
