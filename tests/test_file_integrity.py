"""What genrec saves is checked when read back, and a write that cannot finish says so.

Regression tests of two defects of the run-folder review (issue 28): 4, checkpoints and
model folders without an integrity check (a flipped byte loaded silently), and 7, a full
disk during a save (a traceback, or a message without the file's name).
"""

import errno
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genrec.cli import main
from genrec.errors import CorruptFileError, DataError, WriteError
from genrec.io import (
    append_text,
    atomic_write_files,
    atomic_write_json,
    record_digest,
    save_arrays,
    seal_record,
)
from genrec.models import EASE, Recommender
from genrec.runs import RunInterrupted, RunSpec, load_run, resume_run, train_run
from genrec.runs import folder as rf
from genrec.train.checkpoint import read_checkpoint, write_checkpoint
from tests.full_disk import fill_disk

CPU = torch.device("cpu")


@pytest.fixture()
def log_csv(tmp_path):
    """A small implicit log: 60 users in two taste groups over 30 item ids."""
    rng = np.random.default_rng(0)
    rows = ["user,item,timestamp"]
    t = 0
    for u in range(60):
        for i in rng.choice(15, size=8, replace=False) + 15 * (u % 2):
            t += 1
            rows.append(f"u{u},it{i},{t}")
    path = tmp_path / "log.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _vae(log_csv, out, dropout=0.2, epochs=3, keep_checkpoint=False):
    values = {
        "model": "mult-vae",
        "dataset": str(log_csv),
        "hidden_dims": [8],
        "latent_dim": 4,
        "dropout": dropout,
        "train": {"epochs": epochs, "device": "cpu"},
        "run": {"keep_checkpoint": keep_checkpoint},
    }
    return RunSpec.from_mapping(values, out=out)


@pytest.fixture()
def pending(log_csv, tmp_path, monkeypatch):
    """A folder with a finished model and a pending run, killed after its first epoch's
    checkpoint (as a kill leaves it)."""
    from genrec.models import MultVAE

    out = tmp_path / "run"
    train_run(_vae(log_csv, out, dropout=0.5, epochs=2))
    real = MultVAE.train_step

    def killed_in_epoch_two(self, batch, ctx):
        if ctx.epoch == 1:
            raise KeyboardInterrupt
        return real(self, batch, ctx)

    monkeypatch.setattr(MultVAE, "train_step", killed_in_epoch_two)
    with pytest.raises(RunInterrupted):
        train_run(_vae(log_csv, out))
    monkeypatch.undo()
    assert (rf.staging_dir(out) / rf.CHECKPOINT_NAME).is_file()
    return out


def _flip(path, at, bit=0):
    data = bytearray(path.read_bytes())
    data[at] ^= 1 << bit
    path.write_bytes(bytes(data))


def _flip_a_digit(path, after):
    """Change one digit after the text ``after`` into another (the JSON stays valid)."""
    text = path.read_bytes()
    at = text.index(after.encode()) + len(after)
    while not chr(text[at]).isdigit():
        at += 1
    _flip(path, at)  # '0' <-> '1', '2' <-> '3', ...


def _saved_ease(tmp_path):
    X = sp.random(30, 20, density=0.3, format="csr", random_state=0, dtype=np.float32)
    X.data[:] = 1.0
    model = EASE(l2=10.0).fit(X)
    return model, model.save(tmp_path / "m"), X


def _one_error_line(err):
    # progress log lines (INFO, continued indented) may come before; the error is one line
    lines = [
        ln for ln in err.strip().splitlines() if ln.strip() and not ln.startswith(("INFO", " "))
    ]
    return len(lines) == 1 and lines[0].startswith("Error:") and "Traceback" not in err


# ----------------------------------------------------------------------------- defect 4
def test_a_flipped_bit_in_a_checkpoint_is_refused_before_it_is_deserialised(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint" / "state.pt"
    write_checkpoint(path, {"module": {"w": torch.arange(1000.0)}, "epoch": 3})
    assert read_checkpoint(path, CPU)["epoch"] == 3
    good = path.read_bytes()
    assert good.startswith(b"genrec-checkpoint/2 sha256:")
    header = good.index(b"\n") + 1

    def never(*a, **k):
        raise AssertionError("a damaged checkpoint was deserialised")

    for at in (40, header - 2, header + 3, len(good) // 2, len(good) - 1):  # digest, payload
        _flip(path, at, bit=at % 8)
        monkeypatch.setattr(torch, "load", never)
        with pytest.raises(CorruptFileError) as e:
            read_checkpoint(path, CPU)
        assert str(e.value).startswith(f"{path}: corrupt file (its SHA-256 differs")
        assert "delete it" in str(e.value) and "\n" not in str(e.value)
        monkeypatch.undo()
        path.write_bytes(good)
    _flip(path, 3)  # the magic: not a checkpoint header at all
    with pytest.raises(DataError, match=r"state.pt: the checkpoint is unreadable .*header"):
        read_checkpoint(path, CPU)


def test_checkpoints_of_the_old_layout_without_a_header_still_load(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"format": "genrec-checkpoint/1", "epoch": 2, "w": torch.ones(3)}, path)
    ck = read_checkpoint(path, CPU)
    assert ck["epoch"] == 2 and torch.equal(ck["w"], torch.ones(3))
    torch.save({"format": "genrec-checkpoint/2", "epoch": 2}, path)  # /2 payloads have one
    with pytest.raises(DataError, match="unsupported checkpoint format"):
        read_checkpoint(path, CPU)


def test_a_flipped_bit_in_saved_weights_is_refused(tmp_path):
    model, folder, X = _saved_ease(tmp_path)
    weights = folder / "weights.npz"
    _flip(weights, weights.stat().st_size // 2)  # inside the array data: still a valid npz
    with pytest.raises(CorruptFileError, match=r"weights.npz: corrupt file .*model.json"):
        Recommender.load(folder)


def test_a_flipped_digit_in_model_json_is_refused(tmp_path):
    model, folder, X = _saved_ease(tmp_path)
    meta = folder / "model.json"
    _flip_a_digit(meta, '"n_items": ')  # 20 -> 30: valid JSON, another model
    with pytest.raises(CorruptFileError, match=r"model.json: corrupt file"):
        Recommender.load(folder)
    _flip_a_digit(meta, '"n_items": ')  # as it was
    Recommender.load(folder)
    _flip_a_digit(meta, '"weights.npz": "')  # now the recorded digest of the weights
    with pytest.raises(CorruptFileError, match=r"model.json: corrupt file"):
        Recommender.load(folder)


def test_model_folders_without_checksums_still_load(tmp_path):
    model, folder, X = _saved_ease(tmp_path)
    meta_path = folder / "model.json"
    meta = json.loads(meta_path.read_text())
    assert set(meta["files"]) == {"weights.npz"} and meta["record_sha256"] == record_digest(meta)
    old = {k: v for k, v in meta.items() if k not in ("files", "record_sha256")}
    meta_path.write_text(json.dumps(old))  # as earlier versions wrote it
    again = Recommender.load(folder)
    np.testing.assert_array_equal(again.score(None, X).numpy(), model.score(None, X).numpy())


def test_a_flipped_digit_in_a_finished_run_record_is_refused(log_csv, tmp_path, capsys):
    out = tmp_path / "run"
    train_run(_vae(log_csv, out, epochs=1))
    _flip_a_digit(out / "run.json", '"dropout": ')
    capsys.readouterr()  # the log of the training above
    code = main(["-q", "recommend", str(out), "--user", "u1"])
    err = capsys.readouterr().err
    assert code == 1 and _one_error_line(err) and "run.json: corrupt file" in err


def test_resume_after_a_flipped_bit_in_the_checkpoint_refuses(pending, capsys):
    ckpt = rf.staging_dir(pending) / rf.CHECKPOINT_NAME
    staged = (rf.staging_dir(pending) / "run.json").read_bytes()
    _flip(ckpt, ckpt.stat().st_size // 2)
    capsys.readouterr()
    code = main(["-q", "train", "--resume", str(pending)])
    raw = capsys.readouterr().err
    err = " ".join(raw.split())
    assert code == 1 and _one_error_line(raw)
    assert "state.pt: corrupt file" in err and "delete it" in err and "with --force" in err
    # the pending run is left as it was: deleting the checkpoint trains it from the start
    assert (rf.staging_dir(pending) / "run.json").read_bytes() == staged
    assert load_run(pending).model.config.dropout == 0.5  # the finished model is intact
    ckpt.unlink()
    result = resume_run(pending)
    assert result is not None and result.model.config.dropout == 0.2


def test_resume_after_a_flipped_digit_in_the_pending_run_record_refuses(pending, capsys):
    staged = rf.staging_dir(pending) / "run.json"
    _flip_a_digit(staged, '"dropout": ')  # 0.2 -> 1.2, 0.3: another setting, valid JSON
    capsys.readouterr()
    code = main(["-q", "train", "--resume", str(pending)])
    raw = capsys.readouterr().err
    err = " ".join(raw.split())
    assert code == 1 and _one_error_line(raw)
    assert ".next/run.json: corrupt file" in err and "with --force" in err
    assert load_run(pending).model.config.dropout == 0.5


def test_run_records_carry_a_checksum_of_their_contents(log_csv, tmp_path):
    out = tmp_path / "run"
    train_run(_vae(log_csv, out, epochs=1))
    record = json.loads((out / "run.json").read_text())
    assert record["record_sha256"] == record_digest(record)
    assert "record_sha256" not in load_run(out).record  # read back without it
    (out / "run.json").write_text(json.dumps(seal_record({**record, "status": "done"})))
    assert load_run(out).record["status"] == "done"


# ----------------------------------------------------------------------------- defect 7
def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _model_save(d):
    X = sp.csr_matrix(np.eye(4, dtype=np.float32))
    EASE(l2=2.0 if (d / "model.json").exists() else 1.0).fit(X).save(d)  # other weights


def _run_data(d):
    X = sp.csr_matrix(np.eye(3, dtype=np.float32))
    rf.save_run_data(d, X, np.arange(3), np.arange(3), None, None, None)


WRITES = {
    "run.json": lambda d: rf.write_record(d, {"format": rf.RUN_FORMAT, "status": "running"}),
    "data.npz": _run_data,
    "checkpoint/state.pt": lambda d: write_checkpoint(d / rf.CHECKPOINT_NAME, {"w": torch.ones(9)}),
    "weights.npz": _model_save,
    "model.json": _model_save,
    "report.html": lambda d: atomic_write_files(d, {"map.png": b"\x89PNG", "report.html": "<p>"}),
    "payload.json": lambda d: atomic_write_json(d / "payload.json", {"a": [1, 2]}),
    "arrays.npz": lambda d: save_arrays(d / "arrays.npz", {"a": np.arange(5)}),
    "train_log.jsonl": lambda d: append_text(d / "train_log.jsonl", '{"epoch": 1}\n'),
}


@pytest.mark.parametrize("name", list(WRITES))
@pytest.mark.parametrize(
    "code, words",
    [
        (errno.ENOSPC, "no space left on device"),
        (errno.EDQUOT, "disk quota exceeded"),
        (errno.EROFS, "read-only file system"),
    ],
)
def test_a_full_disk_while_writing_is_one_line_naming_the_file(
    tmp_path, monkeypatch, name, code, words
):
    write = WRITES[name]
    write(tmp_path)  # the earlier version of every file
    before = _snapshot(tmp_path)
    fill_disk(monkeypatch, name.rsplit("/", 1)[-1], code)
    with pytest.raises(WriteError) as e:
        write(tmp_path)
    assert str(e.value).startswith(f"{words} writing {tmp_path / name}; ")
    assert "\n" not in str(e.value) and e.value.errno == code
    assert _snapshot(tmp_path) == before  # every file as it was, no temp file left


def test_a_full_disk_while_copying_a_finished_run_leaves_no_staging_folder(
    log_csv, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    train_run(_vae(log_csv, out, epochs=1, keep_checkpoint=True))  # a checkpoint to copy
    assert (out / rf.CHECKPOINT_NAME).is_file()
    real = shutil.copy2

    def full(src, dst, **kw):
        if "state.pt" in str(src):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, **kw)

    monkeypatch.setattr(rf.shutil, "copy2", full)
    with pytest.raises(WriteError, match=r"no space left on device writing .*\.next"):
        rf.stage_copy(out)
    assert not rf.staging_dir(out).exists()


def _train_args(log_csv, out, epochs=2):
    return [
        "-q",
        "train",
        "--model",
        "mult-vae",
        "--dataset",
        str(log_csv),
        "--set",
        f"train.epochs={epochs}",
        "--set",
        "hidden_dims=[8]",
        "--set",
        "latent_dim=4",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]


@pytest.mark.parametrize("name", ["state.pt", "train_log.jsonl", "weights.npz", "data.npz"])
def test_cli_train_on_a_full_disk_is_one_line_and_keeps_the_finished_model(
    log_csv, tmp_path, monkeypatch, capsys, name
):
    out = tmp_path / "run"
    assert main(_train_args(log_csv, out, epochs=1)) == 0
    before = _snapshot(out)
    capsys.readouterr()
    fill_disk(monkeypatch, name)
    code = main(_train_args(log_csv, out))
    raw = capsys.readouterr().err
    err = " ".join(raw.split())
    assert code == 1 and _one_error_line(raw), err
    assert f"no space left on device writing {out / '.next'}" in err and name in err
    assert not list(out.rglob("*.tmp"))
    assert {k: v for k, v in _snapshot(out).items() if not k.startswith(".next")} == before


@pytest.mark.slow
def test_cli_clusters_on_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    from tests.synthetic import write_ml100k

    data = write_ml100k(tmp_path / "ml-100k", n_users=60)
    assert (
        main(
            ["-q", "train", "--model", "ease", "--dataset", str(data), "--out", str(tmp_path / "e")]
        )
        == 0
    )
    out = tmp_path / "cl"
    args = [
        "clusters",
        str(tmp_path / "e"),
        "--embedding",
        "svd",
        "--method",
        "kmeans",
        "--out",
        str(out),
    ]
    assert main([*args, "--k", "3"]) == 0
    before = _snapshot(out)
    capsys.readouterr()
    fill_disk(monkeypatch, "report.html")
    assert main([*args, "--k", "2"]) == 1
    raw = capsys.readouterr().err
    err = " ".join(raw.split())
    assert _one_error_line(raw) and f"no space left on device writing {out / 'report.html'}" in err
    assert _snapshot(out) == before


def test_cli_foundations_on_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    js = tmp_path / "gmm.json"
    args = [
        "foundations",
        "gmm",
        "-k",
        "2",
        "--n-samples",
        "200",
        "--seed",
        "1",
        "--output",
        str(js),
    ]
    fill_disk(monkeypatch, "gmm.json")
    assert main(args) == 1
    raw = capsys.readouterr().err
    err = " ".join(raw.split())
    assert _one_error_line(raw) and f"no space left on device writing {js}" in err
    assert not list(tmp_path.glob(".*.tmp")) and not js.exists()


def _can_mount_tmpfs(where):
    r = subprocess.run(
        ["unshare", "-r", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {where}"],
        capture_output=True,
    )
    return r.returncode == 0


@pytest.mark.slow
def test_training_onto_a_really_full_disk_is_one_line(log_csv, tmp_path):
    """A 200 KB tmpfs (in a user namespace, where the machine allows it) fills up while the
    first checkpoint is written."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if shutil.which("unshare") is None or not _can_mount_tmpfs(mnt):
        pytest.skip("cannot mount a tmpfs here")
    out = mnt / "run"
    cmd = " ".join([sys.executable, "-m", "genrec", *_train_args(log_csv, out)]).replace(
        "hidden_dims=[8]", "hidden_dims=[400]"
    )
    script = (
        f"mount -t tmpfs -o size=200k tmpfs {mnt} && {cmd}; echo rc=$?; "
        f"find {mnt} -name '*.tmp' | sed 's/^/left /'"
    )
    env = {"PYTHONPATH": ":".join(sys.path), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run(
        ["unshare", "-r", "-m", "sh", "-c", script], capture_output=True, text=True, env=env
    )
    err = " ".join(r.stderr.split())
    assert "rc=1" in r.stdout and "left " not in r.stdout, r.stdout + r.stderr
    assert _one_error_line(r.stderr) and "no space left on device writing" in err, r.stderr
