"""Time RecBole 1.2.1's MultiVAE and RecVAE epochs (or its EASE: fit + test evaluation, with
``--models EASE``) on the DiffRec ML-1M clean split.

Runs inside the RecBole side environment, never genrec's (RecBole needs numpy < 2):

    python3 -m venv /tmp/peers/venv
    /tmp/peers/venv/bin/pip install torch==2.13.0
    /tmp/peers/venv/bin/pip install recbole==1.2.1 "numpy<2" "pandas<2.3" "scipy<1.14" \
        "setuptools<81" ray
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 /tmp/peers/venv/bin/python benchmarks/peers_recbole.py \
        --data ../shared/data/ml-1m-diffrec/ml-1m_clean --out /tmp/peers/recbole.json

(see /work/shared/peers/README.md for why each pin). ``bench_vae.py`` and ``bench_ease.py``
call it when the environment exists. It imports nothing from genrec. RecBole's model defaults
are kept (MultiVAE: [600], latent 128, train batch 2048; RecVAE: hidden 600, latent 200,
3 encoder + 1 decoder passes per epoch); each epoch's training time is measured around
``Trainer._train_epoch``, without validation, and the median over ``--epochs`` epochs is
written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def convert(src: str, out_dir: str) -> None:
    """DiffRec pair lists -> RecBole benchmark atomic files (rows kept in order)."""
    os.makedirs(out_dir, exist_ok=True)
    for part in ("train", "valid", "test"):
        pairs = np.load(os.path.join(src, f"{part}_list.npy"), allow_pickle=False)
        with open(os.path.join(out_dir, f"ml1m_clean.{part}.inter"), "w") as f:
            f.write("user_id:token\titem_id:token\n")
            for u, i in pairs.tolist():
                f.write(f"{u}\t{i}\n")


def _recbole_setup(model_name: str, data_root: str, extra: dict):
    """RecBole's config (its defaults, the benchmark files as given, no filtering) and
    dataset for ``model_name`` on the converted split under ``data_root``."""
    from recbole.config import Config
    from recbole.data import create_dataset
    from recbole.utils import init_seed

    cfg = {
        "data_path": data_root,
        "checkpoint_dir": os.path.join(data_root, "saved"),
        "use_gpu": False,
        "show_progress": False,
        "seed": 2020,
        "reproducibility": True,
        "load_col": {"inter": ["user_id", "item_id"]},
        "benchmark_filename": ["train", "valid", "test"],
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "metrics": ["Recall", "NDCG"],
        "topk": [20],
        "valid_metric": "NDCG@20",
        "eval_args": {"mode": "full", "group_by": "user"},
        **extra,
    }
    config = Config(model=model_name, dataset="ml1m_clean", config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    return config, create_dataset(config)


def time_model(model_name: str, data_root: str, epochs: int) -> dict:
    from recbole.data import data_preparation
    from recbole.utils import get_model, get_trainer

    config, dataset = _recbole_setup(model_name, data_root, {"epochs": epochs, "eval_step": 10**6})
    train_data, valid_data, _ = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    times: list[float] = []
    original = trainer._train_epoch

    def timed(*a, **k):
        t0 = time.perf_counter()
        out = original(*a, **k)
        times.append(time.perf_counter() - t0)
        return out

    trainer._train_epoch = timed
    trainer.fit(train_data, valid_data=None, saved=False, show_progress=False)
    return {
        "model": model_name,
        "epochs": len(times),
        "s_per_epoch_median": statistics.median(times),
        "s_per_epoch": times,
        "train_batch_size": config["train_batch_size"],
    }


def time_ease(data_root: str, reg_weight: float, eval_batch_size: int, repeats: int) -> dict:
    """RecBole's EASE: seconds of the fit (its constructor solves the closed form) and of one
    full-sort evaluation of the test users at ``eval_batch_size``, with its test scores."""
    from recbole.data import data_preparation
    from recbole.utils import get_model, get_trainer

    config, dataset = _recbole_setup(
        "EASE", data_root, {"reg_weight": reg_weight, "eval_batch_size": eval_batch_size}
    )
    train_data, _, test_data = data_preparation(config, dataset)
    fit_s, eval_s = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model = get_model("EASE")(config, train_data._dataset).to(config["device"])
        t1 = time.perf_counter()
        trainer = get_trainer(config["MODEL_TYPE"], "EASE")(config, model)
        scores = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        t2 = time.perf_counter()
        fit_s.append(t1 - t0)
        eval_s.append(t2 - t1)
    return {
        "model": "EASE",
        "reg_weight": reg_weight,
        "eval_batch_size": eval_batch_size,
        "fit_s": fit_s,
        "eval_s": eval_s,
        "fit_s_median": statistics.median(fit_s),
        "eval_s_median": statistics.median(eval_s),
        "test": {k: float(v) for k, v in scores.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with {train,valid,test}_list.npy")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument(
        "--models",
        default="MultiVAE,RecVAE",
        help="comma-separated RecBole models; EASE is timed as fit + evaluation",
    )
    ap.add_argument("--reg-weight", type=float, default=250.0, help="EASE's lambda")
    ap.add_argument("--repeats", type=int, default=3, help="EASE: timed fits + evaluations")
    ap.add_argument(
        "--eval-batch-sizes",
        default="1048576,4096",
        help="EASE: full-sort evaluation batches to time (RecBole's default 4096 "
        "is one user per batch on ML-1M)",
    )
    args = ap.parse_args()
    import recbole
    import torch

    with tempfile.TemporaryDirectory(prefix="recbole-") as root:
        convert(args.data, os.path.join(root, "ml1m_clean"))
        results = []
        for m in args.models.split(","):
            if m == "EASE":
                results += [
                    time_ease(root, args.reg_weight, int(b), args.repeats)
                    for b in args.eval_batch_sizes.split(",")
                ]
            else:
                results.append(time_model(m, root, args.epochs))
    versions = {
        "python": sys.version.split()[0],
        "recbole": recbole.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    with open(args.out, "w") as f:
        json.dump({"versions": versions, "results": results}, f, indent=2)
    print(json.dumps({"versions": versions, "results": results}))


if __name__ == "__main__":
    main()
