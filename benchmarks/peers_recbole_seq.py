"""Time RecBole 1.2.1's SASRec (training epochs and one full evaluation of all test users) on
an ordered-lines file (``user i1 i2 ... in``, items in time order, e.g. Amazon Beauty), under
the same leave-one-out split as genrec's ``seq-loo``.

Runs inside the RecBole side environment, never genrec's (RecBole needs numpy < 2):

    python3 -m venv /work/peers/venv
    /work/peers/venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    /work/peers/venv/bin/pip install recbole==1.2.1 "numpy<2" "pandas<2.3" "scipy<1.14" \
        "setuptools<81" ray
    nice taskset -c 0 env OMP_NUM_THREADS=1 /work/peers/venv/bin/python \
        benchmarks/peers_recbole_seq.py --data ../shared/data/amazon-5core/Beauty.txt \
        --hidden 64 --layers 2 --heads 1 --loss CE --batch 256 --epochs 3 --max-len 50 \
        --dropout 0.5 --out /tmp/recbole_sasrec.json

(see /work/shared/peers/README.md for why each pin; ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is
not needed here, the script never loads a checkpoint). A benchmark calls it through
``benchmarks/_common.py``'s ``run_peer``. It imports nothing from genrec and leaves nothing
behind (RecBole's files and its ``log_tensorboard/`` go to a temporary folder).

Data and split. Each line becomes rows ``user, item, timestamp = position in the line`` of a
RecBole atomic file, with no filtering. RecBole's ``SequentialDataset`` turns every item but a
user's first into one sample (the up to ``MAX_ITEM_LIST_LENGTH`` = ``--max-len`` items before
it, the item as target); ``eval_args: {order: TO, split: {LS: valid_and_test}, group_by: user,
mode: full}`` then keeps each user's last sample for test (target: the last item; input: all
items before it, the validation item included) and the second-to-last for validation: the
split of genrec's ``seq-loo``. The script checks it against the file before training (every
user's test and validation target and input window, every training target) and fails
otherwise; the counts are written under ``split``. Test users are ranked over all items.
RecBole masks no history for sequential models (only its padding id), so by default the
script sets the scores of the user's input items (all of them, not only the last
``--max-len``) to -inf, as ``seq-loo`` does; the timed evaluation includes that masking, and
one pass without it (RecBole's own numbers) is reported beside it. ``--eval-batch`` is the
number of users per full-sort batch: for sequential models RecBole uses ``eval_batch_size``
as rows per batch (it divides it by the number of items only for general models, which is
why ``peers_recbole.py`` raises it there), so its default 4096 is already 4096 users a batch.

Model. RecBole's SASRec with ``hidden_size`` = ``--hidden``, ``n_layers``, ``n_heads``,
``inner_size`` = ``--inner`` (default: ``--hidden``, the paper's and genrec's feed-forward
width; RecBole's own default is 256), ``hidden_act`` = ``--act`` (default relu, as the paper
and genrec; RecBole's default is gelu), ``hidden_dropout_prob`` = ``--dropout``,
``attn_dropout_prob`` = ``--attn-dropout`` (default: ``--dropout``), Adam at ``--lr``.
RecBole's network is post-layer-norm with a layer norm on the input embeddings and no
sqrt(D) scaling of them; genrec's follows the paper's code (pre-norm, final norm, scaled).

Losses. ``--loss CE``: softmax cross-entropy over all items (RecBole's logits include its
padding row) at the last position of each sample; genrec's ``ce`` computes the same softmax
at every position of a user's window. ``--loss BPR`` (``bce`` is read as BPR): RecBole's
SASRec has no BCE; BPR is the closest, with the same one uniform negative per target (drawn
by RecBole's sampler among the items the user has no training interaction with; genrec's
``bce`` draws among the items not in the user's sequence), but pairwise,
-log sigmoid(s_pos - s_neg), where genrec's is pointwise, softplus(-s_pos) + softplus(s_neg).

Batches. ``--batch`` is RecBole's ``train_batch_size``: samples (one target each, with its
own window), not users; an epoch is every training sample once (``train_samples``,
``batches_per_epoch`` in the JSON), where genrec's epoch is each user's last window once with
every position a target. Each epoch's training is timed around ``Trainer._train_epoch``
(no validation runs; the model after ``--epochs`` epochs is evaluated on test). JSON:
``s_per_epoch_median``, ``s_per_epoch``, ``eval_s_median``, ``eval_s``, ``test`` (Recall, NDCG,
MRR at 5, 10, 20; with one target Recall is the hit rate), ``test_unmasked``, ``split``,
``config``, ``peak_rss_mib`` (``resource.getrusage``), ``versions``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

import numpy as np

NAME = "seq"  # RecBole's dataset name inside the temporary folder
LOSSES = {"ce": "CE", "bpr": "BPR", "bce": "BPR"}


def read_lines(path: str) -> list[tuple[str, list[str]]]:
    """The ordered-lines file as (user, items in order); blank lines skipped."""
    users = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 4:
                sys.exit(f"{path}:{n}: user {parts[0]} has {len(parts) - 1} items; seq-loo needs 3")
            users.append((parts[0], parts[1:]))
    return users


def convert(users: list[tuple[str, list[str]]], out_dir: str) -> None:
    """RecBole atomic file: one row per (user, item), timestamp = position in the line."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{NAME}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u, items in users:
            f.writelines(f"{u}\t{i}\t{t}\n" for t, i in enumerate(items))


def recbole_config(args: argparse.Namespace, root: str):
    from recbole.config import Config

    loss = LOSSES[args.loss.lower()]
    cfg = {
        "data_path": root,
        "checkpoint_dir": os.path.join(root, "saved"),
        "use_gpu": False,
        "show_progress": False,
        "seed": args.seed,
        "reproducibility": True,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "rm_dup_inter": None,
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        "eval_args": {
            "order": "TO",
            "split": {"LS": "valid_and_test"},
            "group_by": "user",
            "mode": "full",
        },
        "metrics": ["Recall", "NDCG", "MRR"],
        "topk": [5, 10, 20],
        "valid_metric": "NDCG@10",
        "hidden_size": args.hidden,
        "inner_size": args.inner or args.hidden,
        "n_layers": args.layers,
        "n_heads": args.heads,
        "hidden_dropout_prob": args.dropout,
        "attn_dropout_prob": args.dropout if args.attn_dropout is None else args.attn_dropout,
        "hidden_act": args.act,
        "loss_type": loss,
        "train_neg_sample_args": (
            None if loss == "CE" else {"distribution": "uniform", "sample_num": 1}
        ),
        "learning_rate": args.lr,
        "train_batch_size": args.batch,
        "eval_batch_size": args.eval_batch,
        "epochs": args.epochs,
        "eval_step": 10**6,
    }
    return Config(model="SASRec", dataset=NAME, config_dict=cfg)


def _rows(loader, ds) -> dict[str, np.ndarray]:
    feat = loader.dataset.inter_feat
    return {
        "uid": feat[ds.uid_field].numpy(),
        "iid": feat[ds.iid_field].numpy(),
        "seq": feat[ds.item_id_list_field].numpy(),
        "len": feat[ds.item_list_length_field].numpy(),
    }


def check_split(users, ds, train_data, valid_data, test_data, max_len: int) -> dict:
    """Compare RecBole's samples with the file: test = last item after all others (the most
    recent ``max_len``), validation = the second-to-last, training targets = the rest but the
    first; raise on any difference. The counts."""
    uid_of, iid_of = ds.field2token_id[ds.uid_field], ds.field2token_id[ds.iid_field]
    seqs = {uid_of[u]: np.array([iid_of[i] for i in items]) for u, items in users}
    problems = []
    for name, loader, drop in (("test", test_data, 1), ("valid", valid_data, 2)):
        r = _rows(loader, ds)
        if sorted(r["uid"].tolist()) != sorted(seqs):
            problems.append(f"{name}: {len(r['uid'])} rows for {len(seqs)} users")
            continue
        for u, t, s, n in zip(r["uid"], r["iid"], r["seq"], r["len"]):
            full = seqs[u]
            window = full[:-drop][-max_len:]
            if t != full[-drop] or n != len(window) or not np.array_equal(s[:n], window):
                problems.append(f"{name}: user {ds.id2token(ds.uid_field, u)} differs")
                break
    r = _rows(train_data, ds)
    order = np.lexsort((np.arange(len(r["uid"])), r["uid"]))  # by user, file order kept
    expected = np.concatenate([seqs[u][1:-2] for u in sorted(seqs)])
    if not np.array_equal(r["iid"][order], expected):
        problems.append(f"train: {len(r['iid'])} targets, expected {len(expected)}")
    if problems:
        raise RuntimeError("RecBole's split is not seq-loo: " + "; ".join(problems))
    n_train_users = len(np.unique(r["uid"]))
    return {
        "users": ds.user_num - 1,
        "items": ds.item_num - 1,
        "events": sum(len(items) for _, items in users),
        "train_events": len(r["iid"]) + n_train_users,  # each user's first item is input only
        "train_samples": len(r["iid"]),
        "valid_users": len(valid_data.dataset),
        "test_users": len(test_data.dataset),
        "check": "ok: targets and windows as seq-loo",
    }


def history_mask(users, ds):
    """CSR (user id x item id) of each user's test input: every item but the last."""
    import scipy.sparse as sp

    uid_of, iid_of = ds.field2token_id[ds.uid_field], ds.field2token_id[ds.iid_field]
    rows, cols = [], []
    for u, items in users:
        rows += [uid_of[u]] * (len(items) - 1)
        cols += [iid_of[i] for i in items[:-1]]
    data = np.ones(len(rows), dtype=np.float32)
    mask = sp.csr_matrix((data, (rows, cols)), shape=(ds.user_num, ds.item_num))
    mask.sum_duplicates()
    return mask


def masked_predict(model, mask, uid_field: str):
    """``model.full_sort_predict`` with each user's history set to -inf."""
    import torch

    original = model.full_sort_predict

    def predict(interaction):
        scores = original(interaction)  # (B, n_items + 1)
        sub = mask[interaction[uid_field].cpu().numpy()]
        rows = np.repeat(np.arange(sub.shape[0]), np.diff(sub.indptr))
        scores[torch.from_numpy(rows), torch.from_numpy(sub.indices.astype(np.int64))] = -np.inf
        return scores

    return predict


def timed_evals(trainer, test_data, repeats: int) -> tuple[list[float], dict]:
    times, result = [], {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        times.append(time.perf_counter() - t0)
    return times, {k: float(v) for k, v in result.items()}


def run(args: argparse.Namespace, users, root: str) -> dict:
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    convert(users, os.path.join(root, NAME))
    config = recbole_config(args, root)
    init_seed(config["seed"], config["reproducibility"])
    t0 = time.perf_counter()
    ds = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, ds)
    data_s = time.perf_counter() - t0
    split = check_split(users, ds, train_data, valid_data, test_data, args.max_len)
    mask = history_mask(users, ds)
    # test targets the user had before: masked as history, so missed by any model (as in seq-loo)
    split["test_targets_in_history"] = sum(items[-1] in items[:-1] for _, items in users)

    init_seed(config["seed"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)
    times: list[float] = []
    original = trainer._train_epoch

    def timed(*a, **k):
        t = time.perf_counter()
        out = original(*a, **k)
        times.append(time.perf_counter() - t)
        return out

    trainer._train_epoch = timed
    trainer.fit(train_data, valid_data=None, saved=False, show_progress=False)
    eval_unmasked_s, test_unmasked = timed_evals(trainer, test_data, 1)
    if not args.no_mask:
        model.full_sort_predict = masked_predict(model, mask, ds.uid_field)
    eval_s, test = timed_evals(trainer, test_data, args.eval_repeats)
    return {
        "model": "SASRec",
        "loss_type": config["loss_type"],
        "epochs": len(times),
        "s_per_epoch_median": statistics.median(times),
        "s_per_epoch": times,
        "batches_per_epoch": len(train_data),
        "eval_s_median": statistics.median(eval_s),
        "eval_s": eval_s,
        "eval_users_per_batch": test_data.step,
        "history_masked": not args.no_mask,
        "test": test,
        "test_unmasked": test_unmasked,
        "eval_unmasked_s": eval_unmasked_s[0],
        "data_prep_s": data_s,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "split": split,
        "config": {
            "data": args.data,
            **{
                k: config[k]
                for k in (
                    "hidden_size",
                    "inner_size",
                    "n_layers",
                    "n_heads",
                    "hidden_dropout_prob",
                    "attn_dropout_prob",
                    "hidden_act",
                    "layer_norm_eps",
                    "initializer_range",
                    "loss_type",
                    "train_neg_sample_args",
                    "MAX_ITEM_LIST_LENGTH",
                    "learning_rate",
                    "learner",
                    "weight_decay",
                    "train_batch_size",
                    "eval_batch_size",
                    "epochs",
                    "seed",
                    "eval_args",
                )
            },
            "loss_asked": args.loss,
            "torch_threads": torch.get_num_threads(),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="ordered-lines file: 'user i1 i2 ... in'")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--inner", type=int, default=None, help="feed-forward width (default --hidden)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--loss", default="CE", choices=sorted({*LOSSES, *LOSSES.values()}))
    ap.add_argument("--batch", type=int, default=256, help="training samples per batch")
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--attn-dropout", type=float, default=None, help="default --dropout")
    ap.add_argument("--act", default="relu", choices=["relu", "gelu"])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-batch", type=int, default=4096, help="test users per batch")
    ap.add_argument("--eval-repeats", type=int, default=3, help="timed test evaluations")
    ap.add_argument("--no-mask", action="store_true", help="keep RecBole's unmasked ranking")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    out, args.data = os.path.abspath(args.out), os.path.abspath(args.data)
    import recbole
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    users = read_lines(args.data)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="recbole-seq-") as root:
        os.chdir(root)  # RecBole writes log_tensorboard/ into the working directory
        try:
            result = run(args, users, root)
        finally:
            os.chdir(cwd)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    versions = {
        "python": sys.version.split()[0],
        "recbole": recbole.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    doc = {"versions": versions, "results": [result]}
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, out)
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
