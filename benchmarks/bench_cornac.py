"""Cornac 3.0.1's VAECF beside genrec's Mult-VAE: the same network, batch and epochs on the
DiffRec ML-1M clean split, both scored by genrec's evaluator (protocol ``diffrec``).

Both models: [I-600-200-600-I], tanh, multinomial likelihood, batches of 500 users, Adam at
lr 1e-3, KL weight 0.2 from the first step (Cornac keeps beta fixed; genrec's Mult-VAE with
``total_anneal_steps=1``), ``--epochs`` epochs and no model selection: the last epoch is
scored. Seconds per epoch: genrec's median over the epochs of that run (no validation during
it); Cornac's (fit of all epochs - fit of one) / (epochs - 1), measured by
``peers_cornac.py`` in Cornac's own environment. Where the two differ: Cornac's VAECF feeds
the raw 0/1 rows (no L2 normalisation, no input dropout), keeps the users in the same order
every epoch, and takes log(softmax + 1e-10); genrec keeps the paper's normalised input with
dropout 0.5, shuffles, and uses log-softmax. This compares the two libraries' training loops;
genrec's Mult-VAE selected on validation is in the VAE section.

Usage: python benchmarks/bench_cornac.py [--data PATH] [--epochs 100]
[--peers-venv /tmp/peers/venv-cornac]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import ML1M_CLEAN, header, run_peer, write_result

from genrec.data import load_dataset
from genrec.evaluate import evaluate_ranking
from genrec.models import get_model_class
from genrec.models.base import Capabilities
from genrec.protocols import ProtocolConfig, build_protocol

KS = (10, 20)
METRICS = ("recall", "ndcg")
GENREC = {
    "total_anneal_steps": 1,
    "anneal_cap": 0.2,
    "hidden_dims": [600],
    "latent_dim": 200,
    "train": {"batch_size": 500, "lr": 1e-3, "seed": 0, "device": "cpu"},
}


class FixedScores:
    """Scores computed elsewhere, served to genrec's evaluator by user index."""

    capabilities = Capabilities(folds_in=False)

    def __init__(self, scores: np.ndarray):
        self.scores = torch.from_numpy(scores)

    def score(self, users, X_users):
        return self.scores[torch.from_numpy(np.asarray(users))]


def quality(model, pdata) -> dict[str, float]:
    out = {}
    for part in ("valid", "test"):
        m = evaluate_ranking(model, getattr(pdata, part), ks=KS, metrics=METRICS).metrics
        out.update({f"{part} {k}": v for k, v in m.items() if k.split("@")[0] in METRICS})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ML1M_CLEAN))
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument(
        "--peers-venv",
        default="/tmp/peers/venv-cornac",
        help="Cornac's side environment (see benchmarks/peers_cornac.py)",
    )
    args = ap.parse_args()
    t_all = time.perf_counter()
    text = header(
        "Cornac beside genrec: VAECF and Mult-VAE at the same size, ML-1M clean (DiffRec split)"
    )
    data = str(Path(args.data).resolve())
    pdata = build_protocol(load_dataset(data), ProtocolConfig(name="diffrec"))

    with tempfile.TemporaryDirectory() as tmp:
        scores = Path(tmp) / "scores.npy"
        print("Cornac VAECF ...", flush=True)
        peer = run_peer(
            Path(args.peers_venv),
            "peers_cornac.py",
            ["--data", data, "--epochs", str(args.epochs), "--scores", str(scores)],
            timeout=3 * 3600,
        )
        cornac_q = quality(FixedScores(np.load(scores)), pdata) if isinstance(peer, dict) else None

    print("genrec Mult-VAE ...", flush=True)
    model = get_model_class("mult-vae")(
        **{**GENREC, "train": {**GENREC["train"], "epochs": args.epochs}}
    )
    model.fit(pdata.train.matrix)
    genrec_s = statistics.median(r["train_seconds"] for r in model.history_)
    genrec_q = quality(model, pdata)

    cols = [
        "valid recall@20",
        "valid ndcg@20",
        "test recall@10",
        "test ndcg@10",
        "test recall@20",
        "test ndcg@20",
    ]
    text += (
        f"Both models: [I-600-200-600-I], tanh, multinomial likelihood, batch 500, Adam lr "
        f"1e-3, KL weight 0.2 from the first step, {args.epochs} epochs, the last one "
        f"scored (no selection), both scored by genrec's evaluator (all items ranked; "
        f"validation masks training items, test masks training and validation items; "
        f"every user averaged). Cornac's VAECF feeds raw 0/1 rows (no normalisation, no "
        f"input dropout) in a fixed user order; genrec's Mult-VAE the paper's normalised "
        f"rows with dropout 0.5, shuffled. torch threads: {torch.get_num_threads()} "
        f"(genrec); seconds per epoch exclude validation and set-up.\n\n"
    )
    text += (
        "| library | model | s / epoch | "
        + " | ".join(c.replace("recall", "R").replace("ndcg", "N") for c in cols)
        + " |\n"
    )
    text += "|---|---|---|" + "---|" * len(cols) + "\n"
    if isinstance(peer, dict):
        v = peer["versions"]
        text += (
            f"| Cornac {v['cornac']} (torch {v['torch']}, {v['torch_threads']} threads) | "
            f"VAECF | {peer['s_per_epoch']:.3f} | "
            + " | ".join(f"{cornac_q[c]:.4f}" for c in cols)
            + " |\n"
        )
    text += (
        f"| genrec | mult-vae {GENREC} | **{genrec_s:.3f}** | "
        + " | ".join(f"{genrec_q[c]:.4f}" for c in cols)
        + " |\n\n"
    )
    if isinstance(peer, dict):
        text += (
            f"Cornac: fit of {args.epochs} epochs {peer['fit_s']:.1f} s, of one epoch "
            f"{peer['fit_1_epoch_s']:.2f} s; its settings {peer['settings']}. genrec / "
            f"Cornac seconds per epoch: {genrec_s / peer['s_per_epoch']:.2f}.\n"
        )
    else:
        text += f"Cornac: {peer}\n"
    first = ", ".join(f"{r['train_seconds']:.2f}" for r in model.history_[:10])
    text += f"genrec's first epochs: {first}, ... (median of all {len(model.history_)}).\n"
    text += f"\nWhole script {(time.perf_counter() - t_all) / 60:.1f} min.\n"
    write_result("vae-cornac", text)


if __name__ == "__main__":
    main()
