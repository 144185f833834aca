"""`genrec tune`: studies on a tiny synthetic data set. A study killed mid-trial and started
again ends where an uninterrupted one does; a study continues with more trials; pruning
prunes; test is read once with new seeds; bad input is one line before anything runs."""

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("optuna")

from genrec.config import load_toml  # noqa: E402
from genrec.errors import ConfigError  # noqa: E402
from genrec.runs import RunSpec  # noqa: E402
from genrec.tune import space_from_mapping  # noqa: E402
from genrec.tune.study import TuneSpec, open_study, run_study  # noqa: E402
from tests._cli import run_cli as run  # noqa: E402
from tests.synthetic import write_ml100k  # noqa: E402

SMALL = {"hidden_dims": [8], "latent_dim": 4, "train": {"epochs": 4}}
PARAMS = {
    "train.lr": {"low": 1e-4, "high": 3e-2, "log": True},
    "dropout": {"low": 0.0, "high": 0.8},
}


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    return write_ml100k(tmp_path_factory.mktemp("data") / "ml-100k")


def _spec(data, out, **kw):
    base = RunSpec.from_mapping({"model": "mult-vae", "dataset": str(data), **SMALL})
    space = space_from_mapping({"model": "mult-vae", "params": PARAMS})
    return TuneSpec(base, space, **{"trials": 8, "seeds": (0, 1), "out": out, **kw})


def _finished(rows):
    return [(r["state"], r["value"], r["values"]) for r in rows if r["state"] != "FAIL"]


def test_a_study_writes_its_folder_and_reads_test_once_with_new_seeds(tmp_path, ml100k):
    res = run_study(_spec(ml100k, tmp_path / "st", final=True))
    out = tmp_path / "st"
    for name in ("best.toml", "trials.csv", "report.md", "study.json", "study.db"):
        assert (out / name).is_file(), name
    states = [r["state"] for r in res.trials]
    assert len(states) == 8 and set(states) <= {"COMPLETE", "PRUNED"}
    complete = [r for r in res.trials if r["state"] == "COMPLETE"]
    assert res.best["value"] == max(r["value"] for r in complete)
    best = complete[[r["value"] for r in complete].index(res.best["value"])]
    assert res.best["value"] == pytest.approx(sum(best["scores"]) / 2)
    # the chosen configuration, as a runnable config, holds the chosen values
    spec = RunSpec.from_toml(out / "best.toml")
    assert spec.config.train.lr == pytest.approx(res.best["values"]["train.lr"])
    assert spec.config.dropout == pytest.approx(res.best["values"]["dropout"])
    assert spec.config.hidden_dims == (8,) and spec.config.train.epochs == 4
    summary = json.loads((out / "study.json").read_text())
    assert summary["test"]["seeds"] == [2, 3]  # new seeds, after the trials' 0 and 1
    assert set(summary["test"]["test"]["ndcg@20"]) == {"mean", "sd"}
    run_record = json.loads((out / "best-run" / "run.json").read_text())
    assert run_record["seeds"] == [2, 3] and run_record["status"] == "done"
    assert (out / "trials.csv").read_text().count("\n") == 9  # header + 8 trials


KILLER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    from tests.test_tune import _spec
    import genrec.tune.study as study
    import {module} as patched
    real, calls = patched.{name}, [0]
    def call(*a, **k):  # a kill at the kill_at-th call: nothing is cleaned up
        calls[0] += 1
        if calls[0] == {kill_at} and {before}:
            os._exit(9)
        out = real(*a, **k)
        if calls[0] == {kill_at}:
            os._exit(9)
        return out
    setattr(patched, {name!r}, call)
    study.run_study(_spec({data!r}, {out!r}, final=False))
    """
)


def _kill(root, data, out, kill_at, module="genrec.tune.study", name="fit_model", before=True):
    code = KILLER.format(
        root=root, data=str(data), out=str(out), kill_at=kill_at, module=module, name=name,
        before=before,
    )  # fmt: skip
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_a_killed_study_continues_and_ends_as_an_uninterrupted_one(tmp_path, ml100k):
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    whole = run_study(_spec(ml100k, tmp_path / "whole", final=False))
    out = tmp_path / "killed"
    proc = _kill(root, ml100k, out, 8)  # before the 8th fit: between two seeds of a trial
    assert proc.returncode == 9, proc.stderr[-2000:]
    import optuna

    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert "RUNNING" in states and states.count("COMPLETE") >= 2  # cut off mid-trial
    resumed = run_study(_spec(ml100k, out, final=False))
    assert [r["state"] for r in resumed.trials].count("FAIL") == 1  # the cut-off trial
    assert _finished(resumed.trials) == _finished(whole.trials)
    assert resumed.best["values"] == whole.best["values"]
    assert resumed.best["value"] == whole.best["value"]


def test_a_trial_cut_off_mid_fit_resumes_its_seed_from_the_checkpoint(tmp_path, ml100k):
    from pathlib import Path

    import optuna

    root = str(Path(__file__).resolve().parents[1])
    whole = run_study(_spec(ml100k, tmp_path / "whole", final=False))
    out = tmp_path / "killed"
    # 4 epochs a fit, 2 seeds a trial: the 14th checkpoint is trial 1's second seed, epoch 2
    proc = _kill(root, ml100k, out, 14, "genrec.train.loop", "save_state", before=False)
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert (out / "trials" / "0001" / "seed-0" / "done.json").is_file()
    assert (out / "trials" / "0001" / "seed-1" / "checkpoint").is_dir()
    resumed = run_study(_spec(ml100k, out, final=False))
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{out / 'study.db'}")
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].user_attrs["resumed"] == [1]  # seed 1, not seed 0
    assert _finished(resumed.trials) == _finished(whole.trials)  # the resume is exact
    assert resumed.best["values"] == whole.best["values"]
    assert resumed.best["value"] == whole.best["value"]
    assert not (out / "trials").exists()  # each trial's folder goes when it ends


def test_a_study_continues_with_more_trials(tmp_path, ml100k):
    first = run_study(_spec(ml100k, tmp_path / "st", trials=4, final=False))
    more = run_study(_spec(ml100k, tmp_path / "st", trials=6, final=False))
    assert len(more.trials) == 6 and more.trials[:4] == first.trials
    whole = run_study(_spec(ml100k, tmp_path / "whole", trials=6, final=False))
    assert _finished(more.trials) == _finished(whole.trials)


def test_pruning_stops_trials_and_no_prune_trains_them_all(tmp_path, ml100k):
    pruned = run_study(_spec(ml100k, tmp_path / "p", trials=10, final=False))
    kept = run_study(_spec(ml100k, tmp_path / "n", trials=10, final=False, prune=False))
    assert any(r["state"] == "PRUNED" for r in pruned.trials)
    assert all(r["state"] == "COMPLETE" for r in kept.trials)
    for r in pruned.trials:
        if r["state"] == "PRUNED":  # stopped within the first seed: the second never ran
            assert 1 <= r["pruned_at"] <= 4 and r["scores"] is None


def test_parallel_jobs_finish_exactly_the_trials_asked(tmp_path, ml100k):
    res = run_study(_spec(ml100k, tmp_path / "j", trials=4, jobs=2, final=False))
    assert len([r for r in res.trials if r["state"] in ("COMPLETE", "PRUNED")]) == 4


def test_a_study_name_made_for_another_model_is_refused(tmp_path, ml100k):
    run_study(_spec(ml100k, tmp_path / "st", trials=1, final=False))
    base = RunSpec.from_mapping({"model": "recvae", "dataset": str(ml100k)})
    space = space_from_mapping(
        {"model": "recvae", "params": {"gamma": {"low": 0.001, "high": 0.1}}}
    )
    other = TuneSpec(base, space, trials=1, out=tmp_path / "st")
    with pytest.raises(ConfigError, match="exists with another model .'mult-vae'.; give another"):
        open_study(other)
    changed = _spec(ml100k, tmp_path / "st", trials=1, seeds=(0, 1, 2), final=False)
    with pytest.raises(ConfigError, match="exists with another seeds"):
        run_study(changed)


def test_a_storage_that_cannot_be_opened_is_one_line(tmp_path, ml100k):
    spec = _spec(ml100k, tmp_path / "st", storage=f"sqlite:///{tmp_path}/nowhere/s.db")
    with pytest.raises(ConfigError, match="nowhere does not exist"):
        open_study(spec)
    spec = _spec(ml100k, tmp_path / "st", storage="nosuchdb://host/x")
    with pytest.raises(ConfigError, match=r"storage nosuchdb://host/x: cannot be opened"):
        open_study(spec)


def test_a_running_study_is_not_run_twice(tmp_path, ml100k):
    import fcntl

    (tmp_path / "st").mkdir()
    with open(tmp_path / "st" / "study.db.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="another genrec tune is running this study"):
            run_study(_spec(ml100k, tmp_path / "st", trials=1, final=False))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"trials": 0}, "trials must be a whole number >= 1"),
        ({"jobs": 0}, "jobs must be a whole number >= 1"),
        ({"seeds": ()}, "seeds: give distinct seeds"),
        ({"seeds": (1, 1)}, "seeds: give distinct seeds"),
        ({"metric": "rmse"}, "metric rmse"),
        ({"timeout": 0}, "timeout must be > 0"),
    ],
)
def test_bad_study_settings_are_refused_when_the_spec_is_built(tmp_path, ml100k, kw, match):
    with pytest.raises(ConfigError, match=match):
        _spec(ml100k, tmp_path / "st", **kw)


def test_the_command_line_runs_a_study_and_refuses_bad_spaces(tmp_path, capsys, ml100k):
    space = tmp_path / "space.toml"
    space.write_text('model = "mult-vae"\n[params]\ndropout = { low = 0.1, high = 0.6 }\n')
    out = tmp_path / "st"
    small = ("--set", "hidden_dims=[8]", "--set", "latent_dim=4", "--set", "train.epochs=2")
    code, stdout, err = run(
        capsys, "tune", "--model", "mult-vae", "--dataset", str(ml100k), *small,
        "--space", str(space), "--trials", "3", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert "best trial" in stdout and "test (seeds [1])" in stdout
    assert load_toml(out / "best.toml")["model"] == "mult-vae"
    # a key the model does not have, an empty range: one line, nothing run or written
    for body, match in (
        ("dropuot = { low = 0.1, high = 0.6 }", "unknown key dropuot"),
        ("dropout = { low = 0.6, high = 0.1 }", "empty range"),
        ('"train.lr" = { low = 0.0, high = 0.1, log = true }', "log scale needs low > 0"),
    ):
        space.write_text(f'model = "mult-vae"\n[params]\n{body}\n')
        code, _, err = run(
            capsys, "tune", "--model", "mult-vae", "--dataset", str(ml100k), "--space",
            str(space), "--out", str(tmp_path / "bad"),
        )  # fmt: skip
        assert code == 1 and match in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
        assert not (tmp_path / "bad").exists()
    code, _, err = run(
        capsys, "tune", "--model", "mult-vae", "--dataset", str(ml100k), "--space",
        str(tmp_path / "st-space.toml"), "--out", str(tmp_path / "bad"),
    )  # fmt: skip
    assert code == 1 and "config file not found" in err
