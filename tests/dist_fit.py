"""One process of a small data-parallel fit (tests/test_distributed.py starts 1 or 2 of it).

Usage: python tests/dist_fit.py MODEL[,MODEL...] BATCH OUT [--keyed] [--run-dir D] [--resume]
         [--epochs N] [--die-at-step S --die-rank R]

The process group comes from the environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, as
torchrun sets them; none: one process). Rank 0 writes OUT/weights.npz and OUT/metrics.json
(the validation history and the test metrics of the fitted model); with several models,
fitted one after the other in the same group, into OUT/MODEL/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch


def data(seed: int = 0, n_users: int = 121, n_items: int = 50):
    """A low-rank implicit matrix, split per user into train / valid / test entries."""
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(n_users, 4))
    V = rng.normal(size=(n_items, 4))
    p = 1 / (1 + np.exp(-(U @ V.T) + 1.5))
    X = (rng.random((n_users, n_items)) < p).astype(np.float32)
    X[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0  # nobody empty
    part = rng.random(X.shape)
    train = sp.csr_matrix(X * (part < 0.7))
    valid = sp.csr_matrix(X * ((part >= 0.7) & (part < 0.85)))
    test = sp.csr_matrix(X * (part >= 0.85))
    return train, valid, test


HSTU = dict(dim=8, n_blocks=1, n_heads=2, qk_dim=4, v_dim=4, max_len=8, n_negatives=6)
SEQUENCE_MODELS = {  # small networks with every kind of noise each model draws
    "sasrec": ("sasrec", dict(dim=8, max_len=8, dropout=0.3, attn_dropout=0.3, loss="bce")),
    "sasrec-ss": (
        "sasrec",
        dict(
            dim=8, max_len=8, dropout=0.3, attn_dropout=0.3, loss="sampled_softmax", n_negatives=5
        ),
    ),
    "gru4rec": (
        "gru4rec",
        dict(hidden_dim=8, embedding_dim=8, max_len=8, dropout_embed=0.3, dropout_hidden=0.3),
    ),
    "bert4rec": (
        "bert4rec",
        dict(hidden_dim=8, n_heads=2, ffn_dim=16, max_len=8, dropout=0.3, attention_dropout=0.3),
    ),
    "hstu": ("hstu", {**HSTU, "n_blocks": 2, "shared_negatives": True, "time_buckets": 0}),
    "hstu-pp": ("hstu", {**HSTU, "time_buckets": 0}),  # negatives per position
    "tiger": (
        "tiger",
        dict(
            dim=8,
            n_layers=1,
            n_heads=2,
            head_dim=4,
            ffn_dim=16,
            max_items=4,
            user_buckets=8,
            no_user_rate=0.3,
            beam=5,
            tokenizer="kmeans",
            dropout=0.3,
            semantic={"n_levels": 2, "n_codes": 6},
        ),
    ),
}


def sequence_data(seed: int = 0, n_users: int = 121, n_items: int = 30):
    """Walks on a random sparse transition graph, 3 to 12 items long (the lengths differ, so
    that batches trim their windows differently), split leave-one-out."""
    from genrec.data import Sequences
    from genrec.data.sequences import sequence_leave_one_out
    from genrec.evaluate import RankingTask

    rng = np.random.default_rng(seed)
    nxt = rng.integers(0, n_items, (n_items, 3))
    lists = []
    for _ in range(n_users):
        walk = [int(rng.integers(n_items))]
        for _ in range(int(rng.integers(3, 13)) - 1):
            walk.append(int(nxt[walk[-1], rng.integers(3)]))
        lists.append(walk)
    split = sequence_leave_one_out(Sequences.from_lists(lists, n_items))

    def task(name, inputs, target):
        x = inputs.to_csr()
        y = sp.csr_matrix(
            (np.ones(len(target), np.float32), target, np.arange(len(target) + 1)),
            shape=(len(target), n_items),
        )
        return RankingTask(split.users, x, x, y, "skip", name, sequences=inputs)

    return (
        split.train,
        task("valid", split.valid_inputs(), split.valid_target),
        task("test", split.test_inputs(), split.test_target),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    flat = ("mult-vae", "bpr-mf", "recvae", "diffrec", "ldiffrec", "vq-vae", "vq-vae-residual")
    ap.add_argument("models", help="a model, or several separated by commas (one group)")
    ap.add_argument("batch", type=int)
    ap.add_argument("out")
    ap.add_argument("--keyed", action="store_true")
    ap.add_argument("--run-dir")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--die-at-step", type=int)
    ap.add_argument("--die-rank", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(1)
    from genrec.train.distributed import init_from_env

    dp = init_from_env("cpu", timeout_s=float(os.environ.get("TEST_DIST_TIMEOUT", "60")))
    models = a.models.split(",")
    for m in models:
        if m not in (*flat, *SEQUENCE_MODELS):
            ap.error(f"unknown model {m!r}")
    for m in models:  # several: each into OUT/MODEL, in the same process group
        fit_one(m, a, dp, Path(a.out) if len(models) == 1 else Path(a.out) / m)
    if dp is not None:  # as the CLI does: gloo's threads left at exit can abort the process
        import torch.distributed as dist

        dist.destroy_process_group()
    sys.exit(0)


def fit_one(model_name: str, a: argparse.Namespace, dp, out: Path) -> None:
    from genrec.config import build_config
    from genrec.evaluate import RankingTask, evaluate_ranking
    from genrec.models import get_model_class
    from genrec.train import FitContext

    if model_name in SEQUENCE_MODELS:
        name, values = SEQUENCE_MODELS[model_name]
        train, vtask, ttask = sequence_data()
    else:
        name, values = model_name.removesuffix("-residual"), {}
        train, valid, test = data()
        users = np.arange(train.shape[0])
        vtask = RankingTask(users, train, train, valid, name="valid")
        ttask = RankingTask(users, train + valid, train + valid, test, name="test")
    cls = get_model_class(name)
    tc = {"epochs": a.epochs, "batch_size": a.batch, "lr": 3e-3, "patience": None, "seed": 3}
    tc["select_metric"] = "recall@10"
    if a.keyed:
        tc["noise"] = "keyed"
    values = {**values, "train": tc}
    if model_name in SEQUENCE_MODELS:
        # plain SGD: a transformer's key bias has a gradient of zero up to rounding, which
        # Adam's normalisation would turn into full-size steps that differ with the order
        # of the sums (the noise compared here is the dropout and the negatives)
        tc.update(optimizer="sgd", lr=0.05 if name == "hstu" else 0.5)
    elif model_name == "mult-vae":
        values.update(hidden_dims=[16], latent_dim=8, total_anneal_steps=1)
    elif model_name == "recvae":
        values.update(hidden_dim=16, latent_dim=8)
    elif model_name == "vq-vae":  # EMA codebook, restarts every 2 steps
        values.update(hidden_dims=[8], code_dim=4, n_codes=6, ema=True, restart_every=2)
    elif model_name == "vq-vae-residual":  # trained codebooks, 2 levels
        values.update(
            hidden_dims=[8],
            code_dim=4,
            n_codes=6,
            quantizer="residual",
            n_levels=2,
            restart_every=3,
        )
    elif model_name == "ldiffrec":  # two VAEs and the latent diffusion, importance sampled
        values.update(
            n_clusters=2,
            embedding_dim=8,
            latent_dim=8,
            vae_anneal_steps=5,
            diffusion={"dims": [8], "steps": 5, "history_per_step": 10},
        )
    elif model_name == "diffrec":  # importance sampling from the 4th step (5 x 10 losses)
        values.update(diffusion={"dims": [16], "steps": 5, "history_per_step": 10})
    else:
        values.update(n_factors=8)
        tc["optimizer"] = "adam"
    model = cls(build_config(cls.config_class, values, where="test"))

    rank = 0 if dp is None else dp.rank
    if a.die_at_step is not None and rank == a.die_rank:  # the fault test: this rank dies
        orig = model.train_step

        def step(batch, ctx):
            if ctx.step >= a.die_at_step:
                os._exit(17)
            return orig(batch, ctx)

        model.train_step = step  # type: ignore[method-assign]
    ctx = FitContext(run_dir=Path(a.run_dir) if a.run_dir else None, resume=a.resume)
    model.fit(train, valid=vtask, context=ctx)
    if dp is None or dp.is_main:
        out.mkdir(parents=True, exist_ok=True)
        sd = {k: v.detach().numpy() for k, v in model.module_.state_dict().items()}
        np.savez(out / "weights.npz", **sd)
        res = evaluate_ranking(model, ttask, ks=(10,))
        (out / "metrics.json").write_text(
            json.dumps(
                {
                    "history": [r.get("valid") for r in model.history_],
                    "loss": [
                        {k: v for k, v in r.items() if k.endswith("loss")} for r in model.history_
                    ],
                    "test": res.metrics,
                }
            )
        )


if __name__ == "__main__":
    main()
