"""Data-parallel training (gloo, 2 processes on the CPU): the same run as one process at the
same global batch; resume; a dead rank; the command line's ``--nproc``.

The processes are started as torchrun starts them (RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT in the environment) running tests/dist_fit.py, or ``genrec train --nproc 2``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from genrec.train.distributed import epoch_seed, shard_bounds

ROOT = Path(__file__).resolve().parent.parent
FIT = ROOT / "tests" / "dist_fit.py"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(rank: int, world: int, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(ROOT / "src"),
    )
    return env


def _start(world: int, *args: str) -> list[subprocess.Popen]:
    port = _port()
    return [
        subprocess.Popen(
            [sys.executable, str(FIT), *args],
            env=_env(r, world, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]


def _fit(world: int, *args: str, timeout: float = 240) -> list[tuple[int, str]]:
    procs = _start(world, *args)
    out = []
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        out.append((p.returncode, err))
    return out


def _ok(results: list[tuple[int, str]]) -> None:
    for rank, (code, err) in enumerate(results):
        assert code == 0, f"rank {rank} exited {code}:\n{err[-3000:]}"


def _load(out: Path) -> tuple[dict[str, np.ndarray], dict]:
    w = dict(np.load(out / "weights.npz"))
    return w, json.loads((out / "metrics.json").read_text())


def _same_run(a: Path, b: Path) -> None:
    wa, ma = _load(a)
    wb, mb = _load(b)
    assert set(wa) == set(wb)
    for k in wa:
        # DiffRec's loss history holds float32 losses of size 1e4: their rounding, relative
        rtol = 1e-6 if k.startswith("sampler.") else 0
        np.testing.assert_allclose(wa[k], wb[k], atol=1e-5, rtol=rtol, err_msg=k)
    for k, v in ma["test"].items():
        assert round(v, 4) == round(mb["test"][k], 4), k
    assert any(ma["history"])
    for ha, hb in zip(ma["history"], mb["history"], strict=True):  # the sharded validations
        assert (ha is None) == (hb is None)
        for k in ha or {}:
            assert ha[k] == pytest.approx(hb[k], abs=1e-6), k
    for la, lb in zip(ma["loss"], mb["loss"], strict=True):  # the epoch's logged losses
        assert la and la.keys() == lb.keys()
        assert la == pytest.approx(lb, rel=1e-5)


# ----------------------------------------------------------------------------- pieces
def test_shard_bounds_cover_every_row_once_balanced():
    for n in range(0, 23):
        for world in (1, 2, 3, 5):
            parts = [shard_bounds(n, world, r) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            sizes = [hi - lo for lo, hi in parts]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_epoch_seeds_differ_by_rank_and_epoch():
    seeds = {epoch_seed(0, e, r) for e in range(20) for r in range(4)}
    assert len(seeds) == 80 and all(0 <= s < 2**63 for s in seeds)


def test_single_process_ignores_the_group_machinery():
    from genrec.train.distributed import current, init_from_env

    assert current() is None
    assert "WORLD_SIZE" not in os.environ or os.environ["WORLD_SIZE"] == "1"
    assert init_from_env("cpu") is None


def test_keyed_noise_refused_for_a_model_without_it():
    import scipy.sparse as sp

    from genrec.errors import ConfigError
    from genrec.models import MultVAE

    class StreamVAE(MultVAE):  # a model that draws its noise from the generator stream
        keyed_noise = False

    m = StreamVAE(hidden_dims=[8], latent_dim=4, train={"epochs": 1, "noise": "keyed"})
    X = sp.random(20, 10, density=0.3, format="csr", random_state=0)
    X.data[:] = 1
    with pytest.raises(
        ConfigError, match="StreamVAE draws .* no keyed noise; set train.noise to stream or auto"
    ):
        m.fit(X)


# ----------------------------------------------------------------------------- 2 vs 1
# 121 users: per-rank batch 20 leaves a last global batch of 1 row (rank 1's shard empty),
# 25 one of 21 rows (11 / 10); the validation blocks are 61 / 60 users.
# recvae: two phases, parameters a phase leaves without gradients
# diffrec: keyed steps (importance sampled from the shared loss history), noise and
# denoiser dropout (dense rows); ldiffrec: the same in the latent space, two optimizers
# vq-vae: codebooks (EMA, restarts) updated from the gathered global batch
AT_20 = ["mult-vae", "recvae", "diffrec", "ldiffrec", "vq-vae", "vq-vae-residual"]
# 121 sequences of 3 to 12 items, 96 with a next item to learn after the split: per-rank
# batch 20 leaves a last global batch of 16 rows; windows trimmed to each shard's longest.
# sasrec: dropout on embeddings, attention weights and feed-forward, BCE negatives with
# redraws; sasrec-ss: K negatives per position; gru4rec: dropout before and after the GRU
# (real items first); bert4rec: the masks of the batches hook, attention dropout; hstu:
# negatives shared by the batch; hstu-pp: per position; tiger: examples (a user has several
# in a batch), the user slot first, the no-user draws
SEQUENCE = ["sasrec", "sasrec-ss", "gru4rec", "bert4rec", "hstu", "hstu-pp", "tiger"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Each group of models fitted once in 1 process (keyed noise) and once in 2 (the
    default, auto: keyed), at the same global batch: {model: (one, two)} folders."""
    root = tmp_path_factory.mktemp("dist")
    out = {}
    for models, batch in ((AT_20, 20), (SEQUENCE, 20), (["mult-vae"], 25), (["bpr-mf"], 128)):
        tag = f"{models[0]}-{batch}"
        names = ",".join(models)
        _ok(_fit(1, names, str(2 * batch), str(root / tag / "one"), "--keyed", timeout=600))
        _ok(_fit(2, names, str(batch), str(root / tag / "two"), timeout=600))
        for m in models:  # one model writes into OUT itself, several into OUT/MODEL
            one, two = root / tag / "one", root / tag / "two"
            out[(m, batch)] = (one, two) if len(models) == 1 else (one / m, two / m)
    return out


@pytest.mark.parametrize(
    "model,batch",
    [*((m, 20) for m in AT_20), ("mult-vae", 25), ("bpr-mf", 128), *((m, 20) for m in SEQUENCE)],
)
def test_two_processes_train_as_one_at_the_same_global_batch(fitted, model, batch):
    _same_run(*fitted[(model, batch)])


def test_stream_noise_differs_between_one_and_two_processes(tmp_path):
    """The control: without keyed noise the runs do differ (the comparison can fail)."""
    _ok(_fit(1, "mult-vae", "40", str(tmp_path / "one")))  # auto, one process: stream
    _ok(_fit(2, "mult-vae", "20", str(tmp_path / "two")))
    wa, _ = _load(tmp_path / "one")
    wb, _ = _load(tmp_path / "two")
    assert max(float(np.abs(wa[k] - wb[k]).max()) for k in wa) > 1e-4


# ----------------------------------------------------------------------------- faults
def test_killed_and_resumed_ends_where_an_uninterrupted_run_ends(tmp_path):
    run_dir = tmp_path / "run"
    _ok(_fit(2, "mult-vae", "20", str(tmp_path / "straight")))
    died = _fit(2, "mult-vae", "20", str(tmp_path / "x"), "--run-dir", str(run_dir),
                "--die-at-step", "9")  # fmt: skip
    assert died[1][0] == 17  # rank 1 died in epoch 3 (4 steps an epoch)
    assert died[0][0] != 0 and "DistributedError" in died[0][1]
    log = [json.loads(x) for x in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]  # the last complete checkpoint: epoch 2
    _ok(_fit(2, "mult-vae", "20", str(tmp_path / "resumed"), "--run-dir", str(run_dir),
             "--resume"))  # fmt: skip
    wa, ma = _load(tmp_path / "straight")
    wb, mb = _load(tmp_path / "resumed")
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k])
    assert ma["test"] == mb["test"]


def test_a_dead_rank_stops_the_other_within_60_s_with_a_message(tmp_path):
    t0 = time.monotonic()
    procs = _start(2, "mult-vae", "20", str(tmp_path / "x"), "--die-at-step", "4",
                   "--die-rank", "0", "--epochs", "50")  # fmt: skip
    codes = []
    for p in procs:
        _, err = p.communicate(timeout=120)
        codes.append((p.returncode, err))
    assert codes[0][0] == 17
    code, err = codes[1]
    assert code != 0
    assert time.monotonic() - t0 < 60
    line = next(x for x in err.splitlines() if "DistributedError: " in x)
    assert "rank 1 of 2" in line and "step 4" in line
    assert "resume the run with the same number of processes" in line


def test_resume_with_another_number_of_processes_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    _fit(2, "mult-vae", "20", str(tmp_path / "x"), "--run-dir", str(run_dir),
         "--die-at-step", "4")  # fmt: skip
    assert (run_dir / "checkpoint" / "state.pt").is_file()
    ((code, err),) = _fit(1, "mult-vae", "20", str(tmp_path / "y"), "--run-dir", str(run_dir),
                          "--resume")  # fmt: skip
    assert code != 0
    assert "written by a run of 2 processes, this one has 1; resume with 2" in err


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    from tests.synthetic import write_ml100k

    return write_ml100k(tmp_path_factory.mktemp("data") / "ml-100k", n_users=80, n_items=40)


def _genrec(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return subprocess.run(
        [sys.executable, "-m", "genrec", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


SMALL = ("--model", "mult-vae", "--set", "train.epochs=3", "--set", "hidden_dims=[8]",
         "--set", "latent_dim=4", "--set", "train.patience=null")  # fmt: skip


def test_cli_nproc_2_equals_one_process_at_the_same_global_batch(tmp_path, ml100k):
    two = _genrec("train", *SMALL, "--dataset", str(ml100k), "--nproc", "2",
                  "--set", "train.batch_size=15", "--out", str(tmp_path / "two"))  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    one = _genrec("train", *SMALL, "--dataset", str(ml100k), "--set", "train.batch_size=30",
                  "--set", "train.noise=keyed", "--out", str(tmp_path / "one"))  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    ra = json.loads((tmp_path / "one" / "run.json").read_text())
    rb = json.loads((tmp_path / "two" / "run.json").read_text())
    assert rb["processes"] == 2 and ra["processes"] == 1
    for part in ("valid", "test"):
        for k, v in ra["results"][part]["metrics"].items():
            assert round(v, 4) == round(rb["results"][part]["metrics"][k], 4), (part, k)
    wa = np.load(tmp_path / "one" / "weights.npz")
    wb = np.load(tmp_path / "two" / "weights.npz")
    for k in wa.files:
        np.testing.assert_allclose(wa[k], wb[k], atol=1e-5, rtol=0)
    assert not any(p.name.startswith(".") for p in (tmp_path / "two").iterdir())


def test_cli_nproc_bad_input_is_one_line_and_non_zero(tmp_path, ml100k):
    r = _genrec("train", *SMALL, "--dataset", str(tmp_path / "nothing"), "--nproc", "2")
    assert r.returncode != 0
    assert "no such file or folder" in r.stderr
    assert "genrec train --nproc 2: rank 0 exited with code 1" in r.stderr
    assert "Traceback" not in r.stderr
    r = _genrec("train", *SMALL, "--dataset", str(ml100k), "--nproc", "0")
    assert r.returncode != 0 and "--nproc 0: give a number of processes >= 1" in r.stderr


def test_torch_distributed_is_available():
    assert torch.distributed.is_available()


def test_the_default_noise_leaves_run_fingerprints_as_before():
    """Runs checkpointed before train.noise existed still resume (their fingerprints have
    no such key); a keyed run's fingerprint names it."""
    import scipy.sparse as sp

    from genrec.config import build_config
    from genrec.models import get_model_class
    from genrec.protocols import ProtocolConfig
    from genrec.runs.fitting import fingerprint

    cls = get_model_class("mult-vae")
    X = sp.random(10, 8, density=0.3, format="csr", random_state=0)
    auto = fingerprint("mult-vae", cls.config_class(), ProtocolConfig(), X)
    keyed_cfg = build_config(cls.config_class, {"train": {"noise": "keyed"}}, where="t")
    keyed = fingerprint("mult-vae", keyed_cfg, ProtocolConfig(), X)
    assert "noise" not in auto["config"]["train"]
    assert keyed["config"]["train"]["noise"] == "keyed"
