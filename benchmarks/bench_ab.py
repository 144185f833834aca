"""Interleaved A/B timing: a base revision of genrec against the working tree, on this machine.

The shared benchmark machines drift by a third in speed within hours, so seconds measured an
hour apart cannot show a 10% change. This script times both sides alternately, each run in a
fresh process (base, tree, base, tree, ...), on ML-1M clean (DiffRec split): training seconds
per epoch (run_dir None, no validation) and, for Mult-VAE, a full validation pass. The rating
models (biased-mf, fm) run on ML-100K u1 (protocol rating) with their model defaults: seconds
per epoch of the whole fit (no validation), as a base revision may keep no per-epoch history.

Usage: python benchmarks/bench_ab.py [--base REV] [--models mult-vae,recvae] [--rounds 3]
       [--epochs 3] [--data DIR] [--rating-data DIR] [--out NAME]
Writes results/vae-ab.md (or results/NAME.md). The base revision's ``src/`` is taken with ``git archive`` into a
temporary folder; nothing else of it is used (same data, same interpreter, same threads).
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ML1M_CLEAN, ROOT, header, write_result

RATING_MODELS = ("biased-mf", "fm")
ML100K = ROOT.parent / "shared" / "data" / "ml-100k"


def child(src: str, model: str, epochs: int, data: str) -> None:
    """Time one side in this process; print one JSON line."""
    sys.path.insert(0, str(Path(src) / "src"))
    import genrec
    from genrec.data import load_dataset
    from genrec.evaluate import evaluate_ranking
    from genrec.models import get_model_class
    from genrec.protocols import ProtocolConfig, build_protocol

    if not Path(genrec.__file__).resolve().is_relative_to(Path(src).resolve()):
        sys.exit(f"bench_ab: imported genrec from {genrec.__file__}, not from {src}")
    rating = model in RATING_MODELS
    protocol = ProtocolConfig(name="rating", fold=1) if rating else ProtocolConfig(name="diffrec")
    pdata = build_protocol(load_dataset(data), protocol)
    cls, train = get_model_class(model), {"epochs": epochs, "device": "cpu", "seed": 0}
    nested = "train" in getattr(cls.config_class, "__dataclass_fields__", {})
    m = cls(train=train) if nested else cls(**train)  # a base revision may have flat keys
    t0 = time.perf_counter()
    if "progress" in inspect.signature(m.fit).parameters:  # a base revision before FitContext
        m.fit(pdata.train.matrix, progress=False)
    else:
        m.fit(pdata.train.matrix)
    if rating:
        print(json.dumps({"epochs": [], "fit": [(time.perf_counter() - t0) / epochs]}))
        return
    out = {"epochs": [r["train_seconds"] for r in m.history_], "valid": []}
    if model == "mult-vae":
        evaluate_ranking(m, pdata.valid)  # warm-up
        for _ in range(3):
            t0 = time.perf_counter()
            evaluate_ranking(m, pdata.valid)
            out["valid"].append(time.perf_counter() - t0)
    print(json.dumps(out))


def run_side(src: Path, model: str, epochs: int, data: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(src), model, str(epochs), data],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        sys.exit(
            f"bench_ab: the {model} run from {src} failed: "
            f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:4], int(sys.argv[4]), sys.argv[5])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD", help="git revision to compare with (HEAD)")
    ap.add_argument("--models", default="mult-vae,recvae")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each side, interleaved")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run")
    ap.add_argument("--data", default=str(ML1M_CLEAN))
    ap.add_argument("--rating-data", default=str(ML100K), help="for biased-mf and fm")
    ap.add_argument("--out", default="vae-ab", help="results/NAME.md")
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        sys.exit(f"bench_ab: data folder {args.data} not found; pass --data DIR")
    rev = subprocess.run(
        ["git", "rev-parse", "--short", args.base], capture_output=True, text=True, cwd=ROOT
    )
    if rev.returncode != 0:
        sys.exit(f"bench_ab: {args.base!r} is not a git revision here")
    base_rev = rev.stdout.strip()
    tree_rev = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", base_rev, "src"],
            capture_output=True,
            cwd=ROOT,
            check=True,
        ).stdout
        (Path(tmp) / "base").mkdir()
        subprocess.run(["tar", "-x", "-C", str(Path(tmp) / "base")], input=archive, check=True)
        sides = {"base": Path(tmp) / "base", "tree": ROOT}
        runs: dict[tuple[str, str], list[dict]] = {}
        for model in args.models.split(","):
            for r in range(args.rounds):
                for side, src in sides.items():
                    data = args.rating_data if model in RATING_MODELS else args.data
                    res = run_side(src, model, args.epochs, data)
                    runs.setdefault((model, side), []).append(res)
                    print(
                        f"{model} {side} round {r + 1}: s / epoch "
                        + ", ".join(f"{s:.2f}" for s in res["epochs"] or res["fit"]),
                        flush=True,
                    )

    def med(model: str, side: str, key: str) -> tuple[float, list[float]]:
        vals = [v for res in runs[(model, side)] for v in res[key][1 if key == "epochs" else 0 :]]
        return statistics.median(vals), vals

    rows = []
    for model in args.models.split(","):
        keys = ["epochs"] + (["valid"] if model == "mult-vae" else [])
        if model in RATING_MODELS:
            keys = ["fit"]
        for key in keys:
            (b, bv), (t, tv) = med(model, "base", key), med(model, "tree", key)
            what = {
                "epochs": f"{model} s / epoch",
                "valid": f"{model} valid pass s",
                "fit": f"{model} s / epoch (whole fit / epochs, ML-100K u1)",
            }[key]
            rows.append(
                f"| {what} | {b:.3f} | {t:.3f} | {t / b:.2f} | "
                f"{', '.join(f'{v:.2f}' for v in bv)} | "
                f"{', '.join(f'{v:.2f}' for v in tv)} |"
            )
    title = (
        "A/B timing, ML-1M clean (DiffRec split): a base revision against the "
        "working tree, interleaved"
    )
    if all(m in RATING_MODELS for m in args.models.split(",")):
        title = "A/B timing of the rating models, ML-100K u1: a base revision against the tree"
    text = header(title) + (
        f"Base {base_rev} against the working tree ({tree_rev}), each run in a fresh process, "
        f"{args.rounds} rounds of (base, tree) per model, {args.epochs} epochs per run (for per-epoch rows the "
        f"first epoch of each run is left out as warm-up); whole script "
        f"{(time.perf_counter() - t_start) / 60:.1f} min. Medians over all kept epochs.\n\n"
        "| what | base median | tree median | tree / base | base runs | tree runs |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    write_result(args.out, text)


if __name__ == "__main__":
    main()
