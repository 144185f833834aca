"""``cluster_users``: embed a model's users, cluster them, map them and profile each cluster,
as one library call (``genrec clusters`` renders its result).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from genrec.analysis.clustering import (
    Clustering,
    code_clusters,
    fit_clusters,
    reduce_dim,
    select_k,
)
from genrec.analysis.embeddings import model_user_embeddings, svd_embeddings
from genrec.analysis.maps import embed_2d
from genrec.analysis.profiles import ItemUserMeta, cluster_profiles
from genrec.data import Sequences
from genrec.errors import ConfigError, MissingExtraError
from genrec.io import to_json

__all__ = ["ClusterReport", "cluster_users", "MAX_K_CANDIDATES"]

MAX_K_CANDIDATES = 100  # each candidate K is a full clustering fit

log = logging.getLogger("genrec.analysis")


@dataclass
class ClusterReport:
    """What :func:`cluster_users` found, and the files to write (name -> contents)."""

    result: Clustering
    summary: dict[str, Any]
    profiles: list[dict]
    k_table: list[dict] | None
    files: dict[str, str | bytes]
    title: str
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def cluster_users(
    model: Any,
    X: sp.csr_matrix,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    *,
    dataset: Any = None,
    titles: np.ndarray | None = None,
    k: int | None = None,
    ks: Sequence[int] = tuple(range(2, 13)),
    method: Literal["gmm", "kmeans", "codes"] = "gmm",
    criterion: Literal["bic", "silhouette"] | None = None,
    map_method: Literal["tsne", "umap", "none"] = "tsne",
    embedding: Literal["model", "svd"] = "model",
    pca_dim: int = 16,
    seed: int = 0,
    model_name: str = "model",
    dataset_name: str = "data",
    on_step: Callable[[str, int, int], None] | None = None,
    sequences: Sequences | None = None,
) -> ClusterReport:
    """Cluster the users with interactions in ``X`` (U, I, the training matrix: row u is
    training user u; raw ids ``user_ids``,
    ``item_ids``; item metadata from ``dataset`` or just ``titles``) and build the files
    (``clusters.csv``, ``profiles.json`` and, with a map, ``map.png``, ``map.html`` and
    ``report.html``).

    ``k`` fixes the number of clusters; otherwise it is chosen among ``ks`` by ``criterion``
    (default BIC for GMM, silhouette for K-means). ``method="codes"`` takes a model's
    discrete user codes as the clusters (a VQ-VAE's ``user_codes``; the first level of
    product or residual codes), so ``k`` and ``criterion`` do not apply.
    ``on_step(stage, done, total)`` reports progress. A sequential model embeds each user's
    ordered history: ``sequences`` (U users, row u training user u; a run folder keeps
    them, ``Run.data.sequences``).
    """
    from genrec.analysis.report import labels_csv, map_html, map_png, report_html

    step = on_step or (lambda stage, done, total: None)
    notes: list[str] = []
    active = np.flatnonzero(np.diff(X.indptr) > 0)
    Xa = X[active]
    uids = np.asarray(user_ids)[active]
    n = len(active)
    if k is not None and not 1 <= k <= n:
        raise ConfigError(
            f"k {k} is larger than the number of users with interactions ({n})"
            if k > n
            else f"k must be >= 1, got {k}"
        )
    if k is not None and criterion is not None:
        raise ConfigError(
            "the criterion chooses K among candidates; with a fixed k there is "
            "nothing to choose: drop k or the criterion"
        )
    if method == "codes":
        if not hasattr(model, "user_codes"):
            raise ConfigError(
                f"model {model_name} has no discrete user codes (method 'codes' is for the "
                f"VQ-VAE); use method 'gmm' or 'kmeans'"
            )
        if k is not None or criterion is not None:
            raise ConfigError(
                "method 'codes' takes the model's codes as the clusters: there is no K to "
                "fix or choose; drop k and the criterion"
            )
    cand = [k] if k is not None else sorted(set(ks))
    if len(cand) > MAX_K_CANDIDATES:
        raise ConfigError(
            f"{len(cand)} candidate K, at most {MAX_K_CANDIDATES} (each is a full fit)"
        )
    if k is None and max(cand) > n:
        cand = [x for x in cand if x <= n]
        if not cand:
            raise ConfigError(f"every candidate K exceeds the {n} users with interactions")
        notes.append(f"candidate K above the {n} users with interactions dropped")
    meta = (
        ItemUserMeta.from_dataset(dataset, np.asarray(item_ids), uids)
        if dataset is not None
        else ItemUserMeta(np.asarray(item_ids), uids, titles)
    )
    sequential = embedding == "model" and model.capabilities.sequential
    if sequential and sequences is None:
        raise ConfigError(
            f"model {model_name} embeds a user's items in order: pass the users' ordered "
            f"histories (sequences=, a run's data.sequences), or use embedding='svd'"
        )
    crit = criterion or ("bic" if method == "gmm" else "silhouette")
    if method == "codes":
        cand = [1]  # nothing is chosen: the codes are the clusters
    if map_method == "umap":
        from importlib.util import find_spec

        if find_spec("umap") is None:  # fail before the fits
            raise MissingExtraError(
                "A UMAP map needs the optional package umap-learn: pip "
                "install 'genrec[analysis]' (or use a t-SNE map)"
            )
    if meta.genres is None:
        notes.append(
            f"{dataset_name} has no genre metadata; cluster profiles list "
            f"characteristic items"
            + (" and demographics" if meta.has_demographics else "")
            + " only"
        )
    # each stage logs one line with its time: shown without a terminal, where the CLI's
    # progress bars are not (a t-SNE map of 20,000 users takes minutes)
    t0 = time.perf_counter()
    step("embedding", 0, 1)
    if embedding == "svd":
        Z = svd_embeddings(Xa, seed=seed)[0]
    else:
        histories = sequences.take(active) if sequential and sequences is not None else Xa
        Z = model_user_embeddings(model, histories, users=active)
    Y = reduce_dim(Z, pca_dim, seed)
    t = _logged(t0, "clusters: %s embeddings of %d users (%d dims)", embedding, n, Z.shape[1])
    step("clustering", 0, len(cand))
    if method == "codes":
        result, k_table = code_clusters(Y, model.user_codes(Xa), seed), None
    elif len(cand) == 1:
        result, k_table = fit_clusters(Y, cand[0], method, seed), None
    else:
        done = iter(range(1, len(cand) + 1))
        result, k_table = select_k(
            Y, cand, method, crit, seed, on_step=lambda _: step("clustering", next(done), len(cand))
        )
    step("clustering", len(cand), len(cand))
    among = f" chosen among {len(cand)} candidates" if len(cand) > 1 else ""
    t = _logged(t, "clusters: %s, K = %d%s", method, result.k, among)
    xy = None
    if map_method != "none":
        step(f"{map_method} map", 0, 1)
        xy = embed_2d(Y, map_method, seed)
        t = _logged(t, "clusters: %s map of %d users", map_method, n)
    profiles = cluster_profiles(result.labels, Xa, meta)
    relaxed = [p for p in profiles if "items_rule" in p]
    if relaxed:  # the threshold docs/analysis.md states, said where it does not hold
        notes.append(
            f"in {len(relaxed)} of {len(profiles)} clusters no item is chosen by 10% of "
            f"the users; their characteristic items are those chosen by at least half as "
            f"many users as the cluster's most chosen item (items_rule and items_min_share "
            f"in profiles.json)"
        )
    files: dict[str, str | bytes] = {"clusters.csv": labels_csv(uids, result.labels, result.proba)}
    activity = np.diff(Xa.indptr)
    top_genres = None
    if meta.genres is not None:
        g = np.asarray(Xa @ meta.genres.astype(np.float64))
        top_genres = [
            "/".join(meta.genre_names[j] for j in np.argsort(-row)[:2] if row[j] > 0) for row in g
        ]
    found = len(np.unique(result.labels))  # duplicate points can leave a cluster empty
    shown = f"{result.k}" if found == result.k else f"{found} (of K = {result.k})"
    if found < result.k:
        notes.append(
            f"{result.k - found} of the {result.k} clusters came out empty (users "
            f"with identical embeddings); {found} are listed"
        )
    title = f"{model_name} users of {dataset_name}: {shown} clusters ({method})"
    space = (
        f"{Y.shape[1]} PCA dims"
        if pca_dim < min(Z.shape)
        else f"{Y.shape[1]} standardized dims (no PCA: pca_dim {pca_dim} >= {min(Z.shape)})"
    )
    summary = {
        "model": model_name,
        "dataset": dataset_name,
        "users": n,
        "embedding": embedding,
        "clustering space": space,
        "method": method,
        "k": result.k,
        "clusters found": found,
        "silhouette": round(result.silhouette, 4),
        "k chosen by": (
            "the model's codes"
            if method == "codes"
            else crit
            if k_table
            else ("k" if k is not None else "one candidate")
        ),
        "map": map_method,
    }
    if xy is not None:
        png = map_png(xy, result.labels, title)
        files["map.png"] = png
        files["map.html"] = map_html(xy, result.labels, uids, activity, top_genres, title)
        files["report.html"] = report_html(
            title=title,
            summary=summary,
            profiles=profiles,
            png=png,
            xy=xy,
            labels=result.labels,
            user_ids=uids,
            activity=activity,
            top_genres=top_genres,
            k_table=k_table,
        )
    _logged(t, "clusters: profiles of %d clusters, files", found)
    seconds = time.perf_counter() - t0
    payload = {
        **summary,
        "bic": result.bic,
        "k_table": k_table,  # NaN silhouette -> null
        "profiles": profiles,
        "seconds": seconds,
    }
    files["profiles.json"] = to_json(payload)
    return ClusterReport(result, summary, profiles, k_table, files, title, notes, seconds)


def _logged(since: float, message: str, *args: Any) -> float:
    """Log ``message`` with the seconds since ``since``; the time now."""
    now = time.perf_counter()
    log.info(message + " %.1fs", *args, now - since)
    return now
