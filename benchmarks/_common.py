"""Shared bits of the benchmark scripts: machine description, result files."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ML1M_CLEAN = ROOT.parent / "shared" / "data" / "ml-1m-diffrec" / "ml-1m_clean"  # DiffRec split


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    import numpy
    import torch

    from genrec.train import native_bf16

    bf16 = "native bf16" if native_bf16(torch.device("cpu")) else "no native bf16"
    return (
        f"{cpu_model()} ({bf16}), {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numpy {numpy.__version__}, load average at "
        f"start {os.getloadavg()[0]:.2f}"
    )


def header(title: str) -> str:
    cmd = "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"## {title}\n\n- command: `{cmd}`\n- date: {now}\n- machine: {machine()}\n\n"


def build_model(name: str, row: dict):
    """The model ``name`` from a flat settings row, as the tables print them (``{"lr": 1e-3,
    "latent_dim": 200}``): the keys of its nested configs (the trainer's ``train``, the
    diffusion models' ``diffusion``) are moved into those tables the way a model saved with
    flat keys is read (``Recommender.upgrade_config``)."""
    from genrec.models import get_model_class

    cls = get_model_class(name)
    return cls(**cls.upgrade_config(row))


def run_model(
    name: str,
    row: dict,
    data: str | Path,
    out: Path,
    protocol: dict | None = None,
    data_opts: dict | None = None,
    refit: bool = False,
):
    """One ``genrec.runs`` run (a :class:`genrec.runs.RunResult`) of model ``name`` with the
    flat settings ``row`` (as :func:`build_model` reads them) on the data set ``data``, under
    protocol ``protocol`` (a ``[protocol]`` table; ``diffrec`` unless it names another), into
    the run folder ``out``: the data loaded, the protocol built, the model fitted (validated
    where it selects an epoch) and evaluated on validation and test by the runner."""
    from genrec.models import get_model_class
    from genrec.runs import RunSpec, train_run

    cls = get_model_class(name)
    spec = RunSpec.from_mapping(
        {
            "model": name,
            "dataset": str(data),
            **cls.upgrade_config(dict(row)),
            "protocol": {"name": "diffrec", **(protocol or {})},
            "data": data_opts or {},
            "run": {"refit": refit},
        },
        out=out,
        force=True,
    )
    return train_run(spec)


def train_log(result) -> list[dict]:
    """The per-epoch records of a run's ``train_log.jsonl`` (``train_seconds``: the epoch's
    training; ``seconds``: with its validation; ``valid``: the validation metrics where it
    was validated); [] for a model that does not train by epochs."""
    from genrec.train import LOG_NAME

    path = Path(result.out) / LOG_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_result(name: str, text: str) -> Path:
    """Write ``benchmarks/results/<name>.md`` atomically."""
    from genrec.io import atomic_write_text

    path = RESULTS / f"{name}.md"
    atomic_write_text(path, text)
    print(f"wrote {path}")
    return path


def run_peer(
    venv: Path, script: str, args: list[str], env: dict[str, str] | None = None, timeout: int = 1800
) -> dict | str:
    """Run ``benchmarks/<script>`` in a peer library's side environment ``venv`` with ``args``
    and ``--out FILE``; the JSON it wrote, or one line saying why there is none."""
    py = venv / "bin" / "python"
    if not py.exists():
        return f"not run: no environment at {venv} (see benchmarks/{script})"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        cmd = [str(py), str(ROOT / "benchmarks" / script), *args, "--out", str(out)]
        proc = subprocess.run(
            cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0 or not out.exists():
            return "failed: " + (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return json.loads(out.read_text())


def run_recbole(venv: Path, data: str, args: list[str]) -> dict | str:
    """``benchmarks/peers_recbole.py`` in RecBole's side environment ``venv`` on ``data``."""
    return run_peer(
        venv,
        "peers_recbole.py",
        ["--data", data, *args],
        env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"},
    )
