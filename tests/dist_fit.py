"""One process of a small data-parallel fit (tests/test_distributed.py starts 1 or 2 of it).

Usage: python tests/dist_fit.py MODEL BATCH OUT [--keyed] [--run-dir D] [--resume]
         [--epochs N] [--die-at-step S --die-rank R]

The process group comes from the environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, as
torchrun sets them; none: one process). Rank 0 writes OUT/weights.npz and OUT/metrics.json
(the validation history and the test metrics of the fitted model).
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=("mult-vae", "bpr-mf", "recvae", "diffrec"))
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
    from genrec.evaluate import RankingTask, evaluate_ranking
    from genrec.models import get_model_class
    from genrec.train import FitContext
    from genrec.train.distributed import init_from_env

    dp = init_from_env("cpu", timeout_s=float(os.environ.get("TEST_DIST_TIMEOUT", "60")))
    train, valid, test = data()
    users = np.arange(train.shape[0])
    vtask = RankingTask(users, train, train, valid, name="valid")
    ttask = RankingTask(users, train + valid, train + valid, test, name="test")
    cls = get_model_class(a.model)
    tc = {"epochs": a.epochs, "batch_size": a.batch, "lr": 3e-3, "patience": None, "seed": 3}
    tc["select_metric"] = "recall@10"
    if a.keyed:
        tc["noise"] = "keyed"
    values = {"train": tc}
    if a.model == "mult-vae":
        values.update(hidden_dims=[16], latent_dim=8, total_anneal_steps=1)
    elif a.model == "recvae":
        values.update(hidden_dim=16, latent_dim=8)
    elif a.model == "diffrec":  # uniform steps: the importance sampler's history is per rank
        values.update(diffusion={"dims": [16], "steps": 5, "timestep_sampling": "uniform"})
    else:
        values.update(n_factors=8)
        tc["optimizer"] = "adam"
    from genrec.config import build_config

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
        out = Path(a.out)
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
    sys.exit(0)


if __name__ == "__main__":
    main()
