"""Item features for the models that code items from content: the sources the runner reads
(attribute JSON, .npy, a trained run), and TIGER trained and used from the command line."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from genrec.errors import ConfigError, DataError
from genrec.models import TIGERConfig
from genrec.runs import RunSpec, load_run, train_run
from genrec.runs.item_features import item_features
from tests._cli import run_cli
from tests.test_sequential_protocol import _write_lines, walks

N_ITEMS = 30
TINY = [
    "dim=16",
    "n_layers=1",
    "n_heads=2",
    "head_dim=8",
    "ffn_dim=32",
    "max_items=4",
    "user_buckets=0",
    "beam=20",
    "dropout=0.0",
    "feature_dim=6",
    "tokenizer=kmeans",
    "semantic.n_levels=2",
    "semantic.n_codes=4",
    "train.epochs=15",
    "train.batch_size=64",
    "train.lr=0.005",
    "train.device=cpu",
]


@pytest.fixture()
def data(tmp_path):
    """Walks over 30 items (raw ids 1..30) and an attribute file: item i has attributes
    {i mod 5, 10 + i mod 3}; item 30 has none (it is missing from the file)."""
    path = _write_lines(tmp_path / "walks.txt", walks(n_items=N_ITEMS))
    attrs = {str(i): [i % 5, 10 + i % 3] for i in range(1, N_ITEMS)}
    (tmp_path / "attrs.json").write_text(json.dumps(attrs))
    return path


def _ds(path):
    from genrec.data import load_dataset

    return load_dataset(str(path))


def test_sources_are_joined_with_unit_rows_in_the_data_item_order(data, tmp_path, caplog):
    ds = _ds(data)
    raw = ds.interactions.item_map.raw
    npy = np.zeros((len(raw), 3), np.float32)
    npy[:, 0] = raw  # a feature that says the raw id
    np.save(tmp_path / "f.npy", npy)
    config = TIGERConfig(
        item_features=(str(tmp_path / "attrs.json"), str(tmp_path / "f.npy")), feature_dim=4
    )
    with caplog.at_level(logging.WARNING, logger="genrec.runs"):
        F = item_features(config, ds)
    assert F.shape[0] == len(raw) and F.shape[1] == 4 + 3
    np.testing.assert_allclose(F[:, 4], 1.0)  # the .npy part: one non-zero entry, unit rows
    no_attrs = np.flatnonzero(raw.astype(str) == "30")
    assert np.abs(F[no_attrs, :4]).max() == 0  # the item without attributes: a zero row there
    norms = np.linalg.norm(F[:, :4], axis=1)
    np.testing.assert_allclose(np.delete(norms, no_attrs), 1.0, rtol=1e-5)
    assert "1 of 30 items have no features" in caplog.text


def test_no_sources_give_none_and_bad_sources_are_named(data, tmp_path):
    ds = _ds(data)
    assert item_features(TIGERConfig(), ds) is None
    np.save(tmp_path / "short.npy", np.zeros((5, 2)))
    with pytest.raises(DataError, match=r"short.npy: a matrix of shape \(5, 2\).*30 items"):
        item_features(TIGERConfig(item_features=(str(tmp_path / "short.npy"),)), ds)
    with pytest.raises(DataError, match="no such file"):
        item_features(TIGERConfig(item_features=(str(tmp_path / "none.npy"),)), ds)
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a .json attribute file, a .npy matrix, a run"):
        item_features(TIGERConfig(item_features=(str(tmp_path / "f.txt"),)), ds)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}] * 30, dtype=object).reshape(30, 1))
    with pytest.raises(DataError, match="obj.npy: not a plain .npy array"):
        item_features(TIGERConfig(item_features=(str(tmp_path / "obj.npy"),)), ds)


def test_a_trained_run_gives_its_item_embeddings_by_raw_id(data, tmp_path):
    values = {
        "model": "sasrec",
        "dataset": str(data),
        "dim": 8,
        "max_len": 6,
        "train": {"epochs": 1, "device": "cpu"},
        "protocol": {"name": "seq-loo"},
    }
    train_run(RunSpec.from_mapping(values, where="test", out=tmp_path / "sasrec"))
    run = load_run(tmp_path / "sasrec")
    ds = _ds(data)
    F = item_features(TIGERConfig(item_features=(str(tmp_path / "sasrec"),)), ds)
    emb = run.model.item_embeddings()
    j = run.items.indices([ds.interactions.item_map.raw[0]], "item")[0]
    np.testing.assert_allclose(F[0], emb[j] / np.linalg.norm(emb[j]), rtol=1e-5)


def test_tiger_trains_and_recommends_from_the_command_line(data, tmp_path, capsys):
    out = tmp_path / "tiger"
    sets = [*TINY, f'item_features=["{tmp_path / "attrs.json"}"]']
    args = ["train", "--model", "tiger", "--dataset", str(data), "--protocol", "seq-loo"]
    code, printed, err = run_cli(
        capsys, *args, "--out", str(out), *sum((["--set", s] for s in sets), [])
    )
    assert code == 0, err
    assert "recall@10" in printed
    run = load_run(out)
    codes = run.model.item_codes()
    assert len({tuple(r) for r in codes.tolist()}) == N_ITEMS
    lists = walks(n_items=N_ITEMS)
    whole = [str(i + 1) for i in lists[0]]
    assert run.recommend(user=1, k=5).items == run.recommend(items=whole, k=5).items
    code, _, err = run_cli(capsys, "recommend", str(out), "--user", "1", "-k", "25")
    assert code != 0 and "beam" in err
