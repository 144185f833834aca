"""Cluster profiles: who is in a cluster, and what it watches more than everyone else.

For a cluster c and a genre g, with n(., g) the interactions with items of genre g:

    lift(c, g) = [n(c, g) / n(c, .)] / [n(all, g) / n(all, .)]

and for an item i, with u(c, i) the share of the cluster's users who chose it:

    lift(c, i) = u(c, i) / u(all, i)

Characteristic items are the highest-lift items chosen by at least ``min_share`` (10%) of
the cluster (so a film seen by two people does not top the list). On sparse data no item may
reach that share; the threshold is then relaxed, by a rule the profile states
(``items_rule``): items chosen by at least half as many of the cluster's users as its most
chosen item, and by at least 2 of them. A cluster whose most chosen item has one user lists
no characteristic items. Each profile records the share it applied (``items_min_share``).
Demographics (age band, gender, occupation) are shares within the cluster beside the
population's, given only where the data set has them for these users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["ItemUserMeta", "cluster_profiles", "age_band", "characteristic_threshold"]

DEMOGRAPHICS = ("age", "gender", "occupation")

_AGE_BANDS = [
    (0, 18, "<18"),
    (18, 25, "18-24"),
    (25, 35, "25-34"),
    (35, 45, "35-44"),
    (45, 50, "45-49"),
    (50, 56, "50-55"),
    (56, 200, "56+"),
]


def age_band(age: float) -> str:
    """ML-1M's age bands (ML-1M stores the band's lower bound; ML-100K the age)."""
    for lo, hi, name in _AGE_BANDS:
        if lo <= age < hi:
            return name
    return "unknown"


@dataclass
class ItemUserMeta:
    """What is known about the items (columns) and users (rows) of a training matrix."""

    item_ids: np.ndarray
    user_ids: np.ndarray
    titles: np.ndarray | None = None
    genres: np.ndarray | None = None  # (I, G) bool
    genre_names: tuple[str, ...] = ()
    users: pd.DataFrame | None = None  # one row per user row: age, gender, occupation

    @property
    def has_demographics(self) -> bool:
        """Whether some user has an age, gender or occupation."""
        if self.users is None:
            return False
        return bool(self.users.reindex(columns=list(DEMOGRAPHICS)).notna().any().any())

    @classmethod
    def from_dataset(cls, ds, item_ids: np.ndarray, user_ids: np.ndarray) -> ItemUserMeta:
        """Align a Dataset's metadata to the given raw item and user ids."""
        titles = genres = users = None
        names: tuple[str, ...] = ()
        if ds.items is not None:
            items = ds.items.set_index("item_id").reindex(item_ids)
            if "title" in items:
                titles = items["title"].fillna("").astype(str).to_numpy()
            if ds.genre_names:
                names = tuple(ds.genre_names)
                full = pd.DataFrame(ds.genre_matrix(), index=ds.items["item_id"], columns=names)
                genres = full.reindex(item_ids).fillna(False).to_numpy(bool)
        if ds.users is not None:
            users = ds.users.set_index("user_id").reindex(user_ids).reset_index()
        meta = cls(np.asarray(item_ids), np.asarray(user_ids), titles, genres, names, users)
        if not meta.has_demographics:
            meta.users = None  # none of these users has an age, gender or occupation
        return meta


def characteristic_threshold(
    shares: np.ndarray, size: int, min_share: float
) -> tuple[float, str | None]:
    """The share of a cluster's users an item needs to be listed as characteristic, and the
    rule when it is not ``min_share``: ``shares`` (I,) the share of the cluster's ``size``
    users who chose each item.

    ``min_share`` when some item reaches it; otherwise half the largest share, and at least
    2 users (a threshold above 1 when no item has 2 users: nothing is listed).
    """
    top = float(shares.max(initial=0.0))
    if top >= min_share:
        return min_share, None
    relaxed = max(top / 2, 2 / max(size, 1))
    return relaxed, (
        f"no item is chosen by {min_share:.0%} of the cluster; listed: items chosen by at "
        f"least half as many users as its most chosen item ({top:.1%}) and by 2 or more"
    )


def _top(d: dict[str, float], n: int) -> list[tuple[str, float]]:
    return sorted(d.items(), key=lambda kv: -kv[1])[:n]


def cluster_profiles(
    labels: np.ndarray, X: sp.csr_matrix, meta: ItemUserMeta, top_n: int = 5, min_share: float = 0.1
) -> list[dict]:
    """One profile dict per cluster (sorted by cluster id).

    Keys: ``cluster``, ``size``, ``share``, ``mean_activity``, ``top_genres`` (list of
    (genre, lift, share)), ``characteristic_items`` (list of dicts: item, title, lift,
    share; each chosen by at least ``items_min_share`` of the cluster, with ``items_rule``
    saying why when that is not ``min_share``: see :func:`characteristic_threshold`),
    ``demographics`` (age band / gender / top occupations: (value, share, lift)).
    """
    labels = np.asarray(labels)
    Xb = sp.csr_matrix(X, dtype=np.float64)
    Xb.data = np.ones_like(Xb.data)
    U = Xb.shape[0]
    activity = np.asarray(Xb.sum(axis=1)).ravel()  # (U,)
    item_share_all = np.asarray(Xb.sum(axis=0)).ravel() / max(U, 1)  # (I,)
    per_genre = None
    if meta.genres is not None and meta.genres.shape[1]:
        per_genre = np.asarray(Xb @ meta.genres.astype(np.float64))  # (U, G)
        genre_share_all = per_genre.sum(0) / max(activity.sum(), 1)
    demo_all = {}
    if meta.users is not None and meta.has_demographics:
        demo_all = _demographics(meta.users)
    out = []
    for c in np.unique(labels):
        rows = labels == c
        size = int(rows.sum())
        prof: dict = {
            "cluster": int(c),
            "size": size,
            "share": size / U,
            "mean_activity": float(activity[rows].mean()),
        }
        if per_genre is not None:
            share_c = per_genre[rows].sum(0) / max(activity[rows].sum(), 1)
            lift = np.divide(
                share_c, genre_share_all, out=np.zeros_like(share_c), where=genre_share_all > 0
            )
            order = np.argsort(-lift, kind="stable")[:top_n]
            prof["top_genres"] = [
                (meta.genre_names[g], float(lift[g]), float(share_c[g])) for g in order
            ]
        u_c = np.asarray(Xb[rows].sum(axis=0)).ravel() / size  # (I,)
        lift_i = np.divide(u_c, item_share_all, out=np.zeros_like(u_c), where=item_share_all > 0)
        threshold, rule = characteristic_threshold(u_c, size, min_share)
        eligible = np.flatnonzero(u_c >= threshold - 1e-12)  # (shares are counts / size)
        best = eligible[np.argsort(-lift_i[eligible], kind="stable")[:top_n]]
        prof["items_min_share"] = threshold
        if rule is not None:
            prof["items_rule"] = rule
        prof["characteristic_items"] = [
            {
                "item": meta.item_ids[i].item(),
                "title": None if meta.titles is None else str(meta.titles[i]),
                "lift": float(lift_i[i]),
                "share": float(u_c[i]),
            }
            for i in best
        ]
        if meta.users is not None and demo_all:
            sub = _demographics(meta.users[rows])
            prof["demographics"] = {
                key: [
                    (v, s, s / demo_all[key].get(v, np.nan))
                    for v, s in _top(sub[key], 3 if key == "occupation" else 8)
                ]
                for key in sub
            }
        out.append(prof)
    return out


def _demographics(users: pd.DataFrame) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    if "age" in users:
        bands = users["age"].dropna().map(age_band)
        out["age"] = bands.value_counts(normalize=True).to_dict()
    for col in ("gender", "occupation"):
        if col in users:
            out[col] = users[col].dropna().astype(str).value_counts(normalize=True).to_dict()
    return out
