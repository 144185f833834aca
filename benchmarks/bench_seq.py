"""Train a sequential model from a run config on its data set (protocol seq-loo), select on
validation, then read the test split once; print the numbers as JSON.

    python benchmarks/bench_seq.py configs/amazon-beauty/hstu-cpu.toml
    python benchmarks/bench_seq.py configs/amazon-beauty/hstu-cpu.toml --set n_blocks=1 \\
        --valid-only                       # a setting tried on validation, test not read

Reports the test metrics (recall, ndcg at the protocol's ks, mrr), the best epoch, seconds
per epoch (mean of the epochs' training time), the validation curve and the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main(argv: list[str] | None = None) -> dict:
    from genrec.config import load_toml
    from genrec.data import load_dataset
    from genrec.evaluate import evaluate_ranking
    from genrec.models import get_model_class
    from genrec.protocols import ProtocolConfig, build_protocol

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--set", action="append", default=[], help="key=value over the config")
    ap.add_argument("--valid-only", action="store_true", help="do not evaluate the test split")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    raw = load_toml(args.config)
    name, dataset = raw.pop("model"), raw.pop("dataset")
    protocol = raw.pop("protocol", {"name": "seq-loo"})
    raw.pop("run", None)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    model = get_model_class(name)(**raw, **{k: _value(v) for k, v in overrides.items()})

    t0 = time.perf_counter()
    ds = load_dataset(str((ROOT / dataset).resolve()))
    pdata = build_protocol(ds, ProtocolConfig(**protocol))
    t_data = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.fit(pdata.train_sequences, valid=pdata.valid)
    t_fit = time.perf_counter() - t0
    hist = model.history_ or []
    train_s = [h["train_seconds"] for h in hist if "train_seconds" in h]
    select = model.config.train.select_metric
    out = {
        "config": str(args.config),
        "overrides": overrides,
        "model": repr(model.config),
        "parameters": sum(p.numel() for p in model.module_.parameters()),
        "best_epoch": model.best_epoch_,
        "epochs_run": len(hist),
        "seconds_per_epoch": sum(train_s) / max(len(train_s), 1),
        "fit_seconds": round(t_fit, 1),
        "data_seconds": round(t_data, 1),
        "valid_curve": [round(h["valid"][select], 4) for h in hist if "valid" in h],
    }
    if not args.valid_only:
        res = evaluate_ranking(model, pdata.test, ks=pdata.ks, metrics=("recall", "ndcg", "mrr"))
        out["test"] = {k: round(float(v), 4) for k, v in res.metrics.items()}
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
