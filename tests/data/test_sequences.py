"""Ordered histories: the Sequences type, the readers that build it, the leave-one-out split."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from genrec.data import DataOptions, Sequences, load_dataset, sequence_leave_one_out
from genrec.errors import DataError


def _rows(seqs: Sequences, ids=None) -> list[list]:
    out = [seqs.row(u).tolist() for u in range(seqs.n_users)]
    return out if ids is None else [[ids[i].item() for i in r] for r in out]


def test_from_events_sorts_by_time_stably_and_says_so_once(caplog):
    # user 0: times 5, 1, 1 (file order a, b, c) -> b, c (tie, file order), a
    u = np.array([0, 1, 0, 0, 1])
    i = np.array([0, 3, 1, 2, 4])
    t = np.array([5.0, 2.0, 1.0, 1.0, 1.0])
    with caplog.at_level(logging.INFO, logger="genrec.data.sequences"):
        s = Sequences.from_events(u, i, 2, 5, t, source="log.csv")
    assert _rows(s) == [[1, 2, 0], [4, 3]]
    assert s.times is not None and s.times.tolist() == [1.0, 1.0, 5.0, 1.0, 2.0]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1
    assert (
        "not in time order" in said[0] and "1 users have items with the same timestamp" in said[0]
    )


def test_from_events_without_times_keeps_file_order():
    s = Sequences.from_events(np.array([1, 0, 1, 0]), np.array([5, 2, 1, 2]), 2, 6)
    assert _rows(s) == [[2, 2], [5, 1]]  # repeats kept


def test_padded_keeps_the_most_recent_items_left_padded():
    s = Sequences.from_lists([[1, 2, 3, 4, 5], [7], []], 8)
    p = s.padded(3, pad=-1)
    assert p.tolist() == [[3, 4, 5], [-1, -1, 7], [-1, -1, -1]]


def test_take_drop_last_to_csr_and_k_core():
    s = Sequences.from_lists([[0, 1, 1], [2], [1, 2, 0, 3]], 4)
    assert _rows(s.take([2, 0])) == [[1, 2, 0, 3], [0, 1, 1]]
    assert _rows(s.take(slice(1, 3))) == [[2], [1, 2, 0, 3]]
    assert _rows(s.drop_last(2)) == [[0], [], [1, 2]]
    assert s.to_csr().toarray().tolist() == [[1, 1, 0, 0], [0, 0, 1, 0], [1, 1, 1, 1]]
    # item 3 occurs once: gone with item_k=2; user 1 (one event) goes with user_k=2, and
    # then item 2 has one event left, so it goes too (repeated until both hold)
    assert _rows(s.k_core(user_k=2, item_k=2)) == [[0, 1, 1], [], [1, 0]]
    stats = s.length_stats()
    assert (stats["min"], stats["max"], stats["median"]) == (1, 4, 3.0)


def test_sequences_refuse_inconsistent_arrays():
    with pytest.raises(ValueError, match="offsets"):
        Sequences(np.array([0, 3]), np.array([1, 2]), 5)
    with pytest.raises(ValueError, match="items"):
        Sequences(np.array([0, 2]), np.array([1, 9]), 5)


def test_leave_one_out_has_no_leakage_and_counts_short_users():
    s = Sequences.from_lists([[0, 1, 2, 3], [4, 5], [6, 7, 8], [9]], 10)
    split = sequence_leave_one_out(s)
    assert split.users.tolist() == [0, 2]
    assert split.valid_target.tolist() == [2, 7] and split.test_target.tolist() == [3, 8]
    assert _rows(split.train) == [[0, 1], [4, 5], [6], [9]]  # short users whole in training
    assert split.n_short == 2
    assert _rows(split.valid_inputs()) == [[0, 1], [6]]
    assert _rows(split.test_inputs()) == [[0, 1, 2], [6, 7]]  # train + the validation item
    again = sequence_leave_one_out(s)
    assert _rows(again.train) == _rows(split.train)  # deterministic
    for u, row in zip(split.users, _rows(split.train.take(split.users))):
        assert split.test_target[list(split.users).index(u)] not in row[-1:]


def test_leave_one_out_without_a_long_user_is_a_clear_error():
    with pytest.raises(DataError, match="3 or more items"):
        sequence_leave_one_out(Sequences.from_lists([[0, 1], [2]], 3))


def test_sequence_lines_are_read_in_line_order(tmp_path):
    p = tmp_path / "Toy.txt"
    p.write_text("2 30 10 30 40 50\n1 10 20 30 40 50 60\n\n3 20 10 60 70 80\n")
    ds = load_dataset(p)  # detected: differing field counts, more than 4 fields
    assert ds.sequences is not None and ds.implicit
    ids = ds.interactions.item_ids
    assert ds.interactions.user_ids.tolist() == [1, 2, 3]
    assert _rows(ds.sequences, ids) == [
        [10, 20, 30, 40, 50, 60],
        [30, 10, 30, 40, 50],  # the repeat stays in the sequence
        [20, 10, 60, 70, 80],
    ]
    assert ds.interactions.nnz == 6 + 4 + 5  # the matrix holds the pair once
    assert ds.summary()["sequence_lengths"]["max"] == 6


@pytest.mark.parametrize(
    "text, message",
    [
        ("1 2 3 4 5 6\n2\n", "line 2: user '2' has no items"),
        ("1 2 3 4 5 6\n1 7 8\n", "line 2: user '1' already has a line \\(line 1\\)"),
    ],
)
def test_sequence_lines_bad_input_names_the_line(tmp_path, text, message):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(DataError, match=message):
        load_dataset(p, DataOptions(format="sequences"))


def test_log_with_time_column_gives_sequences_by_time(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("user,item,timestamp\na,x,30\na,y,10\nb,z,5\na,z,20\n")
    ds = load_dataset(p)
    assert _rows(ds.sequences, ds.interactions.item_ids) == [["y", "z", "x"], ["z"]]


def test_log_without_time_has_sequences_only_when_ordered(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("user,item\na,x\na,y\nb,z\na,z\n")
    assert load_dataset(p).sequences is None
    ds = load_dataset(p, DataOptions(ordered=True))
    assert _rows(ds.sequences, ds.interactions.item_ids) == [["x", "y", "z"], ["z"]]
