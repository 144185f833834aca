"""BPR-MF on the DiffRec ML-1M clean split, protocol ``diffrec``, beside EASE and the VAE family.

BPR-MF: each configuration of a small grid is trained with early stopping on validation
Recall@20 (DiffRec's selection criterion, checked every 5 epochs); the configuration with the
best validation Recall@20 is chosen and only then is its test score read. EASE (lambda chosen
on validation Recall@20 from a log grid) and Mult-VAE / Mult-DAE at their papers' settings
(best epoch on validation NDCG@20, their trainer's default) run in the same process on the
same split, so the numbers sit side by side; the tuned VAE-family numbers are in the VAE
section (``bench_vae.py``). Every fit is one ``genrec.runs`` run (run folders in a temporary
directory), which loads the data, builds the protocol and scores the model on validation and
test; a configuration's test score is read only for the one chosen on validation.

Usage: python benchmarks/bench_bpr.py [--data PATH] [--quick] [--threads 1] [--no-vae]
(wrap in ``flock /tmp/genrec-heavy.lock`` on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from _common import ML1M_CLEAN, header, run_model, write_result

from genrec.data import load_dataset
from genrec.protocols import ProtocolConfig, build_protocol

KS = (10, 20)
METRICS = ("recall", "ndcg")
SELECT = "recall@20"
BASE = {
    "n_factors": 128,
    "lr": 1e-3,
    "batch_size": 2048,
    "epochs": 300,
    "eval_every": 5,
    "patience": 4,
    "valid_metric": SELECT,
}
GRID = [{"l2": 1e-4}, {"l2": 1e-3}, {"l2": 3e-3}, {"l2": 1e-2}]
EASE_GRID = [200.0, 500.0, 1000.0, 2000.0]
ANCHOR = (
    "target >= RecBole 1.2.1 BPR on this split and machine: 0.1489 / 0.1004; DiffRec "
    "paper MF-BPR 0.1503 / 0.0966"
)


def _fmt(m: dict) -> str:
    return " | ".join(f"{m[f'{x}@{k}']:.4f}" for k in KS for x in METRICS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ML1M_CLEAN))
    ap.add_argument("--quick", action="store_true", help="2 epochs per fit (smoke test)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 is fastest on a shared 2-core machine)",
    )
    ap.add_argument("--no-vae", action="store_true", help="skip Mult-VAE / Mult-DAE")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    head = header("BPR-MF, ML-1M clean (DiffRec split), protocol diffrec")
    t_start = time.perf_counter()
    ds = load_dataset(args.data)
    p = build_protocol(ds, ProtocolConfig(name="diffrec"))

    with tempfile.TemporaryDirectory() as tmp:
        trials = []
        for k, over in enumerate(GRID):
            kw = {**BASE, **over, "device": "cpu"}
            if args.quick:
                kw.update(epochs=2, eval_every=1)
            res = run_model("bpr-mf", kw, args.data, Path(tmp) / f"bpr{k}")
            m = res.model
            trials.append(
                {
                    "config": over,
                    "model": m,
                    "valid": res.valid["metrics"],
                    "seconds": res.fit_seconds,
                    "test": res.test,
                    "epochs_run": len(m.valid_history_) * kw["eval_every"],
                }
            )
            print(
                f"bpr-mf {json.dumps(over)}: valid {SELECT} {trials[-1]['valid'][SELECT]:.4f} "
                f"at epoch {m.best_epoch_} ({res.fit_seconds:.0f} s)",
                flush=True,
            )
        best = max(trials, key=lambda t: t["valid"][SELECT])
        test = best["test"]  # read for the chosen configuration only
        eval_s = test["seconds"]

        ease_rows = []
        for l2 in EASE_GRID:
            res = run_model("ease", {"l2": l2}, args.data, Path(tmp) / f"ease-{l2:g}")
            ease_rows.append((l2, res.valid["metrics"], res.test["metrics"]))
        e_l2, e_valid, e_test = max(ease_rows, key=lambda r: r[1][SELECT])

        vae_rows = []
        if not args.no_vae:
            for name in ("mult-vae", "mult-dae"):
                train = {"patience": 20, "device": "cpu"}
                if args.quick:
                    train["epochs"] = 2
                res = run_model(name, {"train": train}, args.data, Path(tmp) / name)
                vae_rows.append(
                    (
                        name,
                        res.model.best_epoch_,
                        res.valid["metrics"],
                        res.test["metrics"],
                        res.fit_seconds,
                    )
                )
                print(f"{name}: test recall@20 {vae_rows[-1][3]['recall@20']:.4f}", flush=True)

    total = time.perf_counter() - t_start
    cols = " | ".join(
        f"{x} R@{k}".replace("recall R", "R").replace("ndcg R", "N") for k in KS for x in METRICS
    )
    out = head
    out += (
        f"Data: {ds.interactions.n_users:,} users x {ds.interactions.n_items:,} items; "
        f"train / valid / test {p.train.nnz:,} / {p.valid.truth.nnz:,} / "
        f"{p.test.truth.nnz:,} interactions. All items except the user's training (and, "
        f"for test, validation) items are ranked; every user is averaged, empty truth "
        f"counts 0. torch threads: {args.threads}. Whole run {total / 60:.1f} min.\n\n"
    )
    out += f"| model | valid R@20 | valid N@20 | test {cols} | anchor (test R@20 / N@20) |\n"
    out += "|---|---|---|---|---|---|---|---|\n"
    v, t = best["valid"], test["metrics"]
    out += (
        f"| **BPR-MF** {json.dumps({**BASE, **best['config']})}, best epoch "
        f"{best['model'].best_epoch_} | {v['recall@20']:.4f} | {v['ndcg@20']:.4f} | "
        f"{_fmt(t)} | {ANCHOR} |\n"
    )
    out += (
        f"| EASE (lambda={e_l2:g}, chosen on valid R@20) | {e_valid['recall@20']:.4f} | "
        f"{e_valid['ndcg@20']:.4f} | {_fmt(e_test)} | RecBole EASE 0.1836 / 0.1168 |\n"
    )
    for name, ep, vv, tt, _ in vae_rows:
        out += (
            f"| {name} (paper settings, best epoch {ep} on valid N@20) | "
            f"{vv['recall@20']:.4f} | {vv['ndcg@20']:.4f} | {_fmt(tt)} | tuned: see the VAE "
            f"section |\n"
        )
    every = 1 if args.quick else BASE["eval_every"]
    out += (
        f"\nBPR-MF chosen run: {best['seconds']:.0f} s of training with validation every "
        f"{every} epochs ({best['epochs_run']} epochs run); a full test "
        f"evaluation takes {eval_s:.2f} s. Mult-VAE / Mult-DAE training times: "
        + ", ".join(f"{n} {s:.0f} s" for n, _, _, _, s in vae_rows)
        + ".\n"
    )
    out += "\nBPR-MF configurations tried (selection on validation R@20 only; * = chosen):\n\n"
    out += "| config | best epoch | epochs run | valid R@20 | valid N@20 | seconds |\n"
    out += "|---|---|---|---|---|---|\n"
    for tr in trials:
        star = "*" if tr is best else ""
        out += (
            f"| {json.dumps(tr['config'])}{star} | {tr['model'].best_epoch_} | "
            f"{tr['epochs_run']} | {tr['valid']['recall@20']:.4f} | "
            f"{tr['valid']['ndcg@20']:.4f} | {tr['seconds']:.0f} |\n"
        )
    out += (
        "\nEASE grid: "
        + ", ".join(f"lambda={l2:g}: valid R@20 {vm['recall@20']:.4f}" for l2, vm, _ in ease_rows)
        + ".\n"
    )
    write_result("bpr", out)


if __name__ == "__main__":
    main()
