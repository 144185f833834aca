"""Fault injection on run folders: kills at random moments, flipped bytes, a full disk.

Every trial starts from a folder holding a finished model (an earlier run with another
config), then:

* ``kill``: ``genrec train`` into that folder is killed with SIGKILL at a random moment; the
  earlier model must still load, and ``genrec train --resume`` (when a run is pending) must
  end at the uninterrupted run's scores bit for bit, or refuse with one line;
* ``flip``: one byte of one saved file (run.json, model.json, weights.npz, data.npz, the
  checkpoint of a pending run) is flipped; loading or resuming must give the same scores or
  refuse with one line (no traceback);
* ``full``: the run is trained on a small tmpfs that fills up (where mounting one is
  allowed): it must fail with one line and leave the earlier model usable.

Counts: runs, resumed equal, refused with one line, finished model lost (must be 0).

Usage: python benchmarks/fault_injection.py [--trials 30] [--seed 0] [--write]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from genrec.errors import GenrecError  # noqa: E402
from genrec.runs import folder as rf  # noqa: E402
from genrec.runs import load_run  # noqa: E402

EPOCHS = 40


def write_log(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rows = ["user,item,timestamp"]
    t = 0
    for u in range(300):
        group = u % 3
        for i in rng.choice(40, size=15, replace=False) + 40 * group:
            t += 1
            rows.append(f"u{u},i{i},{t}")
    path.write_text("\n".join(rows) + "\n")


def genrec(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "genrec", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def train_args(log: Path, out: Path, dropout: float) -> list[str]:
    return [
        "-q",
        "train",
        "--model",
        "mult-vae",
        "--dataset",
        str(log),
        "--set",
        f"train.epochs={EPOCHS}",
        "--set",
        "hidden_dims=[32]",
        "--set",
        "latent_dim=8",
        "--set",
        f"dropout={dropout}",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]


def scores(folder: Path) -> np.ndarray:
    run = load_run(folder)
    return run.model.score(None, run.data.train[:50]).numpy()


def one_line(err: str) -> bool:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    return "Traceback" not in err and len(lines) >= 1 and lines[-1].startswith("Error:")


def kill_trial(
    rng: random.Random, log: Path, work: Path, old: Path, ref: np.ndarray, full_seconds: float
) -> str:
    out = work / "run"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(old, out)
    old_scores = scores(out)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.Popen(
        [sys.executable, "-m", "genrec", *train_args(log, out, 0.2)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    time.sleep(rng.uniform(0.0, full_seconds * 1.1))
    p.send_signal(signal.SIGKILL)
    p.wait()
    try:
        now = scores(out)
    except GenrecError:
        return "lost"
    if not (np.array_equal(now, old_scores) or np.array_equal(now, ref)):
        return "lost"
    if rf.read_status(rf.staging_dir(out)) != "running":
        return "equal" if np.array_equal(now, ref) else "not started"
    r = genrec("-q", "train", "--resume", str(out))
    if r.returncode != 0:
        return "refused" if one_line(r.stderr) else "traceback"
    return "equal" if np.array_equal(scores(out), ref) else "differs"


def flip_trial(
    rng: random.Random, log: Path, work: Path, old: Path, ref: np.ndarray, pending: Path
) -> tuple[str, str]:
    out = work / "flip"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(pending, out)  # a finished model with a pending, checkpointed run
    names = [
        "run.json",
        "model.json",
        "weights.npz",
        "data.npz",
        ".next/checkpoint/state.pt",
        ".next/run.json",
    ]
    name = rng.choice(names)
    path = out / name
    data = bytearray(path.read_bytes())
    at = rng.randrange(len(data))
    data[at] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    if name.startswith(".next"):
        r = genrec("-q", "train", "--resume", str(out))
        if r.returncode != 0:
            return name, "refused" if one_line(r.stderr) else "traceback"
        return name, "equal" if np.array_equal(scores(out), ref) else "differs"
    r = genrec("recommend", str(out), "--user", "u1", "-k", "3")
    if r.returncode != 0:
        return name, "refused" if one_line(r.stderr) else "traceback"
    return name, "equal" if np.array_equal(scores(out), scores(old)) else "differs"


def full_disk_trial(log: Path, old: Path) -> str:
    mnt = Path(tempfile.mkdtemp(prefix="genrec-tmpfs-"))
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        != 0
    ):
        return "not available (cannot mount a tmpfs here)"
    try:
        out = mnt / "run"
        shutil.copytree(old, out, ignore=shutil.ignore_patterns("checkpoint"))
        before = scores(out)
        args = train_args(log, out, 0.2)
        args[args.index("hidden_dims=[32]")] = "hidden_dims=[2000]"
        r = genrec(*args)
        ok = r.returncode != 0 and one_line(r.stderr)
        kept = np.array_equal(scores(out), before)
        return (
            f"{'refused with one line' if ok else 'NOT one line'}; earlier model "
            f"{'kept' if kept else 'LOST'}"
        )
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="write results/faults.md")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    work = Path(tempfile.mkdtemp(prefix="genrec-faults-"))
    log = work / "log.csv"
    write_log(log)
    old = work / "old"
    assert genrec(*train_args(log, old, 0.5)).returncode == 0
    t0 = time.perf_counter()
    ref_dir = work / "ref"
    r = genrec(*train_args(log, ref_dir, 0.2))
    assert r.returncode == 0, r.stderr
    full_seconds = time.perf_counter() - t0
    ref = scores(ref_dir)
    # a finished model with a pending run: killed after its first checkpoints
    pending = work / "pending"
    shutil.copytree(old, pending)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.Popen(
        [sys.executable, "-m", "genrec", *train_args(log, pending, 0.2)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    ck = rf.staging_dir(pending) / rf.CHECKPOINT_NAME
    while not ck.is_file() and p.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()

    kills: dict[str, int] = {}
    for _ in range(a.trials):
        res = kill_trial(rng, log, work, old, ref, full_seconds)
        kills[res] = kills.get(res, 0) + 1
        print("kill:", res, flush=True)
    flips: dict[str, dict[str, int]] = {}
    for _ in range(a.trials):
        name, res = flip_trial(rng, log, work, old, ref, pending)
        flips.setdefault(name, {})
        flips[name][res] = flips[name].get(res, 0) + 1
        print("flip:", name, res, flush=True)
    disk = full_disk_trial(log, old)
    print("full disk:", disk)
    lost = kills.get("lost", 0)
    lines = [
        "## Fault injection on run folders (`benchmarks/fault_injection.py`)",
        "",
        f"Command: `python benchmarks/fault_injection.py --trials {a.trials} --seed "
        f"{a.seed} --write`; date {time.strftime('%Y-%m-%d')}; an uninterrupted run "
        f"takes {full_seconds:.1f} s (Mult-VAE, {EPOCHS} epochs, CPU).",
        "",
        "| fault | runs | outcome counts |",
        "|---|---|---|",
        f"| SIGKILL at a random moment, then --resume | {a.trials} | "
        + ", ".join(f"{k} {v}" for k, v in sorted(kills.items()))
        + " |",
    ]
    for name, counts in sorted(flips.items()):
        lines.append(
            f"| one flipped bit in {name} | {sum(counts.values())} | "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            + " |"
        )
    lines += [
        f"| full disk (2 MB tmpfs) | 1 | {disk} |",
        "",
        f"Finished models lost: {lost}. 'equal': resumed (or loaded) to the "
        f"uninterrupted run's scores bit for bit; 'refused': a one-line error; "
        f"'not started': killed before the new run wrote anything (the earlier model "
        f"intact).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if a.write:
        (ROOT / "benchmarks" / "results" / "faults.md").write_text(text)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
