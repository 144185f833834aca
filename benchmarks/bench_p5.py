"""P5 on Amazon Beauty (protocol seq-loo): the leakage audit of item indexings, and the
multi-task model's sequential and direct numbers.

``--part audit``: the rule "the 5 numbers above the history's largest" scored on the test
targets of seq-loo (the input: training + validation items) under each indexing: the file's
own numbers (the shipped files number items by first appearance), P5's sequential numbering
of the whole file (what P5 used), genrec's sequential numbering of the training split (what
``index = "sequential"`` builds in fit), random numbers (the default) and the collaborative
indexing's tuples read as numbers; beside the chance level (5 / items). Nothing is trained.

``--part train``: one P5 config (``--config``, default ``configs/amazon-beauty/p5-cpu.toml``)
trained in its own process (so its peak RSS is its own) and read on test once, at the epoch
chosen on validation NDCG@10: full-catalogue Recall / NDCG at 5 and 10 from the sequential
prompt (constrained beam search), and the direct task's HR@1/5/10: every test user's target
among 99 items drawn uniformly from those outside their whole history (seeded), ranked by
``P5.candidate_scores``. Cost: seconds per epoch (median), prompt tokens per second,
evaluation seconds, peak RSS, parameters. Beside: the SASRec and TIGER rows of the earlier
sections on the same split and P5's released checkpoint on the leaky indexing.

Usage: python benchmarks/bench_p5.py --part audit
       python benchmarks/bench_p5.py --part train [--config PATH] [--data TXT]
           [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, header, train_log, write_result

BEAUTY = ROOT.parent / "shared" / "data" / "amazon-5core" / "Beauty.txt"
CONFIG = ROOT / "configs" / "amazon-beauty" / "p5-cpu.toml"
DIRECT_CANDIDATES = 100
PUBLISHED = (
    "targets: HR@10 >= 0.049 with random IDs (pretrained T5-small, random IDs, the "
    "\"How to Index\" logs), >= 0.0648 with semantic IDs (TIGER's level); P5's released "
    "checkpoint on the leaky sequential indexing: HR@10 0.0646-0.0659 (leaky)"
)
BESIDE = (
    "same split, earlier sections: SASRec (CE, CPU preset) R@10 0.0934 / N@10 0.0553; TIGER "
    "(CPU preset, 26 epochs) R@10 0.0487 / N@10 0.0253"
)


def _split(path: Path = BEAUTY):
    """(the data set, the protocol's data, the test task, its targets) of seq-loo."""
    import numpy as np

    from genrec.data import load_dataset
    from genrec.protocols import ProtocolConfig, build_protocol

    ds = load_dataset(path)
    pdata = build_protocol(ds, ProtocolConfig(name="seq-loo"))
    test = pdata.test
    assert test.sequences is not None
    targets = np.asarray(test.truth.argmax(1)).ravel()
    return ds, pdata, test, targets


def audit() -> str:
    import numpy as np

    from genrec.models.item_index import (
        collaborative_index,
        next_number_audit,
        random_index,
        sequential_index,
    )

    ds, pdata, test, targets = _split()
    seqs = ds.sequences
    train = pdata.train_sequences
    inputs = test.sequences
    raw = np.asarray(ds.interactions.item_ids).astype(np.int64)
    rows = [
        ("the file's own numbers (first appearance)", raw),
        ("P5's sequential numbering of the whole file", sequential_index(seqs).numbers()),
        ("sequential numbering of the training split", sequential_index(train).numbers()),
        ("random numbers (genrec's default)", random_index(seqs.n_items, 0).numbers()),
        ("collaborative tuples as numbers", collaborative_index(train).numbers()),
    ]
    lines = [
        "| indexing | hit rate of the rule | chance (5 / items) | ratio |",
        "|---|---|---|---|",
    ]
    for name, numbers in rows:
        hit, chance = next_number_audit(inputs, targets, numbers, k=5)
        lines.append(f"| {name} | {hit:.4f} | {chance:.5f} | {hit / chance:.1f}x |")
    return (
        header("P5 on Amazon Beauty: the leakage audit of item indexings")
        + f"Beauty, protocol seq-loo: {len(targets):,} test users over {seqs.n_items:,} items. "
        "The rule recommends the 5 items whose numbers are just above the largest number in "
        "the user's test input; a hit is the test item among them. Random numbering is what "
        '`index = "random"` (the default) trains with.\n\n' + "\n".join(lines) + "\n"
    )


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def train_one(args: dict) -> dict:
    """The ``--one`` child: train one config, read test once, the direct task's hit rates."""
    import numpy as np

    from genrec.config import load_toml
    from genrec.runs import RunSpec, train_run
    from genrec.runs.spec import merge

    values = merge(load_toml(args["config"]), {"dataset": args["data"], **args["settings"]})
    values["item_features"] = [  # the config's paths are from the project root
        s if s == "interactions" or Path(s).is_absolute() else str((ROOT / s).resolve())
        for s in values.get("item_features", [])
    ]
    spec = RunSpec.from_mapping(values, where=args["config"], out=Path(args["out"]), force=True)
    t0 = time.perf_counter()
    res = train_run(spec)
    log = train_log(res)
    m = res.model
    _, pdata, test, targets = _split(Path(args["data"]))
    inputs = test.sequences
    rng = np.random.default_rng(0)
    cand = np.zeros((len(targets), DIRECT_CANDIDATES), np.int64)
    for b in range(len(targets)):  # 99 items outside the whole history, the target first
        seen = set(inputs.row(b).tolist()) | {int(targets[b])}
        pool = rng.choice(inputs.n_items, DIRECT_CANDIDATES * 2, replace=False)
        cand[b, 1:] = [i for i in pool if i not in seen][: DIRECT_CANDIDATES - 1]
        cand[b, 0] = targets[b]
    t1 = time.perf_counter()
    scores = m.candidate_scores(test.users, cand)
    direct_s = time.perf_counter() - t1
    rank = (scores[:, 1:] > scores[:, :1]).sum(1)  # items above the target
    epochs = [e for e in log if "train_seconds" in e]
    import torch

    from genrec.train import BatchContext

    ctx = BatchContext(torch.Generator().manual_seed(0), 256, torch.device("cpu"), 0)
    tokens = sum(int((b.inputs[:, 0] > 0).sum()) for b in m.batches(pdata.train_sequences, ctx))
    return {
        "test": res.test["metrics"],
        "valid": res.valid["metrics"],
        "eval_s": res.test.get("seconds"),
        "direct": {f"hr@{k}": float((rank < k).mean()) for k in (1, 5, 10)},
        "direct_s": direct_s,
        "epoch_s": statistics.median(e["train_seconds"] for e in epochs) if epochs else None,
        "epochs": len(epochs),
        "losses": [e["loss"] for e in epochs if "loss" in e],
        "best_epoch": m.best_epoch_,
        "wall_s": time.perf_counter() - t0,
        "peak_gib": _peak_gib(),
        "params": sum(p.numel() for p in m.module_.parameters()),
        "index": m.config.index,
        "prompt_tokens_per_epoch": tokens,
    }


def train(config: Path, data: Path, settings: dict) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        payload = {
            "config": str(config),
            "data": str(data),
            "out": str(Path(tmp) / "run"),
            "settings": settings,
        }
        cmd = [sys.executable, __file__, "--one", json.dumps(payload)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"bench_p5: the training run failed: {tail}")
    g = json.loads(proc.stdout.strip().splitlines()[-1])
    t, d = g["test"], g["direct"]
    tok_s = g["prompt_tokens_per_epoch"] / g["epoch_s"] if g["epoch_s"] else float("nan")
    row = (
        f"| {g['index']} | {t['recall@5']:.4f} | {t['ndcg@5']:.4f} | {t['recall@10']:.4f} | "
        f"{t['ndcg@10']:.4f} | {d['hr@1']:.4f} / {d['hr@5']:.4f} / {d['hr@10']:.4f} | "
        f"{g['best_epoch']} of {g['epochs']} | {g['epoch_s']:.0f} s/epoch, "
        f"{tok_s:,.0f} prompt tokens/s, eval {g['eval_s'] or 0:.1f} s (direct {g['direct_s']:.0f} s), "
        f"peak {g['peak_gib']:.2f} GiB, {g['params'] / 1e6:.2f}M parameters |"
    )
    losses = ", ".join(f"{x:.3f}" for x in g.get("losses", []))
    rel = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config
    return (
        header("P5 on Amazon Beauty: one multi-task model, protocol seq-loo")
        + f"Data: `{data.name}`. Config: `{rel}` (settings over it: {settings or 'none'}). "
        "Sequential: the "
        "held-out sequential prompt, full catalogue, history masked, constrained beam search "
        "(beam 20). Direct: the held-out direct prompt listing the test item among 99 items "
        "outside the user's history, HR@1 / 5 / 10. The epoch chosen on validation NDCG@10; "
        "test read once.\n\n"
        "| indexing | R@5 | N@5 | R@10 | N@10 | direct HR@1 / 5 / 10 | best epoch | cost |\n"
        "|---|---|---|---|---|---|---|---|\n"
        + row
        + f"\n\nTraining loss by epoch (mean cross-entropy of an answer token): {losses}.\n\n"
        + f"{PUBLISHED}. {BESIDE}.\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--part", choices=["audit", "train"], default="audit")
    ap.add_argument("--config", default=str(CONFIG))
    ap.add_argument("--data", default=str(BEAUTY), help="an Amazon 5-core .txt (default Beauty)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(train_one(json.loads(args.one))))
        return
    if args.part == "audit":
        text = audit()
    else:
        settings: dict = {}
        for item in args.set:
            key, _, raw = item.partition("=")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            *path, last = key.split(".")
            node = settings
            for p in path:
                node = node.setdefault(p, {})
            node[last] = value
        text = train(Path(args.config).resolve(), Path(args.data).resolve(), settings)
    print(text)
    write_result(args.out or f"p5-{args.part}", text)


if __name__ == "__main__":
    main()
