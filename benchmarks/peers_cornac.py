"""Train Cornac 3.0.1's VAECF at the Mult-VAE paper's size on the DiffRec ML-1M clean split:
seconds per epoch, and every user's scores for genrec's evaluator.

Runs inside Cornac's side environment, never genrec's:

    python3 -m venv /tmp/peers/venv-cornac
    /tmp/peers/venv-cornac/bin/pip install torch==2.13.0
    /tmp/peers/venv-cornac/bin/pip install cornac==3.0.1
    /tmp/peers/venv-cornac/bin/python benchmarks/peers_cornac.py \
        --data ../shared/data/ml-1m-diffrec/ml-1m_clean --out /tmp/cornac.json \
        --scores /tmp/cornac_scores.npy

(see /work/shared/peers/README.md). ``bench_cornac.py`` calls it when the environment exists.
It imports nothing from genrec. VAECF's settings are Cornac's defaults except the network and
batch, set to the Mult-VAE paper's (the "multvae" preset of the peers README): latent 200,
encoder [600], tanh, multinomial likelihood, batch 500, Adam lr 1e-3, KL weight beta = 0.2
(Cornac keeps beta fixed), seed 123. Seconds per epoch: (fit of ``--epochs`` epochs - fit of
one epoch) / (epochs - 1), so the one-off set-up is not counted. The scores of the long fit
are written as a float32 (users, items) array in the split's own id order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def vaecf(n_epochs: int):
    import cornac

    return cornac.models.VAECF(
        k=200,
        autoencoder_structure=[600],
        act_fn="tanh",
        likelihood="mult",
        n_epochs=n_epochs,
        batch_size=500,
        learning_rate=0.001,
        beta=0.2,
        seed=123,
        verbose=False,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with {train,valid,test}_list.npy")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--scores", required=True, help=".npy file for the (users, items) scores")
    ap.add_argument("--epochs", type=int, default=100)
    args = ap.parse_args()
    import cornac
    import torch
    from cornac.data import Dataset

    parts = [
        np.load(os.path.join(args.data, f"{p}_list.npy"), allow_pickle=False)
        for p in ("train", "valid", "test")
    ]
    train = parts[0]
    n_users = max(int(a[:, 0].max()) for a in parts) + 1
    n_items = max(int(a[:, 1].max()) for a in parts) + 1
    train_set = Dataset.from_uir([(str(u), str(i), 1.0) for u, i in train.tolist()], seed=123)

    t0 = time.perf_counter()
    vaecf(1).fit(train_set)
    one = time.perf_counter() - t0
    model = vaecf(args.epochs)
    t0 = time.perf_counter()
    model.fit(train_set)
    full = time.perf_counter() - t0

    # scores in the split's ids: users and items Cornac never saw in training keep 0
    scores = np.zeros((n_users, n_items), np.float32)
    items = np.array([int(raw) for raw in train_set.iid_map], np.int64)
    cols = np.array([train_set.iid_map[str(i)] for i in items], np.int64)
    t0 = time.perf_counter()
    for raw, idx in train_set.uid_map.items():
        scores[int(raw), items] = model.score(idx)[cols]
    score_s = time.perf_counter() - t0
    np.save(args.scores, scores)
    result = {
        "model": "VAECF",
        "epochs": args.epochs,
        "fit_s": full,
        "fit_1_epoch_s": one,
        "s_per_epoch": (full - one) / (args.epochs - 1) if args.epochs > 1 else one,
        "score_all_users_s": score_s,
        "settings": {
            "k": 200,
            "autoencoder_structure": [600],
            "act_fn": "tanh",
            "likelihood": "mult",
            "batch_size": 500,
            "learning_rate": 0.001,
            "beta": 0.2,
            "seed": 123,
        },
        "versions": {
            "python": sys.version.split()[0],
            "cornac": cornac.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "torch_threads": torch.get_num_threads(),
        },
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
