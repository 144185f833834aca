import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec.metrics import (
    RANKING_METRICS,
    hit_rate_at_k,
    item_coverage_at_k,
    largest,
    mae,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    rmse,
    topk_indices,
    truncated_recall_at_k,
)


def _truth(rows, n_items):
    return sp.csr_matrix([[1.0 if i in r else 0.0 for i in range(n_items)] for r in rows])


def test_hand_computed_three_items():
    scores = np.array([[0.9, 0.1, 0.5]])  # ranking: 0, 2, 1
    truth = _truth([{2}], 3)
    assert recall_at_k(scores, truth, 1)[0] == 0.0
    assert recall_at_k(scores, truth, 2)[0] == 1.0
    assert precision_at_k(scores, truth, 2)[0] == 0.5
    assert hit_rate_at_k(scores, truth, 2)[0] == 1.0
    assert mrr_at_k(scores, truth, 3)[0] == 0.5
    assert ndcg_at_k(scores, truth, 2)[0] == pytest.approx(1 / math.log2(3))
    truth2 = _truth([{0, 1}], 3)
    # hits at ranks 0 and 2: DCG = 1 + 1/2, IDCG = 1 + 1/log2(3)
    assert ndcg_at_k(scores, truth2, 3)[0] == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert truncated_recall_at_k(scores, truth2, 1)[0] == 1.0  # 1 hit / min(1, 2)
    assert recall_at_k(scores, truth2, 1)[0] == 0.5


def test_edge_cases():
    scores = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    truth = _truth([set(), {0, 1, 2}], 3)
    for f in (recall_at_k, ndcg_at_k, precision_at_k, hit_rate_at_k, mrr_at_k):
        assert f(scores, truth, 2)[0] == 0.0  # empty truth counts 0
    assert ndcg_at_k(scores, truth, 10)[1] == pytest.approx(1.0)  # perfect, k > list
    assert recall_at_k(scores, truth, 10)[1] == 1.0
    assert precision_at_k(scores, truth, 10)[1] == pytest.approx(0.3)


def test_ties_break_by_lower_index_and_minus_inf_is_never_recommended():
    scores = torch.tensor([[1.0, 2.0, 2.0, 2.0, float("-inf")]])
    assert topk_indices(scores, 2).tolist() == [[1, 2]]
    assert topk_indices(scores, 5).tolist() == [[1, 2, 3, 0, -1]]
    with pytest.raises(ValueError, match="NaN"):
        topk_indices(torch.tensor([[float("nan"), 1.0]]), 1)


def _brute(scores, truth_rows, k, name):
    out = []
    for s, t in zip(scores, truth_rows):
        order = sorted((i for i in range(len(s)) if s[i] != -np.inf), key=lambda i: (-s[i], i))
        top = order[:k]
        hits = [1 if i in t else 0 for i in top]
        n = len(t)
        if n == 0:
            out.append(0.0)
            continue
        if name == "recall":
            out.append(sum(hits) / n)
        elif name == "truncated_recall":
            out.append(sum(hits) / min(k, n))
        elif name == "precision":
            out.append(sum(hits) / k)
        elif name == "hit_rate":
            out.append(float(any(hits)))
        elif name == "mrr":
            out.append(next((1 / (j + 1) for j, h in enumerate(hits) if h), 0.0))
        elif name == "ndcg":
            dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
            idcg = sum(1 / math.log2(j + 2) for j in range(min(k, n)))
            out.append(dcg / idcg)
    return np.array(out)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n_users=st.integers(1, 6),
    n_items=st.integers(1, 12),
    k=st.integers(1, 14),
)
def test_metrics_equal_brute_force_with_ties(data, n_users, n_items, k):
    # small integer scores make ties frequent; some items masked with -inf
    vals = data.draw(
        st.lists(
            st.sampled_from([0.0, 1.0, 2.0, 3.0, -np.inf]),
            min_size=n_users * n_items,
            max_size=n_users * n_items,
        )
    )
    scores = np.array(vals, dtype=np.float32).reshape(n_users, n_items)
    truth_rows = [
        set(data.draw(st.sets(st.integers(0, n_items - 1), max_size=n_items)))
        for _ in range(n_users)
    ]
    truth = _truth(truth_rows, n_items)
    from genrec.metrics import hits_at_k

    hits = hits_at_k(topk_indices(scores, k), truth)
    n = np.array([len(t) for t in truth_rows], dtype=np.float64)
    for name, f in RANKING_METRICS.items():
        np.testing.assert_allclose(
            f(hits, n, k), _brute(scores, truth_rows, k, name), rtol=1e-12, atol=1e-12, err_msg=name
        )


def test_topk_boundary_ties_in_large_rows_are_exact():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 3, size=(50, 200)).astype(np.float32)
    got = topk_indices(s, 7).numpy()
    want = np.argsort(-s, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("k", [1, 3, 9, 10, 12])
def test_topk_equals_a_stable_sort_with_ties_and_masked_items(k):
    # rows with a tie at the k-th place, rows without, rows with fewer than k finite scores
    rng = np.random.default_rng(k)
    s = rng.integers(0, 4, size=(300, 10)).astype(np.float32)
    s[rng.random(s.shape) < 0.3] = -np.inf
    s[:20] = rng.permutation(10 * 20).reshape(20, 10)  # all distinct: no boundary tie
    want = np.argsort(-s, axis=1, kind="stable")[:, :k]
    want = np.where(np.take_along_axis(s, want, 1) == -np.inf, -1, want)
    np.testing.assert_array_equal(topk_indices(torch.from_numpy(s), k).numpy(), want)


@pytest.mark.parametrize("width", [4096, 4100, 12101])  # whole chunks, a short last chunk
def test_the_two_pass_selection_keeps_the_largest_values(width):
    # wide rows take the chunked path: its values equal torch.topk's, NaN first, and the
    # lists equal a stable sort, with ties, masked items and rows of few finite scores
    rng = np.random.default_rng(width)
    s = rng.normal(size=(40, width)).astype(np.float32)
    s[:10] = rng.integers(0, 5, size=(10, width))  # ties everywhere, at the boundary too
    s[10:15, : width - 3] = -np.inf  # 3 finite scores, all in the short chunk (if any)
    s[15, :] = -np.inf
    s[16:20, rng.integers(0, width, 8)] = 9.0  # the best items spread over a few chunks
    t = torch.from_numpy(s)
    for n in (1, 11, 21):
        vals, idx = largest(t, n)
        torch.testing.assert_close(vals, torch.topk(t, n, dim=1).values)
        torch.testing.assert_close(t.gather(1, idx), vals)  # the indices hold those values
    want = np.argsort(-s, axis=1, kind="stable")[:, :20]
    want = np.where(np.take_along_axis(s, want, 1) == -np.inf, -1, want)
    np.testing.assert_array_equal(topk_indices(t, 20).numpy(), want)
    bad = t.clone()
    bad[3, width - 1] = float("nan")
    assert torch.isnan(largest(bad, 5)[0][3, 0])
    with pytest.raises(ValueError, match="NaN"):
        topk_indices(bad, 5)


def test_coverage_and_rating_metrics():
    assert item_coverage_at_k(np.array([[0, 1], [1, -1]]), 4) == 0.5
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        rmse([1, 2], [1])


def test_a_cut_off_past_the_item_count_is_exact_without_allocating_k():
    # issue 28, defect 6: k = 10**12 allocated a (B, k) list; now a list holds at most the
    # catalogue and every metric keeps the value of a list padded with misses to k
    rng = np.random.default_rng(4)
    s = rng.random((6, 9)).astype(np.float32)
    s[0, :4] = -np.inf
    truth = sp.csr_matrix((rng.random((6, 9)) < 0.4).astype(np.float32))
    n = np.diff(truth.indptr)
    big = 10**12
    assert topk_indices(s, big).shape == (6, 9)
    np.testing.assert_array_equal(topk_indices(s, big).numpy(), topk_indices(s, 9).numpy())
    hits = (truth.toarray() > 0) & np.isfinite(s)  # every ranked item is in the list
    np.testing.assert_allclose(recall_at_k(s, truth, big), np.where(n > 0, hits.sum(1) / n, 0))
    np.testing.assert_allclose(precision_at_k(s, truth, big), np.where(n > 0, hits.sum(1) / big, 0))
    # NDCG by hand: the ideal list fills min(|truth|, k) = |truth| ranks
    order = np.argsort(-s, axis=1, kind="stable")
    gains = np.take_along_axis(hits, order, 1) / np.log2(np.arange(2, 11))
    ideal = np.array([(1 / np.log2(np.arange(2, m + 2))).sum() for m in n])
    want = np.divide(gains.sum(1), ideal, out=np.zeros(6), where=ideal > 0)
    np.testing.assert_allclose(ndcg_at_k(s, truth, big), want)
    np.testing.assert_allclose(hit_rate_at_k(s, truth, big), hits.any(1).astype(float))
