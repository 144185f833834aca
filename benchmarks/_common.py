"""Shared bits of the benchmark scripts: machine description, result files."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


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
    return (f"{cpu_model()} ({bf16}), {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), numpy {numpy.__version__}, load average at "
            f"start {os.getloadavg()[0]:.2f}")


def header(title: str) -> str:
    cmd = "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"## {title}\n\n- command: `{cmd}`\n- date: {now}\n- machine: {machine()}\n\n"


def write_result(name: str, text: str) -> Path:
    """Write ``benchmarks/results/<name>.md`` atomically."""
    from genrec.io import atomic_write_text

    path = RESULTS / f"{name}.md"
    atomic_write_text(path, text)
    print(f"wrote {path}")
    return path
