"""Golden scores: every registered model, trained on small synthetic data with a fixed seed.

Each entry of :data:`GOLDEN_CONFIGS` is trained on the CPU with one torch thread and a fixed
seed, then evaluated on its test part. What is recorded, per entry:

* the test metrics, to full precision (JSON numbers are written with ``repr``);
* the SHA-256 of the float32 score matrix ``model.score(all users, training matrix)``;
* a summary of that matrix (mean, std, min, max) and every user's top 5 items, so that when
  the hash changes the report can say by how much.

The data come from :func:`tests.synthetic.taste_ratings` (60 users, 40 items, two taste
groups). Models whose fit selects on ratings (``selects_on() == "rating"``: biased MF, FM with
the regression objective, AutoRec) get the explicit ratings and a rating task (RMSE, MAE);
sequential models get the positives of each user in a seeded random order, split leave one
out (the last item is the test target, the one before it the validation target); all others
get the ratings >= 4 as implicit positives and a ranking task. Every task is split here, with
a seeded NumPy generator, so that the numbers depend on the models alone.

Usage::

    python benchmarks/golden.py                      # print the numbers
    python benchmarks/golden.py --write tests/golden/v0.1.0.json
    python benchmarks/golden.py --check tests/golden/v0.1.0.json   # what differs, by how much

``tests/test_golden.py`` reruns the same table in-process and compares with the file.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import platform
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: tests.synthetic lives at the repository root
    sys.path.insert(0, str(ROOT))

from tests.synthetic import taste_ratings  # noqa: E402

import genrec  # noqa: E402
from genrec.config import build_config  # noqa: E402
from genrec.data import Sequences, sequence_leave_one_out  # noqa: E402
from genrec.evaluate import (  # noqa: E402
    RankingTask,
    RatingTask,
    evaluate_ranking,
    evaluate_rating,
)
from genrec.models import MODELS, Recommender  # noqa: E402

# Entry name -> model keyword arguments. The name is a registered model name, optionally
# followed by "/variant" when one model is recorded under several settings. Every entry is
# built as MODELS[name](seed=SEED, **kwargs).
GOLDEN_CONFIGS: dict[str, dict[str, Any]] = {
    "popularity": {},
    "ease": dict(l2=1.0),
    "gaussian-vae": dict(
        hidden_dims=(32,), latent_dim=8, batch_size=8, epochs=15, lr=1e-2, device="cpu"
    ),
    "mult-vae": dict(
        hidden_dims=(32,), latent_dim=8, batch_size=8, epochs=12, lr=1e-2, device="cpu"
    ),
    "mult-dae": dict(latent_dim=16, batch_size=8, epochs=12, lr=1e-2, device="cpu"),
    "vq-vae": dict(
        hidden_dims=(16,),
        code_dim=4,
        n_codes=4,
        restart_every=5,
        batch_size=8,
        epochs=12,
        lr=1e-2,
        device="cpu",
    ),
    "recvae": dict(hidden_dim=32, latent_dim=8, batch_size=8, epochs=4, lr=1e-2, device="cpu"),
    "cdae": dict(
        latent_dim=16, batch_size=8, epochs=30, lr=3e-2, corruption=0.2, l2=1e-3, device="cpu"
    ),
    "diffrec": dict(
        dims=(32,),
        steps=5,
        noise_scale=0.1,
        noise_min=0.01,
        noise_max=0.1,
        epochs=20,
        batch_size=8,
        lr=1e-2,
        device="cpu",
    ),
    "ldiffrec": dict(
        latent_dim=8,
        embedding_dim=4,
        dims=(16,),
        epochs=40,
        batch_size=8,
        lr=1e-2,
        vae_lr=1e-2,
        lamda=1e-4,
        lamda_min=1e-4,
        device="cpu",
    ),
    "biased-mf": dict(
        n_factors=4,
        solver="sgd",
        lr=0.02,
        batch_size=32,
        epochs=60,
        l2=0.01,
        l2_bias=0.01,
        device="cpu",
    ),
    "biased-mf/als": dict(
        n_factors=4, solver="als", epochs=10, l2=0.05, l2_bias=0.05, device="cpu"
    ),
    "bpr-mf": dict(n_factors=8, lr=0.05, epochs=20, batch_size=64, l2=1e-4, device="cpu"),
    "fm": dict(
        n_factors=4,
        lr=0.05,
        epochs=40,
        batch_size=32,
        l2_w=1e-4,
        l2_v=1e-4,
        use_side_features=False,
        device="cpu",
    ),
    "fm/bpr": dict(
        objective="bpr",
        n_factors=4,
        lr=0.05,
        epochs=20,
        batch_size=32,
        l2_w=1e-4,
        l2_v=1e-4,
        use_side_features=False,
        device="cpu",
    ),
    "autorec": dict(hidden=16, l2=0.1, epochs=60, eval_every=20, device="cpu"),
    "transition": dict(smoothing=0.5),
    "gru4rec": dict(
        hidden_dim=16, embedding_dim=16, train=dict(epochs=10, batch_size=16, lr=1e-2, device="cpu")
    ),
    "bert4rec": dict(
        max_len=8,
        hidden_dim=16,
        ffn_dim=32,
        n_layers=1,
        train=dict(epochs=10, batch_size=16, lr=3e-3, device="cpu"),
    ),
    "hstu": dict(
        max_len=8,
        dim=16,
        n_blocks=1,
        n_heads=1,
        qk_dim=8,
        v_dim=8,
        n_negatives=8,
        train=dict(epochs=10, batch_size=16, lr=1e-2, device="cpu"),
    ),
    "sasrec": dict(
        dim=16, max_len=8, n_blocks=1, train=dict(epochs=10, batch_size=16, lr=1e-2, device="cpu")
    ),
    # residual k-means codes and a short, slow run: an RQ-VAE's codes, or ten epochs at lr
    # 1e-2, flip with the rounding of another vector width (AVX2 against AVX512: recall@10
    # 0.97 -> 0.58), which no tolerance can hold; this entry moves by rounding only
    "tiger": dict(
        dim=16,
        n_layers=1,
        n_heads=2,
        head_dim=8,
        ffn_dim=32,
        max_items=6,
        user_buckets=0,
        beam=40,
        feature_dim=8,
        tokenizer="kmeans",
        semantic=dict(n_levels=2, n_codes=4),
        train=dict(epochs=4, batch_size=32, lr=1e-3, device="cpu"),
    ),
    "p5": dict(
        dim=16,
        n_layers=1,
        n_heads=2,
        head_dim=8,
        ffn_dim=32,
        max_items=6,
        beam=40,
        direct_train_candidates=5,
        train=dict(epochs=5, batch_size=32, lr=1e-2, device="cpu"),
    ),
}

SEED = 0
KS = (3, 10)
FORMAT = "genrec-golden/1"
N_USERS, N_ITEMS = 60, 40
TOP = 5  # top-k lists recorded per user


def model_name(entry: str) -> str:
    """The registered model name of a table entry (``"fm/bpr"`` -> ``"fm"``)."""
    return entry.split("/", 1)[0]


def build_model(entry: str, kwargs: dict[str, Any] | None = None, seed: int = SEED) -> Recommender:
    """The model of table entry ``entry`` (``kwargs`` defaults to its row of the table)."""
    kwargs = GOLDEN_CONFIGS[entry] if kwargs is None else kwargs
    cls = MODELS[model_name(entry)]
    # the table keeps 0.1.0's flat spelling; upgrade_config maps it as it maps saved configs
    values = cls.upgrade_config({"seed": seed, **kwargs})
    return cls(build_config(cls.config_class, values, where=entry))


# ----------------------------------------------------------------------------- data
def rating_data(seed: int = SEED) -> tuple[sp.csr_matrix, RatingTask, RatingTask]:
    """Explicit ratings split 80/10/10 at random: (train (U, I), valid, test)."""
    rows = taste_ratings(N_USERS, N_ITEMS, seed=seed)
    u, i, r = rows[:, 0] - 1, rows[:, 1] - 1, rows[:, 2].astype(np.float32)
    part = np.random.default_rng(seed).choice(3, size=len(rows), p=[0.8, 0.1, 0.1])
    train = sp.csr_matrix(
        (r[part == 0], (u[part == 0], i[part == 0])), shape=(N_USERS, N_ITEMS), dtype=np.float32
    )
    valid, test = (
        RatingTask(u[part == j], i[part == j], r[part == j], name)
        for j, name in ((1, "valid"), (2, "test"))
    )
    return train, valid, test


def ranking_data(seed: int = SEED) -> tuple[sp.csr_matrix, RankingTask, RankingTask]:
    """Ratings >= 4 as positives, each user's split 70/15/15 at random (at least one item in
    validation and in test): (train (U, I), valid, test). Validation masks the training
    items, test the training and validation items."""
    rows = taste_ratings(N_USERS, N_ITEMS, seed=seed)
    rows = rows[rows[:, 2] >= 4]
    rng = np.random.default_rng(seed)
    parts = [np.zeros((N_USERS, N_ITEMS), np.float32) for _ in range(3)]
    for user in range(N_USERS):
        items = rng.permutation(rows[rows[:, 0] == user + 1, 1] - 1)
        n_held = max(1, round(0.15 * len(items)))
        parts[1][user, items[:n_held]] = 1
        parts[2][user, items[n_held : 2 * n_held]] = 1
        parts[0][user, items[2 * n_held :]] = 1
    train, valid, test = (sp.csr_matrix(p) for p in parts)
    users = np.arange(N_USERS, dtype=np.int64)
    seen = sp.csr_matrix(parts[0] + parts[1])
    return (
        train,
        RankingTask(users, train, train, valid, "skip", "valid"),
        RankingTask(users, train, seen, test, "skip", "test"),
    )


def sequence_data(seed: int = SEED) -> tuple[Sequences, RankingTask, RankingTask]:
    """The positives of :func:`ranking_data`, each user's in a seeded random order, split
    leave one out as protocol seq-loo splits: (training sequences, valid, test). The tasks
    carry the input sequences and mask them."""
    rows = taste_ratings(N_USERS, N_ITEMS, seed=seed)
    rows = rows[rows[:, 2] >= 4]
    rng = np.random.default_rng(seed)
    lists = [rng.permutation(rows[rows[:, 0] == u + 1, 1] - 1).tolist() for u in range(N_USERS)]
    split = sequence_leave_one_out(Sequences.from_lists(lists, N_ITEMS))
    tasks = []
    for name, inputs, target in (
        ("valid", split.valid_inputs(), split.valid_target),
        ("test", split.test_inputs(), split.test_target),
    ):
        x = inputs.to_csr()
        y = sp.csr_matrix(
            (np.ones(len(target), np.float32), (np.arange(len(target)), target)),
            shape=(len(target), N_ITEMS),
        )
        tasks.append(RankingTask(split.users, x, x, y, "skip", name, sequences=inputs))
    return split.train, tasks[0], tasks[1]


def training_input(model: Recommender) -> sp.csr_matrix | Sequences:
    """What ``model`` is trained on in the table (``score_matrix`` scores the same)."""
    if type(model).capabilities.sequential:
        return sequence_data()[0]
    return (rating_data() if model.selects_on() == "rating" else ranking_data())[0]


# ----------------------------------------------------------------------------- running
@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread (bitwise-reproducible sums), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def score_matrix(model: Recommender, X: sp.csr_matrix | Sequences) -> np.ndarray:
    """``model.score(all users, X)`` as a C-contiguous little-endian float32 array (U, I)."""
    n = X.n_users if isinstance(X, Sequences) else X.shape[0]
    with torch.no_grad():
        s = model.score(np.arange(n, dtype=np.int64), X)
    if isinstance(s, torch.Tensor):
        s = s.detach().cpu().float().numpy()
    return np.ascontiguousarray(s, dtype="<f4")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def record(scores: np.ndarray, metrics: dict[str, float]) -> dict[str, Any]:
    """What is stored of one trained entry."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :TOP]  # ties: lower item first
    s64 = scores.astype(np.float64)
    return {
        "metrics": {k: float(v) for k, v in sorted(metrics.items())},
        "scores_sha256": hashlib.sha256(scores.tobytes()).hexdigest(),
        "scores_shape": list(scores.shape),
        "scores_summary": {
            "mean": float(s64.mean()),
            "std": float(s64.std()),
            "min": float(s64.min()),
            "max": float(s64.max()),
        },
        "top": top.tolist(),
    }


def run_entry(entry: str, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train table entry ``entry`` and return its record (see :func:`record`)."""
    kwargs = GOLDEN_CONFIGS[entry] if kwargs is None else kwargs
    model = build_model(entry, kwargs)
    task = "rating" if model.selects_on() == "rating" else "ranking"
    if type(model).capabilities.sequential:
        task = "sequence"
    with one_thread():
        if task == "sequence":
            train, valid, test = sequence_data()
            model.fit(train, valid=valid if model.selects_on() == "ranking" else None)
            metrics = evaluate_ranking(model, test, ks=KS).metrics
        elif task == "rating":
            train, valid, test = rating_data()
            model.fit(train, valid=valid)
            metrics = evaluate_rating(model, test).metrics
        else:
            train, valid, test = ranking_data()
            model.fit(train, valid=valid if model.selects_on() == "ranking" else None)
            metrics = evaluate_ranking(model, test, ks=KS).metrics
        scores = score_matrix(model, train)
    return {
        "model": model_name(entry),
        "task": task,
        "seed": SEED,
        "config": _jsonable(kwargs),
        **record(scores, metrics),
    }


def run_all(entries: list[str] | None = None) -> dict[str, Any]:
    """Every entry (or those named), with the versions they were recorded under."""
    entries = list(GOLDEN_CONFIGS) if entries is None else entries
    return {
        "format": FORMAT,
        "genrec_version": genrec.__version__,
        "environment": environment(),
        "ks": list(KS),
        "entries": {entry: run_entry(entry) for entry in entries},
    }


def environment() -> dict[str, str]:
    """Versions and machine: bitwise equality is only expected under the same ones. The
    CPU's name does not settle the kernels: torch picks its vector width at run time
    (``cpu_capability``: AVX2, AVX512, ...), and two machines of one name can differ in it."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def same_environment(recorded: dict[str, str], current: dict[str, str]) -> bool:
    """Whether a record made under ``recorded`` should be met bitwise under ``current``: every
    key it recorded agrees (a record older than a key, such as ``cpu_capability``, is not
    held to it)."""
    return bool(recorded) and all(current.get(k) == v for k, v in recorded.items())


def to_json(result: dict[str, Any]) -> str:
    """``result`` as indented JSON, each list of numbers on one line (floats as ``repr``)."""
    text = json.dumps(result, indent=1, allow_nan=False)
    return (
        re.sub(r"\[([^\[\]{}\"]*)\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
        + "\n"
    )


# ----------------------------------------------------------------------------- comparing
def _rel(a: float, b: float) -> str:
    if a == b:
        return "0"
    if not (math.isfinite(a) and math.isfinite(b)):
        return "n/a"
    return f"{(b - a) / abs(a):+.3%}" if a != 0 else "n/a"


#: across machines (another CPU model or library build), float sums round differently and
#: bitwise equality cannot hold: numbers then agree to these tolerances, and at most
#: CROSS_TOP_CHANGED of the users' top lists may change (near-ties can swap)
CROSS_REL, CROSS_ABS, CROSS_TOP_CHANGED = 1e-4, 1e-6, 0.05


def _same(a: float, b: float, exact: bool) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    return a == b if exact else math.isclose(a, b, rel_tol=CROSS_REL, abs_tol=CROSS_ABS)


def compare_entry(
    entry: str, expected: dict[str, Any], actual: dict[str, Any], exact: bool = True
) -> list[str]:
    """Lines describing how ``actual`` differs from ``expected`` (empty when bitwise equal).

    With ``exact=False`` (another machine: :func:`environment` differs) the metrics and the
    score matrix's summary need only agree to the ``CROSS_*`` tolerances, and the hash is not
    compared. The config is not compared by itself (a setting renamed or moved to another
    table changes no number); when numbers differ and so does the config, a last line says so.
    """
    out = []
    em, am = expected["metrics"], actual["metrics"]
    for key in sorted(set(em) | set(am)):
        if key not in am or key not in em:
            out.append(
                f"{entry}: metric {key} only in the {'recorded file' if key in em else 'new run'}"
            )
        elif not _same(em[key], am[key], exact):
            out.append(
                f"{entry}: {key} {em[key]!r} -> {am[key]!r} "
                f"(diff {am[key] - em[key]:+.3g}, {_rel(em[key], am[key])})"
            )
    if expected["scores_sha256"] != actual["scores_sha256"]:
        es, as_ = expected["scores_summary"], actual["scores_summary"]
        stats = ", ".join(f"{k} {es[k]:.6g} -> {as_[k]:.6g}" for k in ("mean", "std", "min", "max"))
        et, at = np.asarray(expected["top"]), np.asarray(actual["top"])
        close = all(_same(es[k], as_[k], False) for k in ("mean", "std", "min", "max"))
        if et.shape == at.shape:
            changed = int((et != at).any(axis=1).sum())
            first = int((et[:, 0] != at[:, 0]).sum())
            close = close and changed <= CROSS_TOP_CHANGED * len(et)
            lists = (
                f"top-{et.shape[1]} list changed for {changed}/{len(et)} users (top-1 for {first})"
            )
        else:
            close, lists = False, f"top lists of shape {list(et.shape)} -> {list(at.shape)}"
        if exact or not close:
            out.append(f"{entry}: score matrix hash differs; {stats}; {lists}")
    if out and expected.get("config") != actual.get("config"):
        # a renamed or moved setting alone is no difference; changed numbers may come from it
        out.append(
            f"{entry}: note: the table's config {actual.get('config')} is not the "
            f"recorded {expected.get('config')}"
        )
    return out


def compare(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Every difference between a recorded file and a new run, one line each (bitwise when
    both ran under one :func:`environment`, else to the ``CROSS_*`` tolerances)."""
    out = []
    missing = sorted(set(expected["entries"]) - set(actual["entries"]))
    extra = sorted(set(actual["entries"]) - set(expected["entries"]))
    if missing:
        out.append(f"recorded but not run: {', '.join(missing)}")
    if extra:
        out.append(f"run but not recorded: {', '.join(extra)}")
    for entry in expected["entries"]:
        if entry in actual["entries"]:
            recorded = expected["entries"][entry]
            # an entry added later may carry the environment it was recorded under
            exact = same_environment(
                recorded.get("environment", expected.get("environment")), actual["environment"]
            )
            out.extend(compare_entry(entry, recorded, actual["entries"][entry], exact))
    return out


def environment_note(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    """Why a comparison was not bitwise, or "" when both ran under one environment."""
    if expected.get("environment") == actual.get("environment"):
        return ""
    return (
        f"note: recorded under {expected.get('environment')}, run under "
        f"{actual.get('environment')}: compared to a relative {CROSS_REL:g}, since bitwise "
        f"equality needs the same versions and machine"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", metavar="PATH", help="record the numbers into this JSON file")
    ap.add_argument("--check", metavar="PATH", help="compare with this recorded JSON file")
    ap.add_argument("entries", nargs="*", help="table entries (default: all)")
    args = ap.parse_args(argv)
    unknown = [e for e in args.entries if e not in GOLDEN_CONFIGS]
    if unknown:
        ap.error(f"unknown entries {unknown}; known: {', '.join(GOLDEN_CONFIGS)}")
    result = run_all(args.entries or None)
    text = to_json(result)
    if args.write:
        path = Path(args.write)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        print(f"wrote {path} ({len(result['entries'])} entries)")
    if args.check:
        expected = json.loads(Path(args.check).read_text())
        if args.entries:
            expected["entries"] = {
                e: expected["entries"][e] for e in args.entries if e in expected["entries"]
            }
        diffs = compare(expected, result)
        note = environment_note(expected, result)
        same = "equal to the tolerances" if note else "identical"
        print("\n".join(diffs) if diffs else f"{same} to {args.check}")
        if note:
            print(note)
        return 1 if diffs else 0
    if not args.write:
        for entry, rec in result["entries"].items():
            shown = ", ".join(
                f"{k} {v:.4f}"
                for k, v in rec["metrics"].items()
                if k.startswith(("recall", "ndcg", "rmse", "mae"))
            )
            print(f"{entry:15s} {rec['task']:8s} {shown}  {rec['scores_sha256'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
