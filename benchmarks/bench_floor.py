"""The matrix-product floor of the VAE speed targets on this machine.

Each timed workload of bench_vae (a Mult-VAE training epoch, a Mult-VAE validation pass, a
RecVAE training epoch; ML-1M clean, DiffRec split, fp32, the papers' networks) is run under
``torch.profiler`` with shapes recorded. Every dense matrix product it performs
(``aten::mm``, ``aten::addmm``) is listed with its shapes, and:

* its FLOPs (2 M K N) are summed: the arithmetic the workload cannot avoid;
* its time inside the run (profiler) is summed: what the products cost in place;
* each distinct shape is then timed alone, in the best of the four operand layouts
  (each operand contiguous or transposed), the fastest of its repeats in a few rounds over
  all shapes: the seconds the workload's products need even at their best layout on this
  machine's BLAS.

A training epoch is the difference of a 4-epoch and a 1-epoch fit, divided by 3 (so the first
epoch's one-off work, such as RecVAE's first prior posterior, is left out). The same
workloads timed without the profiler give the measured seconds beside.

The floor says how much of a target is left for everything that is not a matrix product
(sparse input, softmax, activations, optimizer, top-k). It is a floor for this code's products
on this CPU's BLAS, not for the hardware: a faster GEMM would lower it.

Usage: python benchmarks/bench_floor.py [--data DIR] [--repeats 15]
Writes results/vae-floor.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from _common import ML1M_CLEAN, header, write_result
from torch.profiler import ProfilerActivity, profile

from genrec.data import load_dataset
from genrec.evaluate import evaluate_ranking
from genrec.models import get_model_class
from genrec.protocols import ProtocolConfig, build_protocol

GEMMS = {"aten::mm", "aten::addmm"}
EPOCHS = 3  # profiled training epochs (after the first)
PASSES = 5  # validation passes, profiled and timed
ROUNDS = 3  # profiled runs of each workload (median)
TARGETS = {"mult-vae epoch": 0.8, "mult-vae valid pass": 0.3, "recvae epoch": 2.5}


def products(prof) -> tuple[Counter, float]:
    """(Counter of (M, K, N) over the run's dense products, their seconds in the run)."""
    shapes: Counter = Counter()
    seconds = 0.0
    for ev in prof.events():
        if ev.name not in GEMMS:
            continue
        a, b = ev.input_shapes[1:3] if ev.name == "aten::addmm" else ev.input_shapes[:2]
        shapes[(a[0], a[1], b[1])] += 1
        seconds += ev.cpu_time_total / 1e6
    return shapes, seconds


def best_layout_seconds(m: int, k: int, n: int, repeats: int) -> float:
    """Seconds of (M x K) @ (K x N) in its fastest operand layout, timed alone: the
    fastest of ``repeats`` calls (a floor: the machine is shared, noise only adds time)."""
    g = torch.Generator().manual_seed(0)
    best = float("inf")
    for a_t in (False, True):
        for b_t in (False, True):
            a = torch.randn(k, m, generator=g).T if a_t else torch.randn(m, k, generator=g)
            b = torch.randn(n, k, generator=g).T if b_t else torch.randn(k, n, generator=g)
            for _ in range(3):
                torch.mm(a, b)
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                torch.mm(a, b)
                ts.append(time.perf_counter() - t0)
            best = min(best, min(ts))
    return best


def profiled(fn):
    """(product shapes, their seconds, what ``fn`` returned), ``fn`` run under the profiler."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        out = fn()
    return (*products(prof), out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ML1M_CLEAN))
    ap.add_argument("--repeats", type=int, default=15, help="timings per shape and layout")
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        sys.exit(f"bench_floor: data folder {args.data} not found; pass --data DIR")
    if args.repeats < 1:
        sys.exit("bench_floor: --repeats must be >= 1")
    t_start = time.perf_counter()
    pdata = build_protocol(load_dataset(args.data), ProtocolConfig(name="diffrec"))
    X = pdata.train.matrix

    def fit(name: str, epochs: int):
        return get_model_class(name)(train={"epochs": epochs, "device": "cpu", "seed": 0}).fit(X)

    work: dict[str, dict] = {}
    for name in ("mult-vae", "recvae"):
        fit(name, 1)  # warm-up
        diffs, shares = [], []
        for _ in range(ROUNDS):  # the machine is shared: the median of a few rounds
            s1, t1, _ = profiled(lambda n=name: fit(n, 1))
            s4, t4, m4 = profiled(lambda n=name: fit(n, 1 + EPOCHS))
            diffs.append((t4 - t1) / EPOCHS)
            shares.append(
                diffs[-1] / statistics.median([r["train_seconds"] for r in m4.history_[1:]])
            )
        shapes = Counter({k: (s4[k] - s1[k]) / EPOCHS for k in s4 if s4[k] != s1[k]})
        in_place, share = statistics.median(diffs), statistics.median(shares)
        plain = fit(name, 1 + EPOCHS)  # timed without the profiler
        measured = [r["train_seconds"] for r in plain.history_[1:]]
        work[f"{name} epoch"] = {
            "shapes": shapes,
            "in_place": in_place,
            "share": share,
            "measured": measured,
        }
        print(
            f"{name}: {len(shapes)} product shapes; epochs "
            + ", ".join(f"{s:.2f}" for s in measured),
            flush=True,
        )
        if name == "mult-vae":
            evaluate_ranking(plain, pdata.valid)  # warm-up

            def passes(m=plain) -> list[float]:
                out = []
                for _ in range(PASSES):
                    t0 = time.perf_counter()
                    evaluate_ranking(m, pdata.valid)
                    out.append(time.perf_counter() - t0)
                return out

            rounds = [profiled(passes) for _ in range(ROUNDS)]
            shapes = rounds[0][0]
            work["mult-vae valid pass"] = {
                "shapes": Counter({k: c / PASSES for k, c in shapes.items()}),
                "in_place": statistics.median([t / PASSES for _, t, _ in rounds]),
                "share": statistics.median([t / sum(ps) for _, t, ps in rounds]),
                "measured": passes(),
            }

    # every distinct shape timed alone, round-robin over ROUNDS rounds, fastest kept: a slow
    # spell of the shared machine then hits every shape a little rather than some shapes fully
    cache: dict[tuple[int, int, int], float] = {}
    for _ in range(ROUNDS):
        for shape in {s for w in work.values() for s in w["shapes"]}:
            t = best_layout_seconds(*shape, args.repeats)
            cache[shape] = min(cache.get(shape, t), t)
    rows, detail = [], []
    sq = 2048
    square = 2 * sq**3 / best_layout_seconds(sq, sq, sq, 5) / 1e9
    for what, w in work.items():
        flop = sum(2 * m * k * n * c for (m, k, n), c in w["shapes"].items())
        alone = 0.0
        for shape, c in sorted(w["shapes"].items(), key=lambda kv: -kv[1] * kv[0][0]):
            alone += c * cache[shape]
            detail.append(
                f"| {what} | {shape[0]} x {shape[1]} x {shape[2]} | {c:g} | "
                f"{2 * shape[0] * shape[1] * shape[2] / cache[shape] / 1e9:.0f} |"
            )
        meas = statistics.median(w["measured"])
        target = TARGETS[what]
        rows.append(
            f"| {what} | {meas:.3f} | {flop / 1e9:.1f} | {w['in_place']:.3f} "
            f"({flop / w['in_place'] / 1e9:.0f}) | **{alone:.3f}** ({flop / alone / 1e9:.0f}) "
            f"| {meas * (1 - w['share']):.3f} | {target} | {target - alone:.3f} |"
        )
        print(rows[-1], flush=True)

    text = header(
        "The matrix-product floor of the VAE speed targets, ML-1M clean (DiffRec split)"
    ) + (
        "What the products alone cost in each timed workload (fp32, the papers' networks, "
        "batches of 500 users, validation batches of 2,048). *GFLOP*: the workload's dense "
        "matrix products (2 M K N summed over the aten::mm / aten::addmm calls the profiler "
        "recorded; a training epoch is (4-epoch fit - 1-epoch fit) / 3, a validation pass the "
        f"mean of {PASSES}). *In place*: their seconds inside the profiled run (median of "
        f"{ROUNDS} runs). *Alone, best layout*: each distinct product shape timed by itself in "
        f"the fastest of its four operand layouts (fastest of {args.repeats} calls in each of "
        f"{ROUNDS} rounds over all shapes), times its count: the products' floor on this CPU's "
        "BLAS. *Not products*: the measured seconds times the share of the profiled run spent "
        "outside the products. *Left*: the target minus the floor, the budget for all other "
        "work (sparse input layer, softmax, activations, layer norm, optimizer, masking, "
        "top-k). Rates in GFLOP/s in brackets; for scale, one square "
        f"{sq} x {sq} x {sq} product ran at {square:.0f} GFLOP/s. Whole script "
        f"{(time.perf_counter() - t_start) / 60:.1f} min.\n\n"
        "| workload | measured s (median) | GFLOP | products in place s | products alone, "
        "best layout s | not products s | target s | left for the rest s |\n"
        "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "Product shapes (M x K x N), calls per workload and their best rate alone "
        "(GFLOP/s):\n\n| workload | shape | calls | GFLOP/s |\n|---|---|---|---|\n"
        + "\n".join(detail)
        + "\n"
    )
    write_result("vae-floor", text)


if __name__ == "__main__":
    main()
