"""SASRec on Amazon Beauty (protocol seq-loo): train a run config, select on validation, read
the test split once; seconds per epoch and peak RSS.

Usage: python benchmarks/bench_sasrec.py configs/amazon-beauty/sasrec-cpu.toml
       [--set loss=ce --set train.epochs=3 ...] [--threads 1] [--out FILE.json]
Prints (and with --out writes) one JSON object: the settings, best epoch, seconds per
training epoch (median), validation and test R/N@5,10,20 and MRR, peak RSS in MiB.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from genrec.config import build_config, parse_overrides
from genrec.data import load_dataset
from genrec.evaluate import evaluate_ranking
from genrec.protocols import build_protocol
from genrec.runs import RunSpec

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    spec = RunSpec.from_toml(args.config)
    cls = spec.model_class
    config = build_config(cls.config_class, parse_overrides(args.overrides), base=spec.config)
    t0 = time.perf_counter()
    pdata = build_protocol(load_dataset(ROOT / spec.dataset), spec.protocol)
    t_data = time.perf_counter() - t0
    model = cls(config).fit(pdata.train_sequences, valid=pdata.valid)
    t_fit = time.perf_counter() - t0 - t_data
    metrics = ("recall", "ndcg", "mrr")
    test = evaluate_ranking(model, pdata.test, ks=pdata.ks, metrics=metrics)
    hist = model.history_ or []
    best = next((r for r in hist if r["epoch"] == model.best_epoch_), hist[-1] if hist else {})
    out = {
        "config": str(args.config),
        "overrides": args.overrides,
        "model_config": asdict(config),
        "params": sum(p.numel() for p in model.module_.parameters()),
        "best_epoch": model.best_epoch_,
        "epochs_run": len(hist),
        "seconds_per_epoch": statistics.median(r["train_seconds"] for r in hist),
        "fit_seconds": t_fit,
        "valid": best.get("valid", {}),
        "valid_seconds": statistics.median(r["eval_seconds"] for r in hist if "eval_seconds" in r)
        if any("eval_seconds" in r for r in hist)
        else None,
        "test": {k: float(v) for k, v in test.metrics.items()},
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    text = json.dumps(out, indent=1, default=str)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return out


if __name__ == "__main__":
    sys.exit(main() and 0)
