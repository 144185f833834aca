"""The arithmetic of docs/scaling.md: parameters, optimizer state, activations and all-reduce
bytes per step of Mult-VAE, RecVAE, DiffRec, SASRec and TIGER at 1M, 10M and 100M items.

Counts follow the benchmark configurations (configs/): layer widths, batch sizes, sequence
lengths. Training state is fp32 with Adam: weights, gradients and two moments, 16 bytes a
trained parameter (+4 with weight averaging, not counted). Activations count only the terms
that grow with the catalogue (the B x I score matrices and their gradients); the rest is
small beside them at these sizes. The all-reduce is the dense fp32 gradient (4 bytes a
trained parameter); a ring all-reduce moves 2 (N - 1) / N times that through each GPU's link.

Usage: python benchmarks/scaling_arithmetic.py [--items 20108] [--check] (prints Markdown
tables; --check counts the parameters of genrec's own modules beside the formulas)
"""

from __future__ import annotations

import argparse
from pathlib import Path

GB = 1e9
H100_GB = 80.0
LINKS = {"NVLink (one node), ~300 GB/s": 300e9, "InfiniBand 400 Gb/s, ~45 GB/s": 45e9}


def models(n_items: int) -> dict[str, dict[str, float]]:
    """Trained parameters, frozen parameters, catalogue-sized activation floats per step."""
    I = float(n_items)  # noqa: E741 - the catalogue size, as in the papers
    out = {}
    # Mult-VAE [I-600-200-600-I], batch 500: logits, log-softmax, their gradient (B x I each)
    p = I * 600 + 600 + 600 * 400 + 400 + 200 * 600 + 600 + 600 * I + I
    out["Mult-VAE (I-600-200-600-I, B 500)"] = {"params": p, "frozen": 0, "act": 3 * 500 * I}
    # RecVAE 600/200, batch 500: 5 encoder layers, decoder 200 -> I; the composite prior keeps
    # a frozen copy of the encoder ("old posterior")
    enc = I * 600 + 600 + 4 * (600 * 600 + 600) + 600 * 400 + 400
    dec = 200 * I + I
    out["RecVAE (600/200, B 500)"] = {"params": enc + dec, "frozen": enc, "act": 3 * 500 * I}
    # DiffRec, denoiser dims 200/600: [I + 10 -> 600 -> 200 -> 600 -> I], batch 400: x_t,
    # noise, output, gradients
    p = (I + 10) * 600 + 600 + 600 * 200 + 200 + 200 * 600 + 600 + 600 * I + I
    out["DiffRec (dims 200/600, B 400)"] = {"params": p, "frozen": 0, "act": 5 * 400 * I}
    # SASRec (the paper's preset) d 50, 2 blocks (attention 4 d^2, feed-forward 2 d^2), L 50,
    # batch 128; with full-softmax cross-entropy over every position: (B L) x I logits,
    # softmax and gradient
    p = I * 50 + 50 * 50 + 2 * (6 * 50 * 50 + 6 * 50)
    out["SASRec-CE (d 50, L 50, B 128)"] = {"params": p, "frozen": 0, "act": 3 * 128 * 50 * I}
    # the paper's BCE loss (one sampled negative per position): no B x I term
    out["SASRec-BCE (d 50, L 50, B 128)"] = {"params": p, "frozen": 0, "act": 0.0}
    # TIGER: encoder-decoder over semantic-ID tokens (3 levels x 256 codes + user tokens): its
    # size does not grow with the catalogue; per item it keeps 4 code integers (and, to train
    # the RQ-VAE, a 768-float content embedding, streamed, not trained)
    attn, ffn = 4 * 128 * 384, 2 * 128 * 1024  # 6 heads of 64; decoder layers attend twice
    t5 = 4 * (attn + ffn) + 4 * (2 * attn + ffn) + (3 * 256 + 2000) * 128
    out["TIGER (4+4 layers, d 128)"] = {"params": t5, "frozen": 0, "act": 0.0, "per_item": 16}
    return out


def table(sizes: list[int]) -> str:
    rows = [
        "| model | items | trained params | train state (16 B/param) | catalogue-sized "
        "activations | per GPU under data parallelism | fits an 80 GB GPU | all-reduce per step "
        "| ring time per step, NVLink / IB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        for name, m in models(n).items():
            state = 16 * m["params"] + 4 * m["frozen"] + m.get("per_item", 0) * n
            act = 4 * m["act"]
            total = state + act
            ar = 4 * m["params"]
            ring = [2 * ar / bw for bw in LINKS.values()]  # 2(N-1)/N -> 2 for large N
            rows.append(
                f"| {name} | {n:,} | {m['params'] / 1e6:,.1f}M | {state / GB:,.1f} GB | "
                f"{act / GB:,.1f} GB | {total / GB:,.1f} GB | "
                f"{'yes' if total / GB < H100_GB else '**no**'} | {ar / GB:,.2f} GB | "
                f"{ring[0] * 1e3:,.0f} ms / {ring[1] * 1e3:,.0f} ms |"
            )
    return "\n".join(rows)


def _per_gpu(name: str, n: int) -> float:
    m = models(n)[name]
    return 16 * m["params"] + 4 * m["frozen"] + m.get("per_item", 0) * n + 4 * m["act"]


def largest() -> str:
    """The largest catalogue whose data-parallel replica fits an 80 GB GPU, per model."""
    rows = ["| model | largest catalogue under data parallelism (80 GB) |", "|---|---|"]
    for name in models(1):
        lo, hi = 1, 10**12
        while lo < hi:  # bisection on the (increasing) bytes per GPU
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if _per_gpu(name, mid) / GB < H100_GB else (lo, mid - 1)
        rows.append(f"| {name} | {lo:,} items |")
    return "\n".join(rows)


def check(n_items: int = 20_108) -> str:
    """The parameter counts above against genrec's own modules at ``n_items`` items."""
    import torch

    from genrec.config import build_config, load_toml
    from genrec.models import get_model_class

    root = Path(__file__).resolve().parent.parent
    counted = models(n_items)
    rows = [
        f"| model | formula, params | genrec's module at {n_items:,} items | ratio |",
        "|---|---|---|---|",
    ]
    for name, key, config in (
        ("mult-vae", "Mult-VAE (I-600-200-600-I, B 500)", None),
        ("recvae", "RecVAE (600/200, B 500)", None),
        ("diffrec", "DiffRec (dims 200/600, B 400)", None),
        ("sasrec", "SASRec-BCE (d 50, L 50, B 128)", "configs/amazon-beauty/sasrec-paper.toml"),
    ):
        cls = get_model_class(name)
        values = {}
        if config is not None:
            values = {
                k: v
                for k, v in load_toml(root / config).items()
                if k not in ("model", "dataset", "protocol", "run", "train")
            }
        model = cls(build_config(cls.config_class, values, where=name))
        module = model._build_module(n_items, torch.Generator().manual_seed(0))
        n = sum(p.numel() for p in module.parameters() if p.requires_grad)
        f = counted[key]["params"]
        rows.append(f"| {key} | {f:,.0f} | {n:,} | {n / f:.4f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, nargs="*", default=[1_000_000, 10_000_000, 100_000_000])
    ap.add_argument("--check", action="store_true", help="also count genrec's own modules")
    args = ap.parse_args()
    print(table(args.items))
    print()
    print(largest())
    if args.check:
        print()
        print(check())


if __name__ == "__main__":
    main()
