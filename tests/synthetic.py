"""Small synthetic data with known structure, written in real file layouts for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


def taste_ratings(
    n_users: int = 60, n_items: int = 40, n_groups: int = 2, per_user: int = 15, seed: int = 0
) -> np.ndarray:
    """Rows (user, item, rating, timestamp), 1-based ids; group g loves block g (ratings 4-5)
    and rates a few other items low (1-2)."""
    rng = np.random.default_rng(seed)
    block = n_items // n_groups
    rows = []
    t = 874_000_000
    for u in range(n_users):
        g = u % n_groups
        liked = rng.choice(
            np.arange(g * block, (g + 1) * block), size=min(per_user, block), replace=False
        )
        others = np.setdiff1d(np.arange(n_items), np.arange(g * block, (g + 1) * block))
        disliked = rng.choice(others, size=3, replace=False)
        for i in liked:
            t += int(rng.integers(1, 1000))
            rows.append((u + 1, i + 1, int(rng.integers(4, 6)), t))
        for i in disliked:
            t += int(rng.integers(1, 1000))
            rows.append((u + 1, i + 1, int(rng.integers(1, 3)), t))
    return np.array(rows, dtype=np.int64)


def write_ml100k(folder: Path, seed: int = 0, n_users: int = 60, n_items: int = 40) -> Path:
    """An ML-100K layout: u.data, u.item (19 genre flags), u.user, u1..u5.base/test."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = taste_ratings(n_users, n_items, seed=seed)
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    lines = []
    for i in range(1, n_items + 1):
        flags = ["0"] * 19
        flags[1 + (i - 1) * 2 // n_items] = "1"  # first half Action, second half Adventure
        lines.append(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x/{i}|" + "|".join(flags))
    (folder / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    occ = ["student", "engineer", "writer"]
    (folder / "u.user").write_text(
        "".join(
            f"{u}|{20 + u % 40}|{'MF'[u % 2]}|{occ[u % 3]}|{10000 + u}\n"
            for u in range(1, n_users + 1)
        )
    )
    rng = np.random.default_rng(seed + 1)
    fold = rng.integers(0, 5, len(rows))
    for n in range(5):
        test, base = rows[fold == n], rows[fold != n]
        for name, part in ((f"u{n + 1}.test", test), (f"u{n + 1}.base", base)):
            (folder / name).write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in part))
    return folder


def write_pair_lists(folder: Path, n_users: int = 40, n_items: int = 30, seed: int = 0) -> Path:
    """DiffRec-style train/valid/test_list.npy from a two-group taste structure."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = taste_ratings(n_users, n_items, seed=seed)
    rows = rows[rows[:, 2] >= 4]
    pairs = np.stack([rows[:, 0] - 1, rows[:, 1] - 1], 1).astype(np.int64)
    rng = np.random.default_rng(seed)
    part = rng.choice(3, size=len(pairs), p=[0.7, 0.15, 0.15])
    for j, name in enumerate(("train", "valid", "test")):
        np.save(folder / f"{name}_list.npy", pairs[part == j])
    return folder
