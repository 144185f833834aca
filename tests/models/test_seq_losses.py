"""The next-item losses against direct computations (NumPy, float64, one position at a time)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.models.seq_losses import (
    bce_loss,
    ce_loss,
    gbce_beta,
    gbce_loss,
    sampled_softmax_loss,
)


def _sig(x):
    return 1 / (1 + np.exp(-x))


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(7, 5, generator=g, dtype=torch.float64)
    E = torch.randn(11, 5, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 3, 3, 10, 5, 2, 7])
    return h, E, t


def test_ce_is_the_softmax_log_loss(batch):
    h, E, t = batch
    H, W = h.numpy(), E.numpy()
    direct = np.mean([np.log(np.exp(H[n] @ W.T).sum()) - H[n] @ W[t[n]] for n in range(len(t))])
    assert float(ce_loss(h, E, t)) == pytest.approx(direct, rel=1e-10)


def test_bce_has_one_negative_per_position(batch):
    h, E, t = batch
    neg = torch.tensor([1, 2, 4, 0, 6, 9, 8])
    H, W = h.numpy(), E.numpy()
    direct = np.mean(
        [-np.log(_sig(H[n] @ W[t[n]])) - np.log(1 - _sig(H[n] @ W[neg[n]])) for n in range(len(t))]
    )
    assert float(bce_loss(h, E, t, neg)) == pytest.approx(direct, rel=1e-10)


@pytest.mark.parametrize("shared", [True, False])
def test_sampled_softmax_masks_accidental_hits(batch, shared):
    h, E, t = batch
    neg = (
        torch.tensor([3, 1, 0, 9])
        if shared
        else torch.randint(11, (7, 4), generator=torch.Generator().manual_seed(2))
    )
    H, W = h.numpy(), E.numpy()
    vals = []
    for n in range(len(t)):
        row = neg.numpy() if shared else neg[n].numpy()
        logits = [H[n] @ W[t[n]]] + [H[n] @ W[j] for j in row if j != t[n]]
        vals.append(np.log(np.exp(logits).sum()) - logits[0])
    assert float(sampled_softmax_loss(h, E, t, neg)) == pytest.approx(np.mean(vals), rel=1e-10)


def test_sampled_softmax_log_q_correction(batch):
    h, E, t = batch
    neg = torch.tensor([1, 4, 6])
    log_q = torch.log(torch.tensor([0.1, 0.3, 0.05], dtype=torch.float64))
    log_q_pos = torch.log(torch.full((7,), 0.2, dtype=torch.float64))
    H, W = h.numpy(), E.numpy()
    vals = []
    for n in range(len(t)):
        pos = H[n] @ W[t[n]] - np.log(0.2)
        logits = [pos] + [
            H[n] @ W[j] - lq for j, lq in zip([1, 4, 6], np.log([0.1, 0.3, 0.05])) if j != t[n]
        ]
        vals.append(np.log(np.exp(logits).sum()) - pos)
    got = sampled_softmax_loss(h, E, t, neg, log_q=log_q, log_q_pos=log_q_pos)
    assert float(got) == pytest.approx(np.mean(vals), rel=1e-10)


def test_gbce_beta_endpoints_and_loss():
    assert gbce_beta(256, 1001, 0.0) == pytest.approx(1.0)  # t = 0: plain BCE
    assert gbce_beta(256, 1001, 1.0) == pytest.approx(256 / 1000)  # t = 1: beta = alpha
    g = torch.Generator().manual_seed(1)
    h = torch.randn(4, 3, generator=g, dtype=torch.float64)
    E = torch.randn(9, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([2, 5, 0, 8])
    neg = torch.tensor([[1, 2], [3, 4], [0, 6], [7, 8]])  # rows 0, 2 and 3 hold their target
    beta = gbce_beta(2, 9, 0.75)
    H, W = h.numpy(), E.numpy()
    vals = []
    for n in range(4):
        pos = H[n] @ W[t[n]]
        negs = sum(-np.log(1 - _sig(H[n] @ W[j])) for j in neg[n].tolist() if j != t[n])
        vals.append(-beta * np.log(_sig(pos)) + negs)
    assert float(gbce_loss(h, E, t, neg, beta)) == pytest.approx(np.mean(vals), rel=1e-10)
