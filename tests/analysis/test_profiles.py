"""Cluster profiles on sparse data: the characteristic-item threshold and demographics."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genrec.analysis import ItemUserMeta, cluster_profiles
from genrec.analysis.pipeline import cluster_users
from genrec.analysis.report import report_html


def sparse_clusters() -> tuple[sp.csr_matrix, np.ndarray]:
    """Cluster 0: 50 users; item 0 chosen by 4 of them (8%), items 1 and 42 by 3 each (6%),
    and users 10..49 each by one item of their own (items 2..41, 2% each, nobody else's).
    Cluster 1: 10 users who all chose items 0 and 1."""
    rows, cols = [], []
    for u in range(4):
        rows.append(u), cols.append(0)
    for u in range(4, 7):
        rows.append(u), cols.append(1)
    for u in range(7, 10):  # every user of cluster 0 has some item
        rows.append(u), cols.append(42)
    for j, u in enumerate(range(10, 50)):
        rows.append(u), cols.append(2 + j)
    for u in range(50, 60):
        rows += [u, u]
        cols += [0, 1]
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(60, 43))
    labels = np.array([0] * 50 + [1] * 10)
    return X, labels


def test_characteristic_items_chosen_by_0_percent_of_a_sparse_cluster_are_not_listed():
    # no item reaches 10% of cluster 0: the items listed were the one-user items (2%,
    # shown as "0%" of the cluster), although the docs promise at least 10%
    X, labels = sparse_clusters()
    meta = ItemUserMeta(np.arange(43), np.arange(60))
    p0, p1 = cluster_profiles(labels, X, meta, top_n=5)
    listed = [i["item"] for i in p0["characteristic_items"]]
    assert sorted(listed) == [0, 1, 42]  # the 8% and 6% items, none of the 2% ones
    assert p0["items_min_share"] == max(0.08 / 2, 2 / 50)
    assert "no item is chosen by 10% of the cluster" in p0["items_rule"]
    for item in p0["characteristic_items"]:
        assert item["share"] >= p0["items_min_share"] and item["share"] * 50 >= 2
    # cluster 1 reaches the documented threshold: no rule, every item >= 10%
    assert p1["items_min_share"] == 0.1 and "items_rule" not in p1
    assert all(i["share"] >= 0.1 for i in p1["characteristic_items"])
    html = report_html(
        title="t",
        summary={},
        profiles=[p0, p1],
        png=b"",
        xy=np.zeros((60, 2)),
        labels=labels,
        user_ids=np.arange(60),
        activity=np.diff(X.indptr),
        top_genres=None,
        k_table=None,
    )
    assert "no item is chosen by 10% of the cluster" in html  # the rule is stated there too


def test_cluster_whose_items_have_one_user_each_lists_none():
    X = sp.csr_matrix(np.eye(30, dtype=np.float32))
    (p,) = cluster_profiles(np.zeros(30, int), X, ItemUserMeta(np.arange(30), np.arange(30)))
    assert p["characteristic_items"] == [] and "items_rule" in p
    assert p["items_min_share"] == 2 / 30


def test_characteristic_threshold_by_hand():
    from genrec.analysis.profiles import characteristic_threshold

    assert characteristic_threshold(np.array([0.3, 0.05]), 20, 0.1) == (0.1, None)
    share, rule = characteristic_threshold(np.array([0.08, 0.01]), 100, 0.1)
    assert share == 0.04 and rule is not None and "8.0%" in rule
    assert characteristic_threshold(np.array([0.02]), 100, 0.1)[0] == 0.02  # 2 users
    assert characteristic_threshold(np.array([0.01]), 100, 0.1)[0] == 0.02  # needs 2


def test_cluster_note_claims_no_demographics_the_data_lacks():
    # a users table whose ids are not the run's (or without age/gender/occupation): the
    # note said "characteristic items and demographics only", and profiles held none
    X, _ = sparse_clusters()
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(60)], "age": 30, "gender": "F"})
    ds = SimpleNamespace(items=None, genre_names=(), users=users)
    meta = ItemUserMeta.from_dataset(ds, np.arange(43), np.arange(60))
    assert meta.users is None and not meta.has_demographics
    report = cluster_users(
        None, X, np.arange(60), np.arange(43), dataset=ds, k=2, map_method="none",
        embedding="svd", dataset_name="log",
    )  # fmt: skip
    assert any("characteristic items only" in n for n in report.notes)
    assert not any("demographics" in n for n in report.notes)
    assert all("demographics" not in p for p in report.profiles)
    # with the run's ids the same table gives demographics, and the note says so
    ds.users = users.assign(user_id=np.arange(60))
    report = cluster_users(
        None, X, np.arange(60), np.arange(43), dataset=ds, k=2, map_method="none",
        embedding="svd", dataset_name="log",
    )  # fmt: skip
    assert any("characteristic items and demographics only" in n for n in report.notes)
    assert all(p["demographics"]["gender"][0][:2] == ("F", 1.0) for p in report.profiles)
