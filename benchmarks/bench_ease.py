"""EASE and Popularity on the DiffRec ML-1M clean split, protocol ``diffrec``.

lambda is chosen on validation Recall@20 (DiffRec's own selection criterion) over a fixed
1-2-5 log grid; the test numbers are those of the chosen lambda. Each grid point, and
Popularity, is one ``genrec.runs`` run (run folders in a temporary directory), which scores
it on validation and test. For transparency the table of
every grid point is printed too, with what selecting on validation NDCG@20 would have given.
Time: EASE fit plus one full test evaluation (all 5,949 users x 2,810 items, masks, top-20,
metrics), median of several repeats.

Usage: python benchmarks/bench_ease.py [--data PATH] [--repeats 5] [--peers-venv DIR]
(RecBole's EASE is timed beside it, at the chosen lambda, when its side environment exists.)
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

from _common import ML1M_CLEAN, header, run_model, run_recbole, write_result

from genrec.data import load_dataset
from genrec.evaluate import evaluate_ranking
from genrec.models import EASE
from genrec.models.ease import ease_memory_bytes
from genrec.protocols import ProtocolConfig, build_protocol

GRID = [50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]
KS = (10, 20)
METRICS = ("recall", "ndcg")


def recbole_cell(peers: dict | str) -> str:
    """RecBole's EASE seconds (and its test scores at the same lambda) from this run."""
    if isinstance(peers, str):
        return f"RecBole 1.2.1: {peers}"
    parts = []
    for r in peers["results"]:
        parts.append(
            f"fit {r['fit_s_median']:.2f} s + evaluation {r['eval_s_median']:.2f} s at "
            f"evaluation batch {r['eval_batch_size']:,}"
        )
    t = peers["results"][0]["test"]
    return (
        f"RecBole 1.2.1 EASE at the same lambda, measured in this run (median of "
        f"{len(peers['results'][0]['fit_s'])}): " + "; ".join(parts) + f"; its test R@20 / "
        f"N@20 {t['recall@20']:.4f} / {t['ndcg@20']:.4f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ML1M_CLEAN))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--peers-venv",
        default="/tmp/peers/venv",
        help="RecBole's side environment (benchmarks/peers_recbole.py)",
    )
    args = ap.parse_args()
    head = header("EASE and Popularity, ML-1M clean (DiffRec split), protocol diffrec")

    t0 = time.perf_counter()
    ds = load_dataset(args.data)
    pdata = build_protocol(ds, ProtocolConfig(name="diffrec"))
    load_s = time.perf_counter() - t0
    X = pdata.train.matrix

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for l2 in GRID:
            res = run_model("ease", {"l2": l2}, args.data, Path(tmp) / f"ease-{l2:g}")
            v, t = res.valid["metrics"], res.test["metrics"]
            rows.append((l2, v, t))
            print(f"l2={l2:g} valid recall@20={v['recall@20']:.4f} ndcg@20={v['ndcg@20']:.4f}")
            del res  # the 2,810 x 2,810 weights of each point are not kept
        pop = run_model("popularity", {}, args.data, Path(tmp) / "popularity")
    pv, pt = pop.valid["metrics"], pop.test["metrics"]
    best_l2, best_v, _ = max(rows, key=lambda r: r[1]["recall@20"])
    alt_l2, _, alt_t = max(rows, key=lambda r: r[1]["ndcg@20"])

    fit_s, eval_s, total_s = [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model = EASE(l2=best_l2).fit(X)
        t1 = time.perf_counter()
        test = evaluate_ranking(model, pdata.test, ks=KS, metrics=METRICS)
        t2 = time.perf_counter()
        fit_s.append(t1 - t0)
        eval_s.append(t2 - t1)
        total_s.append(t2 - t0)
    t = test.metrics
    # RecBole's EASE at the same lambda, on the same data and machine, in this run
    peers = run_recbole(
        Path(args.peers_venv),
        str(Path(args.data).resolve()),
        ["--models", "EASE", "--reg-weight", str(best_l2), "--repeats", "3"],
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    med = statistics.median
    out = head
    out += (
        f"Data: {ds.interactions.n_users:,} users x {ds.interactions.n_items:,} items; "
        f"train / valid / test {pdata.train.nnz:,} / {pdata.valid.truth.nnz:,} / "
        f"{pdata.test.truth.nnz:,} interactions (loaded and split in {load_s:.2f} s).\n\n"
    )
    out += "| model | valid R@20 | valid N@20 | test R@10 | test R@20 | test N@10 | test N@20 | anchor (test R@20 / N@20) |\n"
    out += "|---|---|---|---|---|---|---|---|\n"
    out += (
        f"| EASE (lambda={best_l2:g}, chosen on valid R@20) | {best_v['recall@20']:.4f} | "
        f"{best_v['ndcg@20']:.4f} | {t['recall@10']:.4f} | {t['recall@20']:.4f} | "
        f"{t['ndcg@10']:.4f} | {t['ndcg@20']:.4f} | target >= 0.180 / 0.115; RecBole EASE "
        f"tuned 0.1836 / 0.1168; DiffRec paper best 0.1787 / 0.1148 |\n"
    )
    out += (
        f"| Popularity | {pv['recall@20']:.4f} | {pv['ndcg@20']:.4f} | {pt['recall@10']:.4f} | "
        f"{pt['recall@20']:.4f} | {pt['ndcg@10']:.4f} | {pt['ndcg@20']:.4f} | - |\n\n"
    )
    out += (
        f"Speed, EASE lambda={best_l2:g}, median of {args.repeats}: fit {med(fit_s):.3f} s + "
        f"full test evaluation {med(eval_s):.3f} s = **{med(total_s):.3f} s** (target < 2 s; "
        f"{recbole_cell(peers)}). All runs: {', '.join(f'{x:.2f}' for x in total_s)} s. "
        f"Peak RSS of the whole script {rss:.0f} MiB; EASE's own estimate for "
        f"{X.shape[1]:,} items: {ease_memory_bytes(X.shape[1]) / 2**30:.2f} GiB.\n\n"
    )
    out += (
        "Every grid point (selection uses the validation columns only; test shown for "
        "transparency):\n\n| lambda | valid R@20 | valid N@20 | test R@20 | test N@20 |\n"
        "|---|---|---|---|---|\n"
    )
    for l2, v, tt in rows:
        out += (
            f"| {l2:g} | {v['recall@20']:.4f} | {v['ndcg@20']:.4f} | {tt['recall@20']:.4f} | "
            f"{tt['ndcg@20']:.4f} |\n"
        )
    out += (
        f"\nSelecting on validation NDCG@20 instead would choose lambda={alt_l2:g}: test "
        f"R@20 {alt_t['recall@20']:.4f} / N@20 {alt_t['ndcg@20']:.4f}.\n"
    )
    write_result("ease", out)


if __name__ == "__main__":
    main()
