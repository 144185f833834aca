import numpy as np
import pytest
import scipy.sparse as sp

from genrec.data import (
    Interactions,
    leave_last_one_out,
    random_ratio_split,
    random_split,
    strong_generalization_split,
    temporal_ratio_split,
)
from genrec.errors import DataError


@pytest.fixture(scope="module")
def inter():
    rng = np.random.default_rng(0)
    n = 3000
    u = rng.integers(0, 100, n)
    i = rng.integers(0, 80, n)
    return Interactions.from_raw(
        u, i, rng.integers(1, 6, n).astype(float), rng.permutation(n).astype(float)
    )


def _assert_partition(inter, parts):
    """No entry in two parts, none lost, all in the input's id space."""
    total = sum(p.nnz for p in parts.values())
    assert total == inter.nnz
    union = sum((p.matrix != 0).astype(np.int32) for p in parts.values())
    assert union.max() == 1  # no overlap (leakage)
    assert (union != (inter.matrix != 0)).nnz == 0
    for p in parts.values():
        assert p.matrix.shape == inter.matrix.shape


@pytest.mark.parametrize(
    "split",
    [
        lambda x: random_ratio_split(x, seed=3),
        lambda x: temporal_ratio_split(x),
        lambda x: leave_last_one_out(x, seed=3),
        lambda x: random_split(x, seed=3),
        lambda x: strong_generalization_split(x, n_heldout=10, seed=3),
    ],
)
def test_splits_partition_without_leakage_and_are_deterministic(inter, split):
    a, b = split(inter), split(inter)
    _assert_partition(inter, a)
    for k in a:
        assert (a[k].matrix != b[k].matrix).nnz == 0


def test_temporal_split_puts_the_latest_last(inter):
    parts = temporal_ratio_split(inter)
    tr, te = parts["train"], parts["test"]
    for u in range(inter.n_users):
        t_tr = tr.times[tr.matrix.indptr[u] : tr.matrix.indptr[u + 1]]
        t_te = te.times[te.matrix.indptr[u] : te.matrix.indptr[u + 1]]
        if len(t_tr) and len(t_te):
            assert t_tr.max() < t_te.min()


def test_ratio_split_sizes(inter):
    parts = random_ratio_split(inter, (0.8, 0.1, 0.1), seed=0)
    share = parts["train"].nnz / inter.nnz
    assert 0.75 < share < 0.85


def test_leave_last_one_out_holds_one_each(inter):
    parts = leave_last_one_out(inter)
    assert np.diff(parts["test"].matrix.indptr).max() == 1
    assert np.diff(parts["valid"].matrix.indptr).max() == 1


def test_strong_generalization_heldout_users_absent_from_train(inter):
    p = strong_generalization_split(inter, n_heldout=10, fold_in=0.8, seed=1)
    held = np.flatnonzero(np.diff((p["valid_in"].matrix + p["test_in"].matrix).indptr))
    assert len(held) == 20
    assert np.diff(p["train"].matrix.indptr)[held].sum() == 0
    vin, vout = p["valid_in"].matrix, p["valid_out"].matrix
    users = np.flatnonzero(np.diff(vin.indptr))
    assert set(users) == set(np.flatnonzero(np.diff(vout.indptr)))  # each has a target


def test_bad_ratios_and_missing_times():
    x = Interactions.from_raw([1, 2], [1, 2])
    with pytest.raises(DataError, match="ratios"):
        random_ratio_split(x, (0.5, 0.6))
    with pytest.raises(DataError, match="needs timestamps"):
        temporal_ratio_split(x)
    assert isinstance(x.matrix, sp.csr_matrix)
