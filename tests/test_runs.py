"""genrec.runs: the runner as library code, the staged run folder, and the faults it closes."""

import json

import numpy as np
import pytest

from genrec.errors import ConfigError, DataError
from genrec.runs import (
    RunInterrupted,
    RunLockedError,
    RunSpec,
    UnfinishedRunError,
    load_run,
    resume_run,
    train_run,
)
from genrec.runs import folder as rf


@pytest.fixture()
def log_csv(tmp_path):
    """A small implicit log: 60 users in two taste groups over 30 string item ids."""
    rng = np.random.default_rng(0)
    rows = ["user,item,timestamp"]
    t = 0
    for u in range(60):
        group = u % 2
        items = rng.choice(15, size=8, replace=False) + 15 * group
        for i in items:
            t += 1
            rows.append(f"u{u},it{i},{t}")
    path = tmp_path / "log.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _spec(log_csv, out, model="ease", force=False, **values):
    return RunSpec.from_mapping(
        {"model": model, "dataset": str(log_csv), **values}, out=out, force=force
    )


def _vae(log_csv, out, force=False, epochs=3, **over):
    values = {
        "hidden_dims": [8],
        "latent_dim": 4,
        "train": {"epochs": epochs, "device": "cpu"},
        **over,
    }
    return _spec(log_csv, out, "mult-vae", force, **values)


def test_train_run_then_load_run_recommends_by_raw_ids(log_csv, tmp_path):
    result = train_run(_spec(log_csv, tmp_path / "run", l2=10.0))
    assert result.out == tmp_path / "run" and result.test["metrics"]["recall@20"] > 0
    run = load_run(tmp_path / "run")
    recs = run.recommend(user="u0", k=5)
    assert len(recs.items) == 5
    seen = set(run.items.raw[run.user_history("u0").indices].tolist())
    assert not seen & {r["item"] for r in recs.items}  # the user's own items are left out
    folded = run.recommend(items=["it1", "it2", "nope"], k=3)
    assert folded.history == ["it1", "it2"] and any("nope" in n for n in folded.notes)
    with pytest.raises(DataError, match="unknown item 'nope'"):
        run.recommend(items=["it1", "nope"], unknown_items="error")
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["format"] == rf.RUN_FORMAT and set(record["files"]) == set(rf.MODEL_FILES)
    assert not (tmp_path / "run" / ".next").exists()


def test_a_new_run_never_resumes_a_stale_checkpoint(log_csv, tmp_path, monkeypatch):
    """A run killed in its first epoch, resumed, ends where an uninterrupted run of its own
    config ends, not at the older run's weights that were in the folder."""
    from genrec.models import MultVAE

    out = tmp_path / "run"
    old = train_run(_vae(log_csv, out, dropout=0.5, epochs=4))
    reference = train_run(_vae(log_csv, tmp_path / "ref", dropout=0.2))
    real = MultVAE.train_step
    calls = {"n": 0}

    def killed(self, batch, ctx):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real(self, batch, ctx)

    monkeypatch.setattr(MultVAE, "train_step", killed)
    with pytest.raises(RunInterrupted) as info:
        train_run(_vae(log_csv, out, dropout=0.2))
    assert info.value.resumable and info.value.out == out
    # the finished model is still there and usable while the new run is pending
    assert load_run(out).model.config.dropout == 0.5
    with pytest.raises(UnfinishedRunError):
        train_run(_vae(log_csv, out, dropout=0.2))
    resumed = resume_run(out)
    assert resumed is not None and resumed.model.config.dropout == 0.2
    X = load_run(out).data.train[:5]
    np.testing.assert_array_equal(
        load_run(out).model.score(None, X).numpy(), reference.model.score(None, X).numpy()
    )
    assert not np.array_equal(
        old.model.score(None, X).numpy(), reference.model.score(None, X).numpy()
    )


def test_a_failed_run_leaves_the_finished_model_usable(log_csv, tmp_path, monkeypatch):
    from genrec.models import EASE

    out = tmp_path / "run"
    train_run(_spec(log_csv, out, l2=10.0))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def refuse(self, X, **kwargs):
        raise DataError("EASE needs 9 GB for this catalogue; raise max_memory_gb")

    monkeypatch.setattr(EASE, "fit", refuse)
    with pytest.raises(DataError, match="9 GB"):
        train_run(_spec(log_csv, out, l2=20.0))
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    run = load_run(out)
    assert run.model.config.l2 == 10.0 and len(run.recommend(user="u1", k=3).items) == 3
    assert rf.read_status(rf.staging_dir(out)) == "failed"
    train_run(_spec(log_csv, out, l2=20.0))  # a failed run is replaced without force
    assert load_run(out).model.config.l2 == 20.0


def test_a_second_run_into_a_locked_folder_is_refused(log_csv, tmp_path):
    out = tmp_path / "run"
    with rf.run_lock(out), pytest.raises(RunLockedError, match="another training run"):
        train_run(_spec(log_csv, out))


def test_a_folder_of_other_files_is_not_overwritten(log_csv, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "weights.npz").write_bytes(b"my own file")
    with pytest.raises(ConfigError, match="holds no genrec run"):
        train_run(_spec(log_csv, out))
    assert (out / "weights.npz").read_bytes() == b"my own file"
    train_run(_spec(log_csv, out, force=True))
    assert load_run(out).name == "ease"


def test_a_huge_grid_is_refused_before_it_is_built(log_csv, tmp_path):
    grid = {"l2": list(range(1, 1001)), "max_memory_gb": [float(x) for x in range(1, 1001)]}
    with pytest.raises(ConfigError, match="1000000 configurations, at most 1000"):
        RunSpec.from_mapping({"model": "ease", "dataset": str(log_csv), "run": {"grid": grid}})


def test_grid_with_seeds_selects_on_the_mean_and_reports_it(log_csv, tmp_path):
    spec = _vae(
        log_csv,
        tmp_path / "run",
        run={"grid": {"dropout": [0.2, 0.5]}, "seeds": [0, 1], "select": "recall@20"},
    )
    result = train_run(spec)
    trials = result.record["trials"]
    assert [t["params"] for t in trials] == [{"dropout": 0.2}, {"dropout": 0.5}]
    best = max(trials, key=lambda t: t["select_mean"])
    assert result.record["chosen"] == best["params"]
    assert set(result.test["seeds"]["recall@20"]) == {"mean", "sd"}


def test_sweep_of_temp_files_left_by_a_kill(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / ".weights.npz.abc.tmp").write_bytes(b"x")
    (tmp_path / "checkpoint" / ".state.pt.def.tmp").write_bytes(b"x")
    assert sorted(rf.sweep_temp_files(tmp_path)) == [".state.pt.def.tmp", ".weights.npz.abc.tmp"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_commit_interrupted_between_files_is_completed(log_csv, tmp_path, monkeypatch):
    """A crash in the middle of replacing the files is completed when the folder is next
    used: the new run is in place, whole."""
    out = tmp_path / "run"
    train_run(_spec(log_csv, out, l2=10.0))
    real = rf.os.replace
    calls = {"n": 0}

    def crash_after_two(src, dst):
        if ".next" in str(src) and ".next" not in str(dst):  # the moves of the commit
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(rf.os, "replace", crash_after_two)
    with pytest.raises(OSError):
        train_run(_spec(log_csv, out, l2=30.0))
    monkeypatch.undo()
    run = load_run(out)  # recovers: the staged run (complete) goes in place
    assert run.model.config.l2 == 30.0
    assert not rf.staging_dir(out).exists()


@pytest.mark.slow
def test_sigterm_is_handled_like_ctrl_c_and_the_run_resumes(log_csv, tmp_path):
    """SIGTERM in the middle of training: the one 'interrupted' message, exit 143, and
    --resume ends at the same weights as an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    def args(out):
        return [
            sys.executable,
            "-m",
            "genrec",
            "train",
            "--model",
            "mult-vae",
            "--dataset",
            str(log_csv),
            "--set",
            "train.epochs=400",
            "--set",
            "hidden_dims=[8]",
            "--set",
            "latent_dim=4",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "killed"
    p = subprocess.Popen(
        args(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    ckpt = rf.staging_dir(out) / rf.CHECKPOINT_NAME
    deadline = time.monotonic() + 120
    while not ckpt.is_file() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert "interrupted: continue with `genrec train --resume" in " ".join(err.split())
    assert "Traceback" not in err
    r = subprocess.run(
        [sys.executable, "-m", "genrec", "train", "--resume", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    ref = subprocess.run(
        args(tmp_path / "ref"), capture_output=True, text=True, env=env, timeout=300
    )
    assert ref.returncode == 0, ref.stderr
    X = load_run(out).data.train[:10]
    np.testing.assert_array_equal(
        load_run(out).model.score(None, X).numpy(),
        load_run(tmp_path / "ref").model.score(None, X).numpy(),
    )


def test_refit_trains_the_chosen_config_on_train_plus_valid_for_its_best_epochs(log_csv, tmp_path):
    spec = _vae(
        log_csv,
        tmp_path / "run",
        epochs=4,
        protocol={"name": "loo"},
        run={"grid": {"dropout": [0.2, 0.5]}, "refit": True},
    )
    seen = []
    import genrec.runs.runner as runner

    real = runner.fit_model

    def spy(model, X, valid, *args, **kwargs):
        seen.append((X.nnz, valid is None))
        return real(model, X, valid, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "fit_model", spy)
        result = train_run(spec)
    (train_nnz, _), _, (refit_nnz, no_valid) = seen  # two grid fits, then the refit
    assert no_valid and refit_nnz > train_nnz
    chosen = next(t for t in result.record["trials"] if t["params"] == result.record["chosen"])
    assert result.record["config"]["train"]["patience"] is None
    assert 1 <= result.record["config"]["train"]["epochs"] <= 4
    assert chosen["fit_seconds"] > 0
    assert 0 < result.refit_seconds <= result.fit_seconds
    assert load_run(tmp_path / "run").name == "mult-vae"


def test_refit_on_a_protocol_without_data_to_add_is_refused_before_fitting(log_csv, tmp_path):
    spec = _vae(log_csv, tmp_path / "run", protocol={"name": "strong"}, run={"refit": True})
    with pytest.raises(ConfigError, match="run.refit: protocol strong keeps its validation"):
        train_run(spec)
    assert not (tmp_path / "run").exists()


def test_a_run_without_refit_records_no_refit_seconds(log_csv, tmp_path):
    result = train_run(_spec(log_csv, tmp_path / "run", l2=10.0))
    assert result.refit_seconds is None and result.record["refit_seconds"] is None


def test_ctrl_c_during_a_checkpoint_write_is_the_interrupted_message(
    log_csv, tmp_path, monkeypatch
):
    """Ctrl-C while the checkpoint is serialised waits until the file is written: the run
    stops as an interrupted, resumable run with an intact checkpoint (not a serializer's
    traceback), and resumes to the uninterrupted result."""
    import os
    import signal

    import torch

    from genrec.train import checkpoint as ck

    reference = train_run(_vae(log_csv, tmp_path / "ref"))
    real_save = torch.save
    calls = {"n": 0}

    def interrupted_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            os.kill(os.getpid(), signal.SIGINT)  # delivered in the middle of the write
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ck.torch, "save", interrupted_save)
    out = tmp_path / "run"
    with pytest.raises(RunInterrupted) as info:
        train_run(_vae(log_csv, out))
    assert info.value.resumable and calls["n"] == 1
    ckpt = rf.staging_dir(out) / rf.CHECKPOINT_NAME
    ck.read_checkpoint(ckpt, torch.device("cpu"))  # whole, and its digest matches
    monkeypatch.setattr(ck.torch, "save", real_save)
    resumed = resume_run(out)
    assert resumed is not None
    X = load_run(out).data.train[:5]
    np.testing.assert_array_equal(
        load_run(out).model.score(None, X).numpy(), reference.model.score(None, X).numpy()
    )


def test_deferred_interrupts_delivers_the_signal_after_the_block():
    import os
    import signal

    from genrec.io import deferred_interrupts

    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("after the signal")  # the block runs on
    assert done == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_failure_while_a_finished_run_is_recorded_keeps_it_resumable(
    log_csv, tmp_path, monkeypatch
):
    """The checkpoint goes only when the finished run is put in place: a full disk while its
    run.json is written leaves a pending run that resumes to the same scores, not one that
    must train again from the start."""
    from genrec.errors import WriteError

    reference = train_run(_vae(log_csv, tmp_path / "ref"))
    real = rf.write_record

    def full_disk_at_the_end(stage, record):
        if record.get("status") == "done":
            raise WriteError(28, "no space left on device writing run.json", "run.json")
        return real(stage, record)

    import genrec.runs.runner as runner

    monkeypatch.setattr(runner.rf, "write_record", full_disk_at_the_end)
    out = tmp_path / "run"
    with pytest.raises(OSError):
        train_run(_vae(log_csv, out))
    monkeypatch.setattr(runner.rf, "write_record", real)
    assert (rf.staging_dir(out) / rf.CHECKPOINT_NAME).is_file()
    resumed = resume_run(out)
    assert resumed is not None
    assert not (out / "checkpoint").exists()  # the finished run keeps none (the default)
    X = load_run(out).data.train[:5]
    np.testing.assert_array_equal(
        load_run(out).model.score(None, X).numpy(), reference.model.score(None, X).numpy()
    )


def test_replacing_a_finished_model_is_said_once(log_csv, tmp_path, caplog):
    train_run(_spec(log_csv, tmp_path / "run", l2=10.0))
    with caplog.at_level("INFO", logger="genrec.runs"):
        train_run(_spec(log_csv, tmp_path / "run", l2=20.0))
    assert caplog.text.count("replacing the trained model") == 1
