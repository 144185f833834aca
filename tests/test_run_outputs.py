"""What a finished run leaves behind and what the commands make of it: BPR-MF's user factors in
``genrec clusters``, and the training checkpoint dropped unless it is asked for."""

import json

import numpy as np
import pytest

from genrec.analysis import model_user_embeddings
from genrec.cli import main
from genrec.errors import ConfigError
from genrec.runs import RunSpec, load_run, resume_run, train_run
from genrec.runs import folder as rf
from tests.synthetic import write_ml100k


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    return write_ml100k(tmp_path_factory.mktemp("data") / "ml-100k", n_users=60)


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def bpr_spec(data, out, **run):
    return RunSpec.from_mapping(
        {
            "model": "bpr-mf",
            "dataset": str(data),
            "n_factors": 8,
            "train": {"epochs": 3, "device": "cpu"},
            "run": run,
        },
        out=out,
    )


def test_clusters_of_bpr_mf_use_its_user_factors_not_no_embeddings(ml100k, tmp_path, capsys):
    # genrec clusters said "model bpr-mf has no user embeddings" although it has user factors
    result = train_run(bpr_spec(ml100k, tmp_path / "bpr"))
    run = load_run(result.out)
    X = run.data.train
    active = np.flatnonzero(np.diff(X.indptr) > 0)
    Z = model_user_embeddings(run.model, X[active], users=active)
    np.testing.assert_allclose(Z, run.model.user_factors_.numpy()[active], rtol=1e-6)
    code, out, err = cli(
        capsys, "clusters", result.out, "--k", 2, "--map", "none", "--out", tmp_path / "cl"
    )
    assert code == 0, err
    assert "no user embeddings" not in err
    profiles = json.loads((tmp_path / "cl" / "profiles.json").read_text())
    assert profiles["embedding"] == "model" and profiles["users"] == len(active)


def test_clusters_of_a_model_without_embeddings_names_the_option(ml100k, tmp_path, capsys):
    code, _, err = cli(
        capsys, "train", "--model", "ease", "--dataset", ml100k, "--out", tmp_path / "ease"
    )
    assert code == 0, err
    code, _, err = cli(capsys, "clusters", tmp_path / "ease", "--k", 2, "--out", tmp_path / "c")
    assert code == 1 and "Traceback" not in err
    assert "model ease has no user embeddings" in err and "--embedding svd" in err


def test_finished_run_drops_its_training_checkpoint_unless_asked_to_keep_it(ml100k, tmp_path):
    # a finished run kept a large optimizer checkpoint beside its weights
    result = train_run(bpr_spec(ml100k, tmp_path / "dropped"))
    out = result.out
    assert (out / "weights.npz").is_file()
    assert not (out / rf.CHECKPOINT_NAME).exists() and not (out / "checkpoint").exists()
    record = json.loads((out / "run.json").read_text())
    assert record["keep_checkpoint"] is False and "checkpoint" not in record["owned"]
    load_run(out).recommend(user=1, k=3)  # the run is complete without it
    with pytest.raises(ConfigError, match="no training checkpoint.*run.keep_checkpoint"):
        resume_run(out, epochs=5)

    kept = train_run(bpr_spec(ml100k, tmp_path / "kept", keep_checkpoint=True)).out
    assert (kept / rf.CHECKPOINT_NAME).is_file()
    assert json.loads((kept / "run.json").read_text())["keep_checkpoint"] is True
    further = resume_run(kept, epochs=5)  # it can be trained further, and keeps it again
    assert further is not None and (kept / rf.CHECKPOINT_NAME).is_file()
    assert rf.epochs_done(kept) == 5


def test_cli_keep_checkpoint_option(ml100k, tmp_path, capsys):
    args = ["train", "--model", "bpr-mf", "--dataset", ml100k, "--set", "train.epochs=2"]
    code, _, err = cli(capsys, *args, "--out", tmp_path / "a")
    assert code == 0, err
    assert not (tmp_path / "a" / "checkpoint").exists()
    code, _, err = cli(capsys, *args, "--keep-checkpoint", "--out", tmp_path / "b")
    assert code == 0, err
    assert (tmp_path / "b" / rf.CHECKPOINT_NAME).is_file()
    code, out, err = cli(capsys, "train", "--resume", tmp_path / "a")  # nothing to resume,
    assert code == 0 and "finished already" in out  # and no hint to train it further
    assert "train.epochs=N" not in " ".join(out.split())
    code, _, err = cli(capsys, "train", "--resume", tmp_path / "a", "--set", "train.epochs=4")
    assert code == 1 and "Traceback" not in err
    assert "no training checkpoint" in err and "--keep-checkpoint" in err
    # a finished run replaced by one that drops its checkpoint loses the old one too
    code, _, err = cli(capsys, *args, "--out", tmp_path / "b")
    assert code == 0, err
    assert not (tmp_path / "b" / "checkpoint").exists()
