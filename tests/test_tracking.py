"""The TensorBoard and MLflow exporters of the trainer's per-epoch log (``--log``): what they
write is read back with each tracker's own reader and compared with train_log.jsonl."""

import json
import sys

import pytest

from genrec.errors import MissingExtraError
from genrec.train.tracking import MLflowLogger, TensorBoardLogger, flat_numbers, make_trackers
from tests._cli import run_cli as run
from tests.synthetic import write_ml100k

SMALL_VAE = ("--set", "train.epochs=3", "--set", "hidden_dims=[8]", "--set", "latent_dim=4")


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    return write_ml100k(tmp_path_factory.mktemp("data") / "ml-100k")


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def test_flat_numbers_flattens_and_drops_non_numbers():
    rec = {"epoch": 3, "loss": 1.5, "valid": {"ndcg@20": 0.25, "n": 7}, "ok": True, "s": "x"}
    rec["bad"] = float("nan")
    assert flat_numbers(rec) == {"loss": 1.5, "valid/ndcg@20": 0.25, "valid/n": 7.0}


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_train_log_tensorboard_matches_the_jsonl_log(tmp_path, capsys, ml100k):
    out = tmp_path / "runs" / "vae"
    code, _, err = run(
        capsys, "train", "--model", "mult-vae", "--dataset", str(ml100k), *SMALL_VAE,
        "--set", "train.select_metric=recall@20", "--out", str(out),
        "--log", "tensorboard",
    )  # fmt: skip
    assert code == 0, err
    scalars = _scalars(tmp_path / "runs" / "tensorboard" / "vae")
    records = _log(out)
    assert len(records) == 3
    for key in ("loss", "valid/recall@20", "valid/ndcg@20"):
        want = [(r["epoch"], flat_numbers(r)[key]) for r in records]
        got = scalars[key]
        assert [s for s, _ in got] == [s for s, _ in want]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)


def test_train_log_mlflow_matches_the_jsonl_log(tmp_path, capsys, ml100k, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = tmp_path / "runs" / "vae"
    code, _, err = run(
        capsys, "train", "--model", "mult-vae", "--dataset", str(ml100k), *SMALL_VAE,
        "--out", str(out), "--log", "mlflow",
    )  # fmt: skip
    assert code == 0, err
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("genrec")
    (found,) = client.search_runs([exp.experiment_id])
    assert found.info.run_name == "vae" and found.info.status == "FINISHED"
    assert found.data.params["model"] == "mult-vae"
    assert found.data.params["latent_dim"] == "4"
    assert found.data.tags["model"] == "mult-vae"
    records = _log(out)
    history = client.get_metric_history(found.info.run_id, "valid/ndcg_at_20")
    assert [m.step for m in history] == [r["epoch"] for r in records]
    assert [m.value for m in history] == pytest.approx([r["valid"]["ndcg@20"] for r in records])


def test_a_grid_writes_one_tensorboard_folder_per_fit(tmp_path, capsys, ml100k):
    out = tmp_path / "runs" / "grid"
    code, _, err = run(
        capsys, "train", "--model", "mult-vae", "--dataset", str(ml100k), *SMALL_VAE,
        "--grid", "dropout=0.1,0.3", "--out", str(out), "--log", "tensorboard",
    )  # fmt: skip
    assert code == 0, err
    board = tmp_path / "runs" / "tensorboard"
    assert sorted(p.name for p in board.iterdir()) == ["grid", "grid-2"]
    assert all(len(_scalars(p)["loss"]) == 3 for p in board.iterdir())


def test_log_for_a_model_without_the_trainer_is_one_line(tmp_path, capsys, ml100k):
    code, _, err = run(
        capsys, "train", "--model", "ease", "--dataset", str(ml100k),
        "--out", str(tmp_path / "e"), "--log", "tensorboard",
    )  # fmt: skip
    assert code == 1
    assert "ease is not trained by epochs" in err and "Traceback" not in err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(
    "module, build",
    [
        ("tensorboard", lambda tmp: TensorBoardLogger(tmp / "tb")),
        ("mlflow", lambda tmp: MLflowLogger("e", "r", tracking_uri=f"sqlite:///{tmp}/m.db")),
    ],
)
def test_a_missing_tracker_package_names_the_extra(tmp_path, monkeypatch, module, build):
    monkeypatch.setitem(sys.modules, module, None)  # import of it fails as if not installed
    with pytest.raises(MissingExtraError, match=rf"pip install 'genrec\[{module}\]'"):
        build(tmp_path)


def test_make_trackers_defaults_mlflow_to_a_database_in_the_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tb, ml) = make_trackers(["tensorboard", "mlflow"], folder=tmp_path, name="r")
    assert isinstance(tb, TensorBoardLogger) and tb.log_dir == tmp_path / "tensorboard" / "r"
    assert isinstance(ml, MLflowLogger)
    ml.on_train_begin(epochs=1, start_epoch=0, select=None)
    ml.on_epoch_end({"epoch": 1, "loss": 2.0})
    ml.on_train_end()
    assert (tmp_path / "mlflow.db").is_file()
    with pytest.raises(ValueError, match="unknown tracker"):
        make_trackers(["wandb"], folder=tmp_path, name="r")


class _Boom:
    """A callback that breaks training at the end of epoch 2 with ``error``."""

    def __init__(self, error):
        self.error = error

    def on_train_begin(self, **kw):
        pass

    def on_epoch_begin(self, epoch, n):
        pass

    def on_batch(self, step, loss):
        pass

    def on_epoch_end(self, record):
        if record["epoch"] == 2:
            raise self.error("boom")

    def on_train_error(self, error):
        pass

    def on_train_end(self):
        pass


@pytest.mark.parametrize("error, status", [(RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_a_run_that_fails_ends_failed_in_mlflow_and_closes_its_writer(tmp_path, error, status):
    import numpy as np
    import scipy.sparse as sp
    from mlflow.tracking import MlflowClient

    from genrec.models import get_model_class
    from genrec.train.callbacks import FitContext

    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    ml = MLflowLogger("e", "r", tracking_uri=uri)
    tb = TensorBoardLogger(tmp_path / "tb")
    X = sp.csr_matrix((np.random.default_rng(0).random((30, 20)) < 0.3).astype(np.float32))
    cls = get_model_class("mult-vae")
    model = cls(cls.config_class(hidden_dims=(8,), latent_dim=4))
    with pytest.raises(error):
        model.fit(X, context=FitContext(callbacks=(tb, ml, _Boom(error))))
    client = MlflowClient(tracking_uri=uri)
    (found,) = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert found.info.status == status
    assert len(client.get_metric_history(found.info.run_id, "loss")) == 2
    assert tb._writer is None  # closed


def test_an_unusable_mlflow_store_is_one_line_before_training(
    tmp_path, capsys, ml100k, monkeypatch
):
    bad = tmp_path / "file.txt"
    bad.write_text("not a database")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{bad}")
    code, _, err = run(
        capsys, "train", "--model", "mult-vae", "--dataset", str(ml100k), *SMALL_VAE,
        "--out", str(tmp_path / "r"), "--log", "mlflow",
    )  # fmt: skip
    assert code == 1 and "MLflow tracking store" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
