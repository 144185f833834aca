"""Scoring of the sequential networks in length-sorted groups without their all-padding
columns gives the scores of the full windows, row for row and in the callers' order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genrec.models.sequential as sequential
from genrec.data import Sequences
from genrec.models import HSTU, BERT4Rec, GRU4Rec, SASRec
from genrec.models.sequential import PAD, SeqBatch, trim_padding
from genrec.testing.sequential import cycles

TRAIN = {"epochs": 1, "batch_size": 8, "lr": 1e-2, "device": "cpu", "seed": 0}
NETS = {
    "sasrec": lambda: SASRec(max_len=8, dim=8, n_blocks=2, n_heads=2, train=TRAIN),
    "hstu": lambda: HSTU(max_len=8, dim=8, n_blocks=2, n_heads=2, qk_dim=4, v_dim=3, train=TRAIN),
    "gru4rec": lambda: GRU4Rec(max_len=8, embedding_dim=8, hidden_dim=8, train=TRAIN),
    "bert4rec": lambda: BERT4Rec(max_len=8, hidden_dim=8, ffn_dim=16, train=TRAIN),
}


def mixed_lengths(n_items: int, n_users: int = 37, seed: int = 0) -> Sequences:
    """Histories of 0 to 12 items (some longer than max_len 8), in a shuffled order, with
    increasing timestamps (HSTU reads them)."""
    rng = np.random.default_rng(seed)
    lists = [list(rng.integers(0, n_items, int(n))) for n in rng.integers(0, 13, n_users)]
    seqs = Sequences.from_lists(lists, n_items)
    times = np.concatenate([np.sort(rng.uniform(0, 1e6, len(x))) for x in lists]).astype(float)
    return Sequences(seqs.offsets, seqs.items, n_items, times)


@pytest.mark.parametrize("name", sorted(NETS))
def test_grouped_trimmed_scores_equal_the_full_windows(name, monkeypatch):
    train, _ = cycles()
    model = NETS[name]().fit(train)
    seqs = mixed_lengths(train.n_items)
    (batch,) = list(model._batches(seqs))  # one scoring batch of full-width windows
    model.module_.eval()
    with torch.inference_mode():
        full = model._hidden(batch.inputs, batch.times)[:, -1]  # (B, D): no grouping, no trim
    monkeypatch.setattr(sequential, "SCORE_GROUP", 5)  # many groups of unequal widths
    with torch.inference_mode():
        grouped = model._last(batch)
    torch.testing.assert_close(grouped, full, rtol=1e-5, atol=1e-6)
    scores = np.asarray(model.score(None, seqs))
    one_by_one = np.concatenate([np.asarray(model.score(None, seqs.take([u]))) for u in range(37)])
    np.testing.assert_allclose(scores, one_by_one, rtol=1e-5, atol=1e-5)


def test_trim_padding_drops_only_columns_that_are_padding_in_every_row():
    t = torch.tensor([[PAD, PAD, 3, 4], [PAD, PAD, PAD, 5]])
    times = torch.arange(8.0).reshape(2, 4)
    x, tt, none = trim_padding(t, times, None)
    assert x.tolist() == [[3, 4], [PAD, 5]] and tt.tolist() == [[2.0, 3.0], [6.0, 7.0]]
    assert none is None
    (x,) = trim_padding(torch.full((2, 4), PAD))  # all padding: the last column stays
    assert x.shape == (2, 1)


def test_a_batch_of_empty_histories_scores():
    train, _ = cycles()
    model = NETS["sasrec"]().fit(train)
    b = SeqBatch(torch.full((3, 8), PAD))
    with torch.inference_mode():
        assert model._last(b).shape == (3, 8)
