import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genrec.data import Dataset, Interactions
from genrec.data.features import SideFeatures, age_band, side_features
from genrec.errors import DataError


def _dataset(users=True, items=True):
    inter = Interactions(
        sp.csr_matrix(np.ones((4, 3), np.float32)), np.array([1, 2, 3, 4]), np.array([10, 20, 30])
    )
    u = pd.DataFrame(
        {
            "user_id": [1, 2, 3, 4],
            "age": [17, 18, 40, 61],
            "gender": ["M", "F", "M", None],
            "occupation": ["writer", "other", "writer", "doctor"],
            "zip": ["123", "456", "789", "000"],
            "income": [10.0, 20.0, np.nan, 30.0],
        }
    )
    i = pd.DataFrame(
        {
            "item_id": [10, 20, 30],
            "title": ["a", "b", "c"],
            "genres": ["Comedy", "Action|Comedy", "(no genres listed)"],
        }
    )
    return Dataset("toy", inter, i if items else None, u if users else None)


def test_age_bands_follow_ml1m_groups():
    assert [age_band(a) for a in (1, 17, 18, 24, 25, 34, 35, 45, 49, 50, 55, 56, 80)] == [
        "<18",
        "<18",
        "18-24",
        "18-24",
        "25-34",
        "25-34",
        "35-44",
        "45-49",
        "45-49",
        "50-55",
        "50-55",
        "56+",
        "56+",
    ]


def test_default_columns_are_age_gender_occupation_and_genres():
    sf = side_features(_dataset())
    assert sf.user_names == [
        "age=<18",
        "age=18-24",
        "age=35-44",
        "age=56+",
        "gender=F",
        "gender=M",
        "occupation=doctor",
        "occupation=other",
        "occupation=writer",
    ]
    U = sf.user.toarray()
    np.testing.assert_array_equal(U[0], [1, 0, 0, 0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(U[3], [0, 0, 0, 1, 0, 0, 1, 0, 0])  # missing gender: none
    assert sf.item_names == ["genres=Action", "genres=Comedy"]
    np.testing.assert_array_equal(sf.item.toarray(), [[0, 1], [1, 1], [0, 0]])
    assert sf.names == sf.user_names + sf.item_names
    assert sf.user.dtype == np.float32 and sp.isspmatrix_csr(sf.item)


def test_normalized_sets_sum_to_one():
    sf = side_features(_dataset(), normalize_sets=True)
    np.testing.assert_allclose(sf.item.toarray(), [[0, 1], [0.5, 0.5], [0, 0]])


def test_user_supplied_columns_categorical_and_numeric():
    ds = _dataset()
    sf = side_features(ds, user_columns=["zip", "income"], item_columns=[])
    assert sf.user_names == ["zip=000", "zip=123", "zip=456", "zip=789", "income"]
    inc = sf.user.toarray()[:, -1]
    assert inc[2] == 0.0  # missing -> the mean, i.e. 0 after standardizing
    ok = np.array([0, 1, 3])
    assert inc[ok].mean() == pytest.approx(0.0, abs=1e-6)
    assert inc[ok].std() == pytest.approx(1.0, rel=1e-5)
    assert sf.item.shape == (3, 0)


def test_ml1m_style_occupation_codes_as_text_are_one_hot():
    ds = _dataset()
    ds.users["occ_code"] = ["4", "0", "4", "12"]
    sf = side_features(ds, user_columns=["occ_code"], item_columns=[])
    assert sf.user_names == ["occ_code=0", "occ_code=12", "occ_code=4"]


def test_unknown_column_is_an_error_naming_what_exists():
    with pytest.raises(DataError, match="user column 'salary' not found; available: age"):
        side_features(_dataset(), user_columns=["salary"])


def test_no_metadata_gives_empty_blocks_or_an_error_when_asked():
    sf = side_features(_dataset(users=False, items=False))
    assert sf.user.shape == (4, 0) and sf.item.shape == (3, 0)
    with pytest.raises(DataError, match="no user metadata"):
        side_features(_dataset(users=False), user_columns=["age"])


def test_side_features_checks_names():
    with pytest.raises(ValueError, match="names"):
        SideFeatures(sp.csr_matrix((2, 2)), sp.csr_matrix((2, 1)), ["a"], ["b"])
