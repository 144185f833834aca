"""Sequential recommendation on the Amazon 5-core sets (Beauty, Sports), protocol seq-loo.

Each row is a run config under ``configs/amazon-beauty/`` (the same file serves Sports, with
the data set replaced). A row runs in two stages, each a fresh process (so its peak RSS is
its own): (1) the config's ``[run] grid`` with seed 0, selected on validation
(``[run] select``, NDCG@10 by default), skipped when the config has no grid; (2) the chosen setting
retrained with ``--seeds`` (three by default), whose test numbers are reported as mean ± sd.
The test split is read for the chosen setting only. Full ranking over all items, the history
masked; the sampled evaluation (the SASRec paper's sampler, 100 negatives) is printed beside
where a config asks for it, never mixed with the full-ranking columns.

Speed: seconds per training epoch (median of the run's epochs), one full evaluation of all
test users (with ``--speed``, the median of three per library), peak RSS. RecBole 1.2.1's SASRec at the same size, loss and batch runs in the
same invocation when its side environment exists (``benchmarks/peers_recbole_seq.py``).

Usage: python benchmarks/bench_sequential.py [--data beauty,sports] [--models a,b]
       [--seeds 0,1,2] [--peers-venv /work/peers/venv] [--out sequential] [--keep DIR]

``--keep DIR`` keeps every finished stage (the selection, each seed's run) in DIR and reuses
it when the same command runs again, so a long row (Sports SASRec: hours) can be finished
over several invocations; each seed is then its own stage, and its test numbers are joined
into mean and sample sd as the runner joins them.
       python benchmarks/bench_sequential.py --scale   (one SASRec epoch on ML-20M's shape)
       python benchmarks/bench_sequential.py --speed   (SASRec against RecBole, Beauty)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, header, run_peer, write_result

DATA = {
    "beauty": ROOT.parent / "shared" / "data" / "amazon-5core" / "Beauty.txt",
    "sports": ROOT.parent / "shared" / "data" / "amazon-5core" / "Sports_and_Outdoors.txt",
}
CONFIGS = ROOT / "configs" / "amazon-beauty"
EVAL_REPEATS = 3  # timed full evaluations per library in --speed (the median is shown)
#: table order: row name -> (config under configs/amazon-beauty/, settings over it); a row
#: runs when its config exists and its model is registered. The SASRec rows are one config
#: with its loss replaced (the grid and the rest of the preset kept); sasrec-bce-s3rec is the
#: S3-Rec authors' SASRec (block = "bert"), whose BCE numbers are the protocol check.
ROWS: dict[str, tuple[str, dict]] = {
    "popularity": ("popularity", {}),
    "transition": ("transition", {}),
    "ease": ("ease", {}),
    "mult-vae": ("mult-vae", {}),
    "gru4rec": ("gru4rec-cpu", {}),
    "bert4rec": ("bert4rec-cpu", {}),
    "sasrec-bce": ("sasrec-cpu", {"loss": "bce"}),
    "sasrec-ce": ("sasrec-cpu", {"loss": "ce"}),
    "sasrec-sampled-softmax": ("sasrec-cpu", {"loss": "sampled_softmax"}),
    "sasrec-gbce": ("sasrec-cpu", {"loss": "gbce"}),
    "sasrec-bce-s3rec": ("sasrec-s3rec", {}),  # the S3-Rec authors' BERT-style SASRec
    "hstu": ("hstu-cpu", {}),
}
#: published all-item numbers on these files (R@10 / N@10), as issue 21 lists them
ANCHORS = {
    ("beauty", "sasrec-bce"): "SASRec (BCE) by the S3-Rec authors: 0.0605 / 0.0318",
    ("beauty", "sasrec-bce-s3rec"): (
        "SASRec (BCE) by the S3-Rec authors: 0.0605 / 0.0318, sampled (99) HR@10 0.4696 / "
        "N@10 0.3156"
    ),
    (
        "beauty",
        "sasrec-sampled-softmax",
    ): "best published SASRec (sampled softmax): 0.0921 / 0.0531",
    ("beauty", "sasrec-ce"): "RecBole SASRec (CE, defaults): about 0.083 / 0.042",
    ("beauty", "hstu"): "HSTU, independent re-run: 0.079 / 0.044",
    ("beauty", "bert4rec"): "BERT4Rec by the S3-Rec authors: 0.0347 / 0.0170",
    ("beauty", "gru4rec"): "GRU4Rec by the S3-Rec authors: 0.0283 / 0.0137",
    ("sports", "sasrec-sampled-softmax"): "best published SASRec: 0.0569 / 0.0314",
}
SHOWN = ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr@20")


# ----------------------------------------------------------------------------- one stage
def stage(
    config: Path, data: Path, out: Path, seeds: list[int] | None, chosen: dict, settings: dict
) -> dict:
    """Run ``config`` on ``data`` in a fresh process (this script with ``--one``)."""
    cmd = [
        sys.executable,
        __file__,
        "--one",
        json.dumps(
            {
                "config": str(config),
                "data": str(data),
                "out": str(out),
                "seeds": seeds,
                "chosen": chosen,
                "settings": settings,
            }
        ),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def one(args: dict) -> dict:
    """The ``--one`` child: build the spec, train, report numbers and peak RSS."""
    from genrec.config import load_toml
    from genrec.runs import RunSpec, train_run
    from genrec.runs.spec import merge
    from genrec.train import LOG_NAME

    values = merge(load_toml(args["config"]), {"dataset": args["data"], **args["settings"]})
    if args["seeds"] is not None:  # stage 2: the chosen setting, several seeds, no grid
        for key, v in args["chosen"].items():  # "train.lr" -> {"train": {"lr": v}}
            *path, last = key.split(".")
            node = values
            for p in path:
                node = node.setdefault(p, {})
            node[last] = v
        values.setdefault("run", {})
        values["run"]["grid"] = {}
        values["run"]["seeds"] = args["seeds"]
    spec = RunSpec.from_mapping(values, where=args["config"], out=Path(args["out"]), force=True)
    t0 = time.perf_counter()
    res = train_run(spec)
    wall = time.perf_counter() - t0
    log = Path(res.out) / LOG_NAME
    epochs = (
        [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.is_file() else []
    )
    if not epochs:  # several seeds run without a stage folder: the model keeps its log
        epochs = list(getattr(res.model, "history_", None) or [])
    train_s = [e["train_seconds"] for e in epochs if "train_seconds" in e]
    rec = res.record
    return {
        "valid": res.valid,
        "test": res.test,
        "chosen": rec.get("chosen") or {},
        "trials": rec.get("trials"),
        "config": rec.get("config"),
        "epoch_s": statistics.median(train_s) if train_s else None,
        "epochs": len(epochs),
        "best_epoch": max((e.get("epoch", 0) for e in epochs), default=None),
        "fit_s": rec.get("fit_seconds"),
        "wall_s": wall,
        "eval_s": res.test.get("seconds"),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


# ----------------------------------------------------------------------------- kept stages
def kept(keep: Path, key: str, run: Any) -> dict:
    """The stage ``key``'s result from ``keep/key.json`` when an earlier invocation finished
    it, else ``run()``'s, written there atomically (a failed stage is not kept)."""
    from genrec.io import atomic_write_text

    path = keep / f"{key}.json"
    if path.is_file():
        print(f"  {key}: kept from {path}", flush=True)
        return json.loads(path.read_text())
    res = run()
    if "error" not in res:
        keep.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(res, default=float))
    return res


def with_sampled(config: Path, data: Path, run_dir: Path, res: dict) -> dict:
    """``res`` with the sampled evaluation of its test part where the config's protocol asks
    for one and a stage kept before it did lacks it: evaluated from the stage's saved run
    folder (the same trained model; its test part read for the sampled metrics alone)."""
    from genrec.config import build_config, load_toml
    from genrec.data import load_dataset
    from genrec.protocols import ProtocolConfig, build_protocol
    from genrec.runs import load_run
    from genrec.runs.fitting import sampled_part

    proto = build_config(ProtocolConfig, load_toml(config).get("protocol", {}), where="protocol")
    if proto.sampled_negatives <= 0 or "sampled" in res["test"] or not run_dir.is_dir():
        return res
    print(f"  {run_dir.name}: sampled evaluation from the saved run", flush=True)
    sampled = sampled_part(
        load_run(run_dir).model, build_protocol(load_dataset(data), proto), "test"
    )
    return {**res, "test": {**res["test"], "sampled": sampled}}


def kept_row(
    keep: Path, data: str, name: str, config: Path, path: Path, seeds: list[int], settings: dict
) -> tuple[dict, dict]:
    """A row whose selection and each seed are stages kept in ``keep`` (``--keep``): an
    invocation stopped part way (a session's end) loses only the stage it was in. The
    seeds' test numbers are joined here (mean and sample sd), as the runner joins them."""
    from genrec.config import load_toml

    work = keep / "runs"
    if (load_toml(config).get("run") or {}).get("grid"):
        print(f"[{data}] {name}: selection", flush=True)
        sel = kept(
            keep,
            f"{data}-{name}-select",
            lambda: stage(config, path, work / f"{data}-{name}-sel", None, {}, settings),
        )
    else:
        sel = {"chosen": {}}
    if "error" in sel:
        return sel, sel
    chosen = sel.get("chosen") or {}
    print(f"[{data}] {name}: seeds {seeds} at {chosen}", flush=True)
    runs = []
    for seed in seeds:
        key = f"{data}-{name}-seed{seed}"
        res = kept(
            keep, key, lambda k=key, s=seed: stage(config, path, work / k, [s], chosen, settings)
        )
        if "error" in res:
            return sel, res
        runs.append(with_sampled(config, path, work / key, res))
    metrics = {k: [r["test"]["metrics"][k] for r in runs] for k in runs[0]["test"]["metrics"]}
    test = {**runs[0]["test"], "metrics": {k: statistics.mean(v) for k, v in metrics.items()}}
    if all("sampled" in r["test"] for r in runs) and len(runs) > 1:
        samp = [r["test"]["sampled"]["metrics"] for r in runs]
        test["sampled"] = {
            **runs[0]["test"]["sampled"],
            "metrics": {k: statistics.mean(s[k] for s in samp) for k in samp[0]},
            "sd": {k: statistics.stdev(s[k] for s in samp) for k in samp[0]},
        }
    if len(runs) > 1:
        test["seeds"] = {
            k: {"mean": statistics.mean(v), "sd": statistics.stdev(v)} for k, v in metrics.items()
        }
    fin = {
        **runs[0],
        "test": test,
        "epoch_s": (
            statistics.median(e)
            if (e := [r["epoch_s"] for r in runs if r.get("epoch_s")])
            else None
        ),
        "peak_rss_gib": max(r["peak_rss_gib"] for r in runs),
    }
    return sel, fin


# ----------------------------------------------------------------------------- rows
def row_cells(name: str, data: str, sel: dict, fin: dict) -> str:
    if "error" in fin:
        return f"| {name} | failed: {fin['error']} |" + " |" * (len(SHOWN) + 3)
    t = fin["test"]
    seeds = t.get("seeds", {})
    cells = []
    for k in SHOWN:
        s = seeds.get(k)
        cells.append(f"{s['mean']:.4f} ± {s['sd']:.4f}" if s else f"{t['metrics'][k]:.4f}")
    chosen = ", ".join(f"{k} {v}" for k, v in (sel.get("chosen") or {}).items()) or "config"
    speed = f"{fin['epoch_s']:.1f} s/epoch" if fin.get("epoch_s") else f"fit {fin['fit_s']:.1f} s"
    sampled = t.get("sampled")
    extra = ""
    if sampled:
        m, sd = sampled["metrics"], sampled.get("sd")
        hr, nd = (
            (f"{m['hit_rate@10']:.4f}", f"{m['ndcg@10']:.4f}")
            if not sd
            else (
                f"{m['hit_rate@10']:.4f} ± {sd['hit_rate@10']:.4f}",
                f"{m['ndcg@10']:.4f} ± {sd['ndcg@10']:.4f}",
            )
        )
        extra = f"; sampled ({sampled['n_negatives']}, {sampled['sampler']}) HR@10 {hr} / N@10 {nd}"
    anchor = ANCHORS.get((data, name), "")
    return (
        f"| {name} | " + " | ".join(cells) + f" | {chosen} | {speed}, eval "
        f"{fin['eval_s']:.1f} s, peak {fin['peak_rss_gib']:.2f} GiB | "
        f"{'; '.join(x for x in (anchor, extra.removeprefix('; ')) if x)} |"
    )


# ----------------------------------------------------------------------------- speed
def speed_one(args: dict) -> dict:
    """The ``--speed-one`` child: genrec's SASRec (the sasrec-cpu preset, CE) for a fixed
    number of epochs without validation, then timed full evaluations of all test users."""
    import torch

    from genrec.config import build_config, load_toml
    from genrec.data import load_dataset
    from genrec.evaluate import evaluate_ranking
    from genrec.protocols import build_protocol
    from genrec.runs import RunSpec
    from genrec.runs.spec import merge

    torch.set_num_threads(args["threads"])
    values = merge(load_toml(CONFIGS / "sasrec-cpu.toml"), {"dataset": args["data"]})
    spec = RunSpec.from_mapping(values, where="sasrec-cpu.toml", out=Path("unused"), force=True)
    cls = spec.model_class
    config = build_config(
        cls.config_class, {"loss": "ce", "train": {"epochs": args["epochs"]}}, base=spec.config
    )
    pdata = build_protocol(load_dataset(spec.dataset), spec.protocol)
    model = cls(config).fit(pdata.train_sequences)
    eval_s = []
    for _ in range(EVAL_REPEATS):  # the median of three, as RecBole's side is timed
        t0 = time.perf_counter()
        test = evaluate_ranking(model, pdata.test, ks=pdata.ks, metrics=("recall", "ndcg"))
        eval_s.append(time.perf_counter() - t0)
    train = config.train
    return {
        "epoch_s": statistics.median(r["train_seconds"] for r in model.history_),
        "epochs": len(model.history_),
        "eval_s": statistics.median(eval_s),
        "test_users": int(pdata.test.truth.shape[0]),
        "recall@10": float(test.metrics["recall@10"]),
        "dim": config.dim,
        "n_blocks": config.n_blocks,
        "n_heads": config.n_heads,
        "max_len": config.max_len,
        "dropout": config.dropout,
        "batch_users": train.batch_size,
        "targets": int((pdata.train_sequences.lengths - 1).clip(0, config.max_len).sum()),
        "train_users": int((pdata.train_sequences.lengths >= 2).sum()),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def speed(data: Path, venv: Path, epochs: int, threads: int) -> str:
    """SASRec (CE) against RecBole 1.2.1's at the same size, loss and batch, same threads.

    genrec's batch counts users (every position of a window is a target), RecBole's counts
    samples (one target each): RecBole's batch is set to genrec's batch times the mean targets
    per training user, so both take the same targets per step and per epoch."""
    cmd = [
        sys.executable,
        __file__,
        "--speed-one",
        json.dumps({"data": str(data), "epochs": epochs, "threads": threads}),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"genrec SASRec failed: {tail}\n"
    g = json.loads(proc.stdout.strip().splitlines()[-1])
    batch = round(g["batch_users"] * g["targets"] / g["train_users"])
    args = ["--data", str(data), "--hidden", str(g["dim"]), "--layers", str(g["n_blocks"])]
    args += ["--heads", str(g["n_heads"]), "--loss", "CE", "--batch", str(batch)]
    args += ["--epochs", str(epochs), "--max-len", str(g["max_len"]), "--dropout"]
    args += [str(g["dropout"]), "--threads", str(threads), "--eval-repeats", str(EVAL_REPEATS)]
    peer = run_peer(
        venv, "peers_recbole_seq.py", args, env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    )
    lines = [
        header("Sequential recommendation: SASRec speed against RecBole, Amazon Beauty"),
        f"SASRec, CE loss over all items, width {g['dim']}, {g['n_blocks']} blocks, "
        f"{g['n_heads']} head, max_len {g['max_len']}, dropout {g['dropout']}, {epochs} epochs "
        f"without validation, {threads} torch thread(s) each; genrec batch {g['batch_users']} "
        f"users, RecBole batch {batch} samples (the same {g['targets']:,} targets per epoch in "
        f"steps of the same size). Evaluation: full ranking of all {g['test_users']:,} test "
        f"users, history masked, the median of {EVAL_REPEATS} passes each. Speed only: the models are not trained to convergence "
        f"(R@10 after {epochs} epochs shown as a sanity check).\n\n",
        "| library | s/epoch (median) | full evaluation s | peak RSS GiB | R@10 |\n",
        "|---|---|---|---|---|\n",
        f"| genrec | {g['epoch_s']:.1f} | {g['eval_s']:.1f} | {g['peak_rss_gib']:.2f} | "
        f"{g['recall@10']:.4f} |\n",
    ]
    if isinstance(peer, str):
        lines.append(f"| RecBole 1.2.1 | {peer} | | | |\n")
        return "".join(lines)
    peer = peer["results"][0]  # the script writes {"versions": ..., "results": [run]}
    ep, ev = peer["s_per_epoch_median"], peer["eval_s_median"]
    lines.append(
        f"| RecBole 1.2.1 | {ep:.1f} | {ev:.1f} | {peer['peak_rss_mib'] / 1024:.2f} | "
        f"{peer['test'].get('recall@10', float('nan')):.4f} |\n\n"
    )
    lines.append(
        f"genrec/RecBole: {ep / g['epoch_s']:.2f}x faster per epoch (target >= 2x), "
        f"{ev / g['eval_s']:.2f}x faster in full evaluation (target >= 3x).\n"
    )
    return "".join(lines)


# ----------------------------------------------------------------------------- scale
def scale(threads: int) -> str:
    """One SASRec epoch on a synthetic set of ML-20M's shape (138,000 users, 20M events)."""
    import numpy as np
    import torch

    from genrec.data import Sequences
    from genrec.models import get_model_class

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    n_users, n_items, n_events = 138_000, 26_744, 20_000_000
    lengths = rng.zipf(1.6, n_users).clip(20, 9_000)
    lengths = (lengths * n_events / lengths.sum()).astype(np.int64).clip(20)
    items = rng.zipf(1.3, int(lengths.sum())) % n_items
    seqs = Sequences(np.concatenate([[0], np.cumsum(lengths)]), items, n_items)
    cls = get_model_class("sasrec")
    model = cls(max_len=200, loss="bce", train={"epochs": 1, "batch_size": 256})
    t0 = time.perf_counter()
    model.fit(seqs)
    sec = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return (
        f"{header('Sequential recommendation at scale: one SASRec epoch, ML-20M shape')}"
        f"Synthetic: {n_users:,} users, {n_items:,} items, {int(lengths.sum()):,} events "
        f"(Zipf lengths and items), max_len 200, BCE loss, batch 256: one epoch "
        f"{sec:.0f} s on {threads} torch thread(s), peak RSS {rss:.2f} GiB (target <= 8 GiB).\n"
    )


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--data", default="beauty")
    ap.add_argument("--models", default=",".join(ROWS))
    ap.add_argument("--speed", action="store_true", help="SASRec against RecBole: speed only")
    ap.add_argument("--speed-one", help=argparse.SUPPRESS)
    ap.add_argument("--speed-epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--peers-venv", default="/work/peers/venv")
    ap.add_argument("--scale", action="store_true")
    ap.add_argument("--out", default="sequential")
    ap.add_argument(
        "--keep",
        help="keep each finished stage (selection, each seed) in this folder; a later "
        "invocation with the same folder reuses them and runs only what is missing",
    )
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one)), default=float))
        return
    if args.speed_one:
        print(json.dumps(speed_one(json.loads(args.speed_one)), default=float))
        return
    if args.speed:
        text = speed(DATA["beauty"], Path(args.peers_venv), args.speed_epochs, args.threads)
        write_result(f"{args.out}-speed", text)
        return
    if args.scale:
        write_result(f"{args.out}-scale", scale(args.threads))
        return
    from genrec.models import MODELS

    seeds = [int(s) for s in args.seeds.split(",") if s]
    parts = [header("Sequential recommendation, Amazon Beauty and Sports, protocol seq-loo")]
    parts.append(
        "Full ranking over all items, each user's history masked; hyperparameters chosen on "
        "validation NDCG@10 (seed 0), then the chosen setting retrained with seeds "
        f"{', '.join(map(str, seeds))}: test mean ± sd. Configs: `configs/amazon-beauty/`.\n\n"
    )
    for data in args.data.split(","):
        path = DATA[data]
        parts.append(
            f"### {data}\n\n| model | " + " | ".join(SHOWN) + " | chosen | speed | anchor |\n"
        )
        parts.append("|" + "---|" * (len(SHOWN) + 4) + "\n")
        notes = []
        for name in [m for m in ROWS if m in args.models.split(",")]:
            file, settings = ROWS[name]
            config = CONFIGS / f"{file}.toml"
            model = name.split("-")[0] if name.startswith("sasrec") else name
            if not config.is_file() or model not in MODELS:
                notes.append(f"{name}: not run (no config or model not registered)")
                continue
            if args.keep:
                sel, fin = kept_row(Path(args.keep), data, name, config, path, seeds, settings)
                parts.append(row_cells(name, data, sel, fin) + "\n")
                continue
            with tempfile.TemporaryDirectory() as tmp:
                from genrec.config import load_toml

                if (load_toml(config).get("run") or {}).get("grid"):
                    print(f"[{data}] {name}: selection", flush=True)
                    sel = stage(config, path, Path(tmp) / "sel", None, {}, settings)
                else:  # nothing to choose: the seeds' runs are the only ones
                    sel = {"chosen": {}}
                chosen = sel.get("chosen") or {}
                print(f"[{data}] {name}: seeds {seeds} at {chosen}", flush=True)
                fin = (
                    stage(config, path, Path(tmp) / "fin", seeds, chosen, settings)
                    if "error" not in sel
                    else sel
                )
            parts.append(row_cells(name, data, sel, fin) + "\n")
        parts.append("\n" + "".join(f"- {n}\n" for n in notes) + "\n")
    write_result(args.out, "".join(parts))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
