import json
import subprocess
import sys

import pytest

from genrec.io import seal_record
from tests._cli import run_cli as run
from tests.synthetic import write_ml100k, write_pair_lists


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    return write_ml100k(tmp_path_factory.mktemp("data") / "ml-100k")


def test_train_recommend_evaluate_roundtrip(tmp_path, capsys, ml100k):
    out_dir, res = tmp_path / "run", tmp_path / "res.json"
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "ease",
        "--dataset",
        str(ml100k),
        "--set",
        "l2=5",
        "--out",
        str(out_dir),
        "--output",
        str(res),
    )
    assert code == 0, err
    assert "recall@20" in out
    payload = json.loads(res.read_text())
    assert payload["protocol"]["name"] == "diffrec"
    assert payload["config"]["l2"] == 5.0
    assert 0 <= payload["test"]["metrics"]["ndcg@20"] <= 1
    run_json = json.loads((out_dir / "run.json").read_text())
    assert run_json["status"] == "done" and (out_dir / "weights.npz").is_file()

    code, out, err = run(
        capsys,
        "recommend",
        str(out_dir),
        "--user",
        "1",
        "-k",
        "3",
        "--output",
        str(tmp_path / "rec.json"),
    )
    assert code == 0, err
    rec = json.loads((tmp_path / "rec.json").read_text())
    recs = rec["recommendations"]
    assert len(recs) == 3 and recs[0]["title"].startswith("Movie ")
    assert rec["user"] == 1 and isinstance(recs[0]["item"], int)  # raw ids typed alike
    # user 1 is in group 1 (odd ids): its block is the first half of the items
    code, out, err = run(
        capsys,
        "recommend",
        str(out_dir),
        "--items",
        "1,2,3",
        "-k",
        "5",
        "--output",
        str(tmp_path / "rec2.json"),
    )
    assert code == 0, err
    rec2 = json.loads((tmp_path / "rec2.json").read_text())
    items = [r["item"] for r in rec2["recommendations"]]
    assert not {1, 2, 3} & set(items)
    assert rec2["items"] == [1, 2, 3] and rec2["user"] is None

    code, out, err = run(capsys, "evaluate", str(out_dir), "--output", str(tmp_path / "ev.json"))
    assert code == 0, err
    again = json.loads((tmp_path / "ev.json").read_text())
    assert again["test"]["metrics"] == pytest.approx(payload["test"]["metrics"])


def test_grid_selects_on_validation(tmp_path, capsys):
    data = write_pair_lists(tmp_path / "p")
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "ease",
        "--dataset",
        str(data),
        "--grid",
        "l2=1,10,100",
        "--select",
        "recall@10",
        "--out",
        str(tmp_path / "r"),
        "--output",
        str(tmp_path / "r.json"),
    )
    assert code == 0, err
    payload = json.loads((tmp_path / "r.json").read_text())
    trials = payload["trials"]
    assert len(trials) == 3
    best = max(trials, key=lambda t: t["valid"]["recall@10"])
    assert payload["config"]["l2"] == best["params"]["l2"]


def test_data_info_json(tmp_path, capsys, ml100k):
    code, out, err = run(capsys, "data", "info", str(ml100k), "--output", str(tmp_path / "i.json"))
    assert code == 0, err
    info = json.loads((tmp_path / "i.json").read_text())
    assert info["users"] == 60 and info["items"] == 40
    assert set(info["rating_histogram"]) <= {"1", "2", "3", "4", "5"}


def test_config_file_and_overrides(tmp_path, capsys, ml100k):
    cfg = tmp_path / "c.toml"
    cfg.write_text('l2 = 7.0\n[protocol]\nname = "loo"\n')
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "ease",
        "--dataset",
        str(ml100k),
        "--config",
        str(cfg),
        "--set",
        "protocol.seed=3",
        "--out",
        str(tmp_path / "r"),
        "--output",
        str(tmp_path / "r.json"),
    )
    assert code == 0, err
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["config"]["l2"] == 7.0 and payload["protocol"]["name"] == "loo"
    assert payload["protocol"]["seed"] == 3


@pytest.mark.parametrize(
    "args,match",
    [
        (["train", "--model", "nope", "--dataset", "x"], "unknown model 'nope'"),
        (["train", "--model", "ease", "--dataset", "/no/such/path"], "no such file or folder"),
        (
            ["train", "--model", "ease", "--dataset", "{ml100k}", "--set", "lamda=2"],
            "unknown key lamda",
        ),
        (["train", "--model", "ease", "--dataset", "{ml100k}", "--set", "l2=-1"], "l2 must be > 0"),
        (
            ["train", "--model", "ease", "--dataset", "{ml100k}", "--protocol", "rating"],
            "does not predict ratings",
        ),
        (["recommend", "{tmp}", "--user", "1"], "no run.json"),
        (
            ["train", "--model", "ease", "--dataset", "{ml100k}", "--config", "{tmp}/missing.toml"],
            "config file not found",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path, capsys, ml100k, args, match):
    args = [a.format(ml100k=ml100k, tmp=tmp_path) for a in args]
    code, out, err = (
        run(capsys, *args, "--out", str(tmp_path / "o"))
        if args[0] == "train"
        else run(capsys, *args)
    )
    assert code == 1
    assert match in err and err.startswith("Error: ")  # the prefix click's own errors use
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3


@pytest.mark.slow
def test_console_script_errors_without_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating\n1,2,5\n1,3,oops\n")
    p = subprocess.run(
        [sys.executable, "-m", "genrec.cli", "data", "info", str(bad)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1
    assert "line 3: field 'rating' has 'oops'" in p.stderr
    assert "Traceback" not in p.stderr


def test_help_for_every_command(capsys):
    for cmd in (
        ["--help"],
        ["train", "--help"],
        ["data", "info", "--help"],
        ["recommend", "--help"],
        ["evaluate", "--help"],
        ["predict", "--help"],
        ["models"],
    ):
        code, out, err = run(capsys, *cmd)
        assert code == 0, (cmd, err)
        assert out


def test_models_lists_nested_defaults_as_set_spells_them(capsys):
    code, out, err = run(capsys, "models")
    flat = "".join(out.split())
    assert code == 0 and "train.epochs=200" in flat and "diffusion.steps=40" in flat
    assert "train={" not in flat


def _text_id_log(path):
    """A CSV log with text ids (two groups of users, each on its own half of the items)."""
    rows = ["user,item,rating"]
    for u in range(40):
        half = range(0, 10) if u % 2 else range(10, 20)
        rows += [f"u{u},sku-{i},{1 + (u + i) % 5}" for i in half if (u + i) % 4]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_text_ids_train_recommend_and_duplicate_items(tmp_path, capsys):
    log = _text_id_log(tmp_path / "log.csv")
    out_dir = tmp_path / "run"
    code, out, err = run(
        capsys, "train", "--model", "ease", "--dataset", str(log), "--out", str(out_dir)
    )
    assert code == 0, err
    assert json.loads((out_dir / "run.json").read_text())["status"] == "done"
    code, out, err = run(capsys, "recommend", str(out_dir), "--user", "u1", "-k", "3")
    assert code == 0, err
    lists = []
    for i, items in enumerate(["sku-1,sku-2", "sku-1,sku-1, sku-2,sku-1"]):
        res = tmp_path / f"rec{i}.json"
        code, out, err = run(
            capsys, "recommend", str(out_dir), "--items", items, "-k", "5", "--output", str(res)
        )
        assert code == 0, err
        payload = json.loads(res.read_text())
        assert payload["items"] == ["sku-1", "sku-2"]  # a list of ids, duplicates dropped
        lists.append(payload["recommendations"])
    assert lists[0] == lists[1]  # a repeated id is the same yes/no history


@pytest.mark.parametrize(
    "args,match",
    [
        (["--model", "cdae", "--protocol", "strong"], "cdae cannot score users unseen"),
        (
            ["--model", "ease", "--grid", "l2=1,10", "--set", "protocol.ks=[5]"],
            "--select 'ndcg@20' (the default) is not among the validation metrics",
        ),
        (
            ["--model", "ease", "--grid", "l2=1,10", "--select", "recall@30"],
            "--select 'recall@30' is not among",
        ),
    ],
)
def test_config_errors_come_before_training_and_writing(tmp_path, capsys, ml100k, args, match):
    out_dir = tmp_path / "o"
    code, out, err = run(capsys, "train", "--dataset", str(ml100k), *args, "--out", str(out_dir))
    assert code == 1 and match in err, err
    assert not out_dir.exists()  # nothing trained, nothing written


def test_every_validation_metric_can_select(tmp_path, capsys, ml100k):
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "ease",
        "--dataset",
        str(ml100k),
        "--grid",
        "l2=1,10",
        "--select",
        "coverage@20",
        "--out",
        str(tmp_path / "o"),
        "--output",
        str(tmp_path / "r.json"),
    )
    assert code == 0, err
    trials = json.loads((tmp_path / "r.json").read_text())["trials"]
    assert all("coverage@20" in t["valid"] for t in trials)


def test_cuda_without_cuda_fails_before_loading(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "mult-vae",
        "--dataset",
        "/no/such/data",
        "--device",
        "cuda",
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 1 and "CUDA is not available" in err  # not "no such file": checked first


def test_unfinished_run_is_kept_unless_forced(tmp_path, capsys, ml100k):
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    (out_dir / "run.json").write_text(json.dumps({"status": "running"}))
    args = ["train", "--model", "ease", "--dataset", str(ml100k), "--out", str(out_dir)]
    code, out, err = run(capsys, *args)
    assert code == 1 and f"--resume {out_dir}" in err and "--force" in err
    assert json.loads((out_dir / "run.json").read_text()) == {"status": "running"}
    code, out, err = run(capsys, *args, "--force")
    assert code == 0, err
    code, out, err = run(capsys, *args)  # a finished model is replaced without --force
    assert code == 0, err


def test_damaged_files_are_one_line_errors(tmp_path, capsys, ml100k):
    out_dir = tmp_path / "o"
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "mult-vae",
        "--dataset",
        str(ml100k),
        "--set",
        "train.epochs=1",
        "--set",
        "hidden_dims=[8]",
        "--set",
        "latent_dim=4",
        "--keep-checkpoint",
        "--out",
        str(out_dir),
    )
    assert code == 0, err
    weights = out_dir / "weights.npz"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    code, out, err = run(capsys, "recommend", str(out_dir), "--user", "1")
    assert code == 1 and "weights.npz: corrupt file" in err and "Traceback" not in err
    run_json = out_dir / "run.json"
    record = json.loads(run_json.read_text())
    old = {"files", "record_sha256"}  # as versions before the checksums wrote them
    run_json.write_text(json.dumps({k: v for k, v in record.items() if k not in old}))
    model_json = out_dir / "model.json"
    meta = json.loads(model_json.read_text())
    model_json.write_text(json.dumps({k: v for k, v in meta.items() if k not in old}))
    code, out, err = run(capsys, "recommend", str(out_dir), "--user", "1")  # no checksums kept
    assert code == 1 and "weights.npz: unreadable" in err and "Traceback" not in err
    weights.write_bytes(good)

    run_json.write_text(json.dumps(seal_record({**record, "status": "running"})))
    (out_dir / "checkpoint" / "state.pt").write_bytes(b"not a checkpoint")
    code, out, err = run(capsys, "train", "--resume", str(out_dir))
    assert code == 1 and "the checkpoint is unreadable" in err and "Traceback" not in err
    run_json.write_text("{not json")
    code, out, err = run(capsys, "train", "--resume", str(out_dir))
    assert code == 1 and "not a genrec run record" in err and "Traceback" not in err


def test_resume_of_a_finished_run_says_so_and_writes_nothing(tmp_path, capsys, ml100k):
    out_dir = tmp_path / "o"
    _ease_run(capsys, ml100k, out_dir)
    before = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    code, out, err = run(capsys, "train", "--resume", str(out_dir))
    assert code == 0 and "finished already" in out
    assert "epochs" not in out  # EASE does not train by epochs: no --set train.epochs=N hint
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == before


def _ease_run(capsys, ml100k, out_dir):
    """An EASE model trained on the synthetic ML-100K into ``out_dir``."""
    code, out, err = run(
        capsys, "train", "--model", "ease", "--dataset", str(ml100k), "--out", str(out_dir)
    )
    assert code == 0, err
    return out_dir


def _interrupted_vae_run(capsys, ml100k, out_dir):
    """A finished small mult-vae run marked unfinished, as a kill after its last epoch
    leaves it (the checkpoint holds every epoch)."""
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "mult-vae",
        "--dataset",
        str(ml100k),
        "--set",
        "train.epochs=1",
        "--set",
        "hidden_dims=[8]",
        "--set",
        "latent_dim=4",
        "--keep-checkpoint",
        "--out",
        str(out_dir),
    )
    assert code == 0, err
    assert (out_dir / "checkpoint" / "state.pt").is_file()  # what the resume continues from
    run_json = out_dir / "run.json"
    record = json.loads(run_json.read_text())
    run_json.write_text(json.dumps(seal_record({**record, "status": "running"})))
    return run_json


@pytest.mark.parametrize(
    "extra",
    [
        ["--protocol", "loo"],
        ["--seed", "0"],
        ["--precision", "bf16"],
        ["--format", "ml-100k"],
        ["--out", "elsewhere"],
        ["--force"],
    ],
)
def test_resume_refuses_options_that_would_change_the_run(tmp_path, capsys, ml100k, extra):
    run_json = _interrupted_vae_run(capsys, ml100k, tmp_path / "o")
    before = run_json.read_text()
    code, out, err = run(capsys, "train", "--resume", str(tmp_path / "o"), *extra)
    assert code == 1 and f"do not pass {extra[0]}" in err and "Traceback" not in err
    assert run_json.read_text() == before  # the run is left as it was, still resumable


def test_resume_applies_device(tmp_path, capsys, ml100k):
    run_json = _interrupted_vae_run(capsys, ml100k, tmp_path / "o")
    code, out, err = run(capsys, "train", "--resume", str(tmp_path / "o"), "--device", "cpu")
    assert code == 0, err
    record = json.loads(run_json.read_text())
    assert record["status"] == "done" and record["config"]["train"]["device"] == "cpu"


def test_resume_of_a_run_recorded_with_flat_config_keys(tmp_path, capsys, ml100k):
    # run.json written before the trainer's settings became the [train] table
    run_json = _interrupted_vae_run(capsys, ml100k, tmp_path / "o")
    record = json.loads(run_json.read_text())
    record["config"] = {
        **{k: v for k, v in record["config"].items() if k != "train"},
        **record["config"]["train"],
    }
    del record["record_sha256"]  # nor did those versions write a checksum of the record
    run_json.write_text(json.dumps(record))
    code, out, err = run(capsys, "train", "--resume", str(tmp_path / "o"), "--device", "cpu")
    assert code == 0, err
    done = json.loads(run_json.read_text())
    assert done["status"] == "done" and done["config"]["train"]["device"] == "cpu"
    assert done["config"]["train"]["epochs"] == 1 and "epochs" not in done["config"]


def test_flags_and_old_flat_keys_of_the_trainer_settings(tmp_path, capsys, ml100k):
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "mult-vae",
        "--dataset",
        str(ml100k),
        "--set",
        "epochs=1",
        "--out",
        str(tmp_path / "x"),
    )
    assert code == 1 and "mult-vae: epochs is now train.epochs (train.epochs=1" in " ".join(
        err.split()
    )
    assert not (tmp_path / "x").exists()
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "mult-dae",
        "--dataset",
        str(ml100k),
        "--set",
        "train.epochs=1",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 0, err
    record = json.loads((tmp_path / "o" / "run.json").read_text())
    assert (record["config"]["train"]["seed"], record["protocol"]["seed"]) == (3, 3)
    assert record["config"]["train"]["device"] == "cpu"
    assert record["config"]["train"]["patience"] is None  # Mult-DAE's own default kept


def test_empty_validation_fails_before_writing(tmp_path, capsys):
    log = tmp_path / "tiny.csv"  # one interaction per user: nothing left for validation
    log.write_text("user,item\nu1,i1\nu2,i1\nu3,i2\n")
    out_dir = tmp_path / "o"
    code, out, err = run(
        capsys, "train", "--model", "mult-vae", "--dataset", str(log), "--out", str(out_dir)
    )
    assert code == 1 and "validation part of protocol diffrec holds no interactions" in err
    assert "valid=None" not in err and "Traceback" not in err
    assert not out_dir.exists()  # no unfinished run that --resume could never finish


def test_output_path_under_a_file_fails_before_training(tmp_path, capsys, ml100k):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    out_dir = tmp_path / "o"
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "ease",
        "--dataset",
        str(ml100k),
        "--out",
        str(out_dir),
        "--output",
        str(a_file / "r.json"),
    )
    assert code == 1 and "is a file, not a folder" in err and "Traceback" not in err
    assert not out_dir.exists()
    code, out, err = run(
        capsys, "train", "--model", "ease", "--dataset", str(ml100k), "--out", str(a_file / "run")
    )
    assert code == 1 and "--out" in err and "is a file, not a folder" in err
    _ease_run(capsys, ml100k, out_dir)
    code, out, err = run(
        capsys, "recommend", str(out_dir), "--user", "1", "--output", str(a_file / "rec.json")
    )
    assert code == 1 and "is a file, not a folder" in err and "Traceback" not in err


def test_recommend_says_how_many_items_it_lists(tmp_path, capsys, ml100k):
    out_dir = tmp_path / "o"
    _ease_run(capsys, ml100k, out_dir)
    code, out, err = run(
        capsys, "recommend", str(out_dir), "--user", "1", "-k", "1000", "--include-seen"
    )
    assert code == 0, err
    assert "top 40 for user 1" in out and "only 40 items" in err  # the 40 items, not 1000


def test_interrupted_grid_search_is_not_resumed_as_a_single_fit(tmp_path, capsys, ml100k):
    out_dir = tmp_path / "o"
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "ease",
        "--dataset",
        str(ml100k),
        "--grid",
        "l2=1,10",
        "--out",
        str(out_dir),
    )
    assert code == 0, err
    run_json = out_dir / "run.json"
    record = json.loads(run_json.read_text())
    run_json.write_text(json.dumps(seal_record({**record, "status": "running"})))  # a kill
    code, out, err = run(capsys, "train", "--resume", str(out_dir))
    assert code == 1 and "--grid search" in err and "--force" in err
    assert json.loads(run_json.read_text())["status"] == "running"  # not "done" without a search


def test_recommend_notes_a_user_without_interactions(tmp_path, capsys):
    import numpy as np

    data = write_pair_lists(tmp_path / "p")
    test = np.load(data / "test_list.npy")
    empty = int(test[:, 0].max()) + 1  # an id of the range with no interaction at all
    tested = empty + 1  # a user seen only in the test part
    np.save(data / "test_list.npy", np.vstack([test, [[tested, 0], [tested, 1]]]))
    out_dir = tmp_path / "o"
    code, out, err = run(
        capsys, "train", "--model", "ease", "--dataset", str(data), "--out", str(out_dir)
    )
    assert code == 0, err
    code, out, err = run(capsys, "recommend", str(out_dir), "--user", str(empty), "-k", "3")
    assert code == 0, err
    assert f"user {empty} has no interactions in the data" in err
    code, out, err = run(
        capsys,
        "recommend",
        str(out_dir),
        "--user",
        str(tested),
        "-k",
        "3",
        "--output",
        str(tmp_path / "r.json"),
    )
    assert code == 0 and "no interactions" not in err  # scored from its test items
    recs = json.loads((tmp_path / "r.json").read_text())["recommendations"]
    assert len(recs) == 3 and not {0, 1} & {r["item"] for r in recs}
    code, out, err = run(capsys, "recommend", str(out_dir), "--user", "0", "-k", "3")
    assert code == 0 and "no interactions" not in err


def test_train_warns_when_validation_rests_on_few_users(tmp_path, capsys):
    import numpy as np

    data = write_pair_lists(tmp_path / "p")
    valid = np.load(data / "valid_list.npy")
    np.save(data / "valid_list.npy", valid[np.isin(valid[:, 0], np.unique(valid[:, 0])[:3])])
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "mult-dae",
        "--dataset",
        str(data),
        "--set",
        "train.epochs=1",
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 0, err
    assert "rests on very few users" in err and "of 3 users" in err
    code, out, err = run(
        capsys, "train", "--model", "ease", "--dataset", str(data), "--out", str(tmp_path / "e")
    )  # EASE chooses nothing on validation
    assert code == 0 and "very few users" not in err


def test_ctrl_c_during_training_says_how_to_resume_once(tmp_path, capsys, ml100k, monkeypatch):
    from genrec.models import MultVAE

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(MultVAE, "fit", interrupted)
    out_dir = tmp_path / "o"
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "mult-vae",
        "--dataset",
        str(ml100k),
        "--set",
        "train.epochs=1",
        "--out",
        str(out_dir),
    )
    assert code == 130
    assert f"continue with `genrec train --resume {out_dir}`" in err
    assert "aborted" not in err and err.count("interrupted") == 1


def _vae_args(ml100k, out_dir, epochs):
    return [
        "train",
        "--model",
        "mult-vae",
        "--dataset",
        str(ml100k),
        "--set",
        f"train.epochs={epochs}",
        "--set",
        "hidden_dims=[8]",
        "--set",
        "latent_dim=4",
        "--out",
        str(out_dir),
    ]


def test_resume_with_more_epochs_continues_a_finished_run(tmp_path, capsys, ml100k):
    code, out, err = run(capsys, *_vae_args(ml100k, tmp_path / "a", 1), "--keep-checkpoint")
    assert code == 0, err
    code, out, err = run(capsys, "train", "--resume", str(tmp_path / "a"))  # nothing to do
    assert code == 0 and "--set train.epochs=N" in " ".join(out.split())
    code, out, err = run(
        capsys, "train", "--resume", str(tmp_path / "a"), "--set", "train.epochs=3"
    )
    assert code == 0, err
    code, out, err = run(capsys, *_vae_args(ml100k, tmp_path / "b", 3))  # in one go
    assert code == 0, err
    a, b = (json.loads((tmp_path / d / "run.json").read_text()) for d in "ab")
    assert a["status"] == "done" and a["config"]["train"]["epochs"] == 3
    assert a["results"]["test"]["metrics"] == b["results"]["test"]["metrics"]  # 1 + 2 = 3 epochs
    log = (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in log] == [1, 2, 3]
    before = {f.name: f.read_bytes() for f in (tmp_path / "a").iterdir() if f.is_file()}
    for fewer in (3, 2):  # not more than the epochs trained: nothing to do, nothing rewritten
        code, out, err = run(
            capsys, "train", "--resume", str(tmp_path / "a"), "--set", f"train.epochs={fewer}"
        )
        assert code == 1 and "not more than the 3 epochs" in " ".join(err.split())
    code, out, err = run(
        capsys, "train", "--resume", str(tmp_path / "a"), "--set", "train.epochs=abc"
    )
    assert code == 1 and "expected an integer" in err and "Traceback" not in err
    assert {f.name: f.read_bytes() for f in (tmp_path / "a").iterdir() if f.is_file()} == before


@pytest.mark.parametrize(
    "sets, match",
    [
        (["--set", "train.lr=0.1"], "only train.epochs, train.patience, not train.lr"),
        (["--set", "epochs=3"], "only train.epochs, train.patience, not epochs"),
        (["--set", "train.epochs=3"], "has no train.epochs to change"),
    ],
)
def test_resume_takes_only_epoch_settings(tmp_path, capsys, ml100k, sets, match):
    if "has no" not in match:
        run_json = _interrupted_vae_run(capsys, ml100k, tmp_path / "o")
    else:  # EASE does not train by epochs
        _ease_run(capsys, ml100k, tmp_path / "o")
        run_json = tmp_path / "o" / "run.json"
    before = run_json.read_text()
    code, out, err = run(capsys, "train", "--resume", str(tmp_path / "o"), *sets)
    assert code == 1 and match in " ".join(err.split()) and "Traceback" not in err
    assert run_json.read_text() == before


@pytest.mark.parametrize(
    "args,match",
    [
        (
            ["--model", "biased-mf", "--protocol", "diffrec"],
            "biased-mf selects on held-out ratings (RMSE), and protocol diffrec holds out items",
        ),
        (["--model", "bpr-mf", "--protocol", "rating"], "does not predict ratings"),
        (
            ["--model", "fm", "--set", "objective=bpr", "--protocol", "rating"],
            "fm selects on ranked held-out items under this config",
        ),
        (
            ["--model", "fm", "--grid", "objective=regression,bpr", "--protocol", "rating"],
            "fm selects on ranked held-out items under this config",
        ),  # one of the configs to try
        (["--model", "ease", "--grid", "l2=abc"], "ease.l2"),
        (["--model", "ease", "--grid", "foo=1,2"], "foo"),
        (["--model", "mult-vae", "--grid", "train.epochs=1,x"], "mult-vae.train.epochs"),
        (["--model", "mult-vae", "--grid", "epochs=1,2"], "epochs is now train.epochs"),
    ],
)
def test_train_refuses_bad_pairings_and_grids_before_writing(tmp_path, capsys, ml100k, args, match):
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--dataset", str(ml100k), *args, "--out", str(out_dir))
    assert code in (1, 2) and match in err and "Traceback" not in err, err
    assert not out_dir.exists()  # nothing half-written that would block the next run


def test_fm_trained_to_rank_defaults_to_a_ranking_protocol_and_predicts_no_rating(
    tmp_path, capsys, ml100k
):
    out_dir = tmp_path / "fm"
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "fm",
        "--set",
        "objective=bpr",
        "--set",
        "train.epochs=1",
        "--dataset",
        str(ml100k),
        "--out",
        str(out_dir),
    )
    assert code == 0, err
    assert json.loads((out_dir / "run.json").read_text())["protocol"]["name"] == "diffrec"
    code, out, err = run(capsys, "predict", str(out_dir), "--user", "1", "--item", "2")
    assert code == 1 and "trained to rank (objective bpr)" in err


def test_ids_and_messages_print_literally_not_as_markup(tmp_path, capsys):
    log = tmp_path / "log.csv"
    rows = (
        ["user,item"]
        + [f"[red]alice,[b]item[/b]-{i}" for i in range(6)]
        + [f"u{u},[b]item[/b]-{i}" for u in range(12) for i in range(u % 3, 9, 2)]
    )
    log.write_text("\n".join(rows) + "\n")
    out_dir = tmp_path / "run"
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "ease",
        "--dataset",
        str(log),
        "--protocol",
        "loo",
        "--out",
        str(out_dir),
    )
    assert code == 0, err
    code, out, err = run(capsys, "recommend", str(out_dir), "--user", "[red]alice", "-k", "2")
    assert code == 0, err
    assert "top 2 for user [red]alice" in out and "[b]item[/b]-" in out
    code, out, err = run(capsys, "recommend", str(out_dir), "--user", "bob[x]")
    assert code == 1 and "bob[x]" in err


@pytest.mark.parametrize("protocol", ["diffrec", "strong"])
def test_recommend_user_scores_the_whole_history_and_excludes_every_known_item(
    tmp_path, capsys, ml100k, protocol
):
    out_dir = tmp_path / "run"
    heldout = ["--set", "protocol.n_heldout=10"] if protocol == "strong" else []
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "ease",
        "--dataset",
        str(ml100k),
        "--protocol",
        protocol,
        *heldout,
        "--out",
        str(out_dir),
    )
    assert code == 0, err
    rows = [line.split("\t") for line in (ml100k / "u.data").read_text().splitlines()]
    n_items = len({r[1] for r in rows})
    for user in ("1", "2", "7", "30"):
        mine = {int(i) for u, i, *_ in rows if u == user}  # any rating, any part
        code, out, err = run(
            capsys,
            "recommend",
            str(out_dir),
            "--user",
            user,
            "-k",
            str(n_items),
            "--output",
            str(tmp_path / "r.json"),
        )
        assert code == 0, err
        got = [r["item"] for r in json.loads((tmp_path / "r.json").read_text())["recommendations"]]
        assert not mine & set(got) and len(got) == n_items - len(mine)
        assert "empty history" not in err  # held-out (strong) users fold in their history


def test_data_info_reads_the_data_table_of_a_train_config(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("uid,sku,stars\nu1,a,5\nu2,b,3\nu2,a,4\n")
    cfg = tmp_path / "run.toml"
    cfg.write_text('l2 = 5.0\n[data]\nuser_col = "uid"\nitem_col = "sku"\nrating_col = "stars"\n')
    code, out, err = run(
        capsys, "data", "info", str(log), "--config", str(cfg), "--output", str(tmp_path / "i.json")
    )
    assert code == 0, err
    info = json.loads((tmp_path / "i.json").read_text())
    assert info["users"] == 2 and info["implicit"] is False
    code, out, err = run(
        capsys, "data", "info", str(log), "--config", str(cfg), "--set", "data.rating_col=nope"
    )  # --set wins over the file
    assert code == 1 and "no column 'nope'" in err


def test_cut_offs_past_the_item_count_train_evaluate_and_recommend(tmp_path, capsys, ml100k):
    # issue 28, defect 6: protocol.ks=[10**12] (and a select metric at that cut-off) ended in
    # allocator tracebacks; a list holds at most the catalogue, so these run
    big = 10**12
    out_dir, res = tmp_path / "run", tmp_path / "res.json"
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "mult-dae",
        "--dataset",
        str(ml100k),
        *("--set", f"protocol.ks=[5, {big}]", "--set", f"train.select_metric=recall@{big}"),
        *("--set", "train.epochs=1", "--set", "hidden_dims=[8]", "--set", "latent_dim=4"),
        *("--out", str(out_dir), "--output", str(res)),
    )
    assert code == 0, err
    test = json.loads(res.read_text())["test"]["metrics"]
    assert test[f"recall@{big}"] == 1.0 and test[f"coverage@{big}"] == 1.0
    assert 0 < test[f"precision@{big}"] < 1e-9  # still hits / k
    code, out, err = run(capsys, "evaluate", str(out_dir), "--output", str(tmp_path / "e.json"))
    assert code == 0, err
    again = json.loads((tmp_path / "e.json").read_text())["test"]["metrics"]
    assert again[f"recall@{big}"] == 1.0
    code, out, err = run(
        capsys, "recommend", str(out_dir), "--user", "1", "-k", str(big), "--output", str(res)
    )
    assert code == 0, err
    rec = json.loads(res.read_text())
    assert 0 < len(rec["recommendations"]) < 100 and "fewer than k" in rec["notes"][0]


def test_a_diverging_fit_is_one_line_naming_the_setting(tmp_path, capsys, ml100k):
    # issue 28, defect 9: lr=1e30 for one step left finite weights whose scores are NaN, a
    # ValueError traceback out of the validation
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "gaussian-vae",
        "--dataset",
        str(ml100k),
        *("--set", "train.lr=1e30", "--set", "train.epochs=1", "--set", "train.batch_size=1000"),
        *("--out", str(tmp_path / "o")),
    )
    assert code == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]  # after the run's INFO lines
    assert last.startswith("Error: ") and "diverged" in last and "train.lr (now 1e+30)" in last


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, capsys, ml100k):
    # issue 28, defect 13: a UnicodeDecodeError traceback out of tomllib
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(b'model = "ease"\n# caf\xe9\n')
    code, out, err = run(
        capsys,
        "train",
        "--config",
        str(cfg),
        "--dataset",
        str(ml100k),
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) <= 3
    assert err.startswith("Error: ") and "line 2: not UTF-8 text" in err


def test_start_over_advice_names_the_force_flag(tmp_path, capsys, ml100k):
    """The library's "start over (force)" reads "with --force" on the command line: here a
    checkpoint whose fingerprint differs from the run record's config."""
    run_json = _interrupted_vae_run(capsys, ml100k, tmp_path / "o")
    record = json.loads(run_json.read_text())
    record["config"]["dropout"] = 0.25  # not the config the checkpoint was trained with
    record = {k: v for k, v in record.items() if k != "record_sha256"}
    run_json.write_text(json.dumps(seal_record(record)))
    code, out, err = run(capsys, "train", "--resume", str(tmp_path / "o"))
    message = " ".join(err.split())
    assert code == 1 and "Traceback" not in err, err
    assert "with --force" in message and "(force)" not in message, message
    assert "fingerprint" in message or "another" in message, message
