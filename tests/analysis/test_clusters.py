"""Latent space of users: the acceptance test on synthetic taste groups, profiles, the CLI."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from genrec.analysis import (
    ItemUserMeta,
    cluster_profiles,
    fit_clusters,
    model_user_embeddings,
    reduce_dim,
    select_k,
    svd_embeddings,
)
from genrec.cli import main
from genrec.errors import ConfigError
from genrec.models import EASE, get_model_class
from tests.synthetic import write_pair_lists

K_GROUPS = 4


def taste_groups(n_users=240, n_items=80, k=K_GROUPS, p_in=0.35, p_out=0.02, seed=0):
    """Users of group g choose items of block g with p_in, any other item with p_out."""
    rng = np.random.default_rng(seed)
    groups = np.arange(n_users) % k
    block = np.arange(n_items) * k // n_items  # (I,) block of each item
    p = np.where(groups[:, None] == block[None, :], p_in, p_out)
    X = (rng.random((n_users, n_items)) < p).astype(np.float32)
    X[X.sum(1) == 0, 0] = 1
    return sp.csr_matrix(X), groups, block


@pytest.fixture(scope="module")
def trained():
    X, groups, block = taste_groups()
    vae = get_model_class("mult-vae")(
        hidden_dims=(64,),
        latent_dim=16,
        total_anneal_steps=200,
        train={"epochs": 60, "batch_size": 60, "seed": 0, "device": "cpu"},
    )
    vae.fit(X)
    return vae, X, groups, block


@pytest.mark.slow
def test_vae_latent_clusters_recover_taste_groups(trained):
    vae, X, groups, block = trained
    Z = model_user_embeddings(vae, X)
    Y = reduce_dim(Z, 8, seed=0)
    result = fit_clusters(Y, K_GROUPS, "gmm", seed=0)
    assert adjusted_rand_score(groups, result.labels) >= 0.9
    # each cluster's most over-represented "genre" is its group's block
    meta = ItemUserMeta(
        np.arange(X.shape[1]),
        np.arange(X.shape[0]),
        genres=np.eye(K_GROUPS, dtype=bool)[block],
        genre_names=tuple(f"block{g}" for g in range(K_GROUPS)),
    )
    for prof in cluster_profiles(result.labels, X, meta):
        members = groups[result.labels == prof["cluster"]]
        majority = np.bincount(members, minlength=K_GROUPS).argmax()
        assert prof["top_genres"][0][0] == f"block{majority}"
        assert prof["top_genres"][0][1] > 1.5


@pytest.mark.slow
def test_bic_picks_the_true_number_of_groups(trained):
    vae, X, groups, _ = trained
    Y = reduce_dim(model_user_embeddings(vae, X), 8, seed=0)
    best, table = select_k(Y, [2, 3, 4, 5, 6], "gmm", "bic", seed=0)
    assert best.k == K_GROUPS
    assert [r["k"] for r in table] == [2, 3, 4, 5, 6]


def test_kmeans_on_svd_embeddings_also_separates_groups():
    X, groups, _ = taste_groups(seed=1)
    users, items = svd_embeddings(X, dim=8, seed=0)
    assert users.shape == (X.shape[0], 8) and items.shape == (X.shape[1], 8)
    result = fit_clusters(reduce_dim(users, 8), K_GROUPS, "kmeans", seed=0)
    assert adjusted_rand_score(groups, result.labels) >= 0.9
    assert result.silhouette > 0.1 and (result.proba == 1).all()


def test_profile_lifts_by_hand():
    # users 0,1 in cluster 0; user 2 in cluster 1; items: 0 genre A, 1 genre B, 2 genre A
    X = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1]], np.float32))
    meta = ItemUserMeta(
        np.array([10, 11, 12]),
        np.array([1, 2, 3]),
        titles=np.array(["a", "b", "c"]),
        genres=np.array([[1, 0], [0, 1], [1, 0]], bool),
        genre_names=("A", "B"),
        users=pd.DataFrame({"user_id": [1, 2, 3], "age": [20, 30, 60], "gender": ["F", "F", "M"]}),
    )
    p0, p1 = cluster_profiles(np.array([0, 0, 1]), X, meta, min_share=0.0)
    # population: 5 interactions, A: 3, B: 2. cluster 0: 3 interactions, A: 2, B: 1
    lifts = {g: lift for g, lift, _ in p0["top_genres"]}
    assert lifts["A"] == pytest.approx((2 / 3) / (3 / 5))
    assert lifts["B"] == pytest.approx((1 / 3) / (2 / 5))
    # item 10: chosen by 2/2 of cluster 0, 2/3 of everyone: lift 1.5
    assert p0["characteristic_items"][0] == {
        "item": 10,
        "title": "a",
        "lift": pytest.approx(1.5),
        "share": 1.0,
    }
    assert p0["size"] == 2 and p0["mean_activity"] == 1.5
    assert dict((v, s) for v, s, _ in p0["demographics"]["gender"]) == {"F": 1.0}
    assert p1["demographics"]["age"][0][0] == "56+"


def test_k_larger_than_users_is_an_error():
    with pytest.raises(ConfigError, match="k = 5 clusters for 3 users"):
        fit_clusters(np.zeros((3, 2)), 5)


def test_model_without_embeddings_is_refused():
    X = sp.csr_matrix(np.eye(4, dtype=np.float32))
    with pytest.raises(ConfigError, match="ease has no user embeddings.*svd_embeddings"):
        model_user_embeddings(EASE(l2=1.0).fit(X), X)


# ----------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def ease_run(tmp_path_factory):
    from tests.synthetic import write_ml100k

    tmp = tmp_path_factory.mktemp("clusters")
    data = write_ml100k(tmp / "ml-100k", n_users=80)
    assert (
        main(
            [
                "train",
                "--model",
                "ease",
                "--dataset",
                str(data),
                "--set",
                "l2=5",
                "--out",
                str(tmp / "ease"),
            ]
        )
        == 0
    )
    return tmp / "ease"


@pytest.mark.slow
def test_cli_clusters_writes_report(ease_run, tmp_path, capsys):
    out = tmp_path / "cl"
    code = main(
        [
            "clusters",
            str(ease_run),
            "--embedding",
            "svd",
            "--k-range",
            "2-3",
            "--method",
            "kmeans",
            "--out",
            str(out),
            "--output",
            str(tmp_path / "s.json"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    for name in ("clusters.csv", "map.png", "map.html", "report.html", "profiles.json"):
        assert (out / name).is_file(), name
    labels = pd.read_csv(out / "clusters.csv")
    assert labels.columns.tolist() == ["user_id", "cluster", "probability"]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["k"] in (2, 3) and len(summary["k_table"]) == 2
    assert sum(p["size"] for p in summary["profiles"]) == len(labels)
    page = (out / "report.html").read_text()
    assert "<canvas" in page and "over-represented genres" in page and "silhouette" in page
    assert (out / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args,match",
    [
        (["--k", "3"], "has no user embeddings"),
        (["--embedding", "svd", "--k", "500"], "larger than the number of users"),
        (
            ["--embedding", "svd", "--method", "kmeans", "--criterion", "bic"],
            "BIC needs a likelihood: use --method gmm, or --criterion silhouette",
        ),
    ],
)
def test_cli_clusters_bad_input(ease_run, tmp_path, capsys, args, match):
    code = main(["clusters", str(ease_run), *args, "--map", "none", "--out", str(tmp_path)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and match in err and "Traceback" not in err
    assert "='" not in err  # the options are named as this command spells them


def test_cli_clusters_without_genre_metadata_says_so(tmp_path, capsys):
    data = write_pair_lists(tmp_path / "p", n_users=40)
    assert (
        main(
            [
                "train",
                "--model",
                "ease",
                "--dataset",
                str(data),
                "--set",
                "l2=5",
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    code = main(
        [
            "clusters",
            str(tmp_path / "m"),
            "--embedding",
            "svd",
            "--k",
            "2",
            "--map",
            "none",
            "--out",
            str(tmp_path / "c"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    assert "no genre metadata" in err


def test_cli_clusters_edge_values_are_not_tracebacks(ease_run, tmp_path, capsys):
    from genrec.io import load_arrays

    n = int((np.diff(load_arrays(ease_run / "data.npz")["indptr"]) > 0).sum())
    base = ["clusters", str(ease_run), "--embedding", "svd", "--map", "none"]
    # one cluster per user: the silhouette is undefined, not an error
    code = main([*base, "--k", str(n), "--method", "kmeans", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    summary = json.loads(
        (tmp_path / "a" / "profiles.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"{c} is not strict JSON"),
    )
    assert summary["k"] == n and summary["silhouette"] is None
    code = main([*base, "--pca", "0", "--out", str(tmp_path / "b")])
    assert code == 2 and "--pca" in capsys.readouterr().err
    code = main([*base, "--k-range", "5-2", "--out", str(tmp_path / "c")])
    assert code == 1 and "LO is above HI" in capsys.readouterr().err
    code = main([*base, "--k-range", "2-1000000000000", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 1 and "at most 100" in err and "--k" in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()
    code = main(
        [
            *base,
            "--k-range",
            f"{n - 1}-{n + 3}",
            "--method",
            "kmeans",
            "--criterion",
            "silhouette",
            "--out",
            str(tmp_path / "d"),
        ]
    )
    out = capsys.readouterr()
    assert code == 0 and f"K above the {n} users" in out.err and "chosen by silhouette" in out.out


@pytest.mark.slow
def test_cli_clusters_failing_late_leaves_the_earlier_files(
    ease_run, tmp_path, capsys, monkeypatch
):
    """The report is built after the labels: a failure there must not leave a new
    clusters.csv beside the earlier run's profiles and map."""
    import genrec.analysis.report as report

    out = tmp_path / "cl"
    base = [
        "clusters",
        str(ease_run),
        "--embedding",
        "svd",
        "--method",
        "kmeans",
        "--out",
        str(out),
    ]
    assert main([*base, "--k", "3"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()

    def fail(**_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "report_html", fail)
    assert main([*base, "--k", "2"]) != 0
    assert "No space left" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.slow
def test_cli_clusters_map_none_removes_an_earlier_map(ease_run, tmp_path, capsys):
    out = tmp_path / "cl"
    base = [
        "clusters",
        str(ease_run),
        "--embedding",
        "svd",
        "--method",
        "kmeans",
        "--out",
        str(out),
    ]
    assert main([*base, "--k", "3"]) == 0
    assert (out / "report.html").is_file()
    capsys.readouterr()
    assert main([*base, "--k", "2", "--map", "none"]) == 0
    assert "removed map.png, map.html, report.html" in capsys.readouterr().err
    assert not any((out / f).exists() for f in ("map.png", "map.html", "report.html"))
    assert json.loads((out / "profiles.json").read_text())["k"] == 2


def test_identical_embeddings_are_refused_not_clustered():
    # a collapsed encoder: the same mean for every user (up to float32 rounding)
    Z = np.tile(np.float32([0.3, -1.2, 5.0]), (40, 1)).astype(np.float64)
    with pytest.raises(ConfigError, match="same embedding.*embedding='svd'"):
        reduce_dim(Z, 2)
    Z[:, 1] = np.arange(40)  # one informative column: kept; the constant ones stay 0
    Y = reduce_dim(Z, None)
    assert np.all(Y[:, [0, 2]] == 0) and np.isclose(Y[:, 1].std(), 1.0)


@pytest.mark.slow
def test_small_map_needs_no_perplexity_correction(capfd, caplog):
    from genrec.analysis import embed_2d

    xy = embed_2d(np.random.default_rng(0).normal(size=(5, 3)), "tsne", seed=0)
    assert xy.shape == (5, 2) and np.isfinite(xy).all()
    # openTSNE logged "Perplexity value 2 is too high" for 5 points
    assert "too high" not in caplog.text + capfd.readouterr().err


def test_k_range_list_with_repeats_is_fitted_once():
    from genrec.cli.clusters import _parse_k_range

    assert _parse_k_range("4,3,3,4") == [3, 4]


def test_cli_clusters_umap_missing_fails_before_fitting(ease_run, tmp_path, capsys, monkeypatch):
    import importlib.util

    import genrec.analysis

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "umap" else real(name, *a)
    )
    monkeypatch.setattr(
        genrec.analysis.pipeline,
        "fit_clusters",
        lambda *a, **k: pytest.fail("clustered before checking --map umap"),
    )
    code = main(
        [
            "clusters",
            str(ease_run),
            "--embedding",
            "svd",
            "--k",
            "2",
            "--map",
            "umap",
            "--out",
            str(tmp_path / "u"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "umap-learn" in err and "Traceback" not in err
    assert not (tmp_path / "u").exists()


def test_cli_clusters_single_candidate_k_range_is_not_reported_as_k(ease_run, tmp_path, capsys):
    code = main(
        [
            "clusters",
            str(ease_run),
            "--embedding",
            "svd",
            "--method",
            "kmeans",
            "--k-range",
            "3",
            "--map",
            "none",
            "--out",
            str(tmp_path / "c"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "c" / "profiles.json").read_text())
    assert summary["k"] == 3 and summary["k chosen by"] != "--k"


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_cli_clusters_out_of_range_seed_names_the_option(ease_run, tmp_path, capsys, seed):
    code = main(
        [
            "clusters",
            str(ease_run),
            "--embedding",
            "svd",
            "--k",
            "2",
            "--map",
            "none",
            "--seed",
            seed,
            "--out",
            str(tmp_path / "s"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--seed" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_cli_clusters_refuses_a_criterion_with_k(ease_run, tmp_path, capsys):
    code = main(
        [
            "clusters",
            str(ease_run),
            "--embedding",
            "svd",
            "--k",
            "3",
            "--criterion",
            "bic",
            "--out",
            str(tmp_path / "c"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--criterion" in err and "nothing to choose" in err
    assert not (tmp_path / "c").exists()


def test_cli_clusters_says_when_no_pca_ran(ease_run, tmp_path, capsys):
    code = main(
        [
            "clusters",
            str(ease_run),
            "--embedding",
            "svd",
            "--k",
            "2",
            "--pca",
            "500",
            "--map",
            "none",
            "--out",
            str(tmp_path / "c"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "c" / "profiles.json").read_text())
    space = summary["clustering space"]
    d = int(space.split()[0])  # the SVD embedding's width, all kept
    assert space == f"{d} standardized dims (no PCA: pca_dim 500 >= {d})"
    code = main(
        [
            "clusters",
            str(ease_run),
            "--embedding",
            "svd",
            "--k",
            "2",
            "--pca",
            "2",
            "--map",
            "none",
            "--out",
            str(tmp_path / "d"),
        ]
    )
    assert code == 0
    assert (
        json.loads((tmp_path / "d" / "profiles.json").read_text())["clustering space"]
        == "2 PCA dims"
    )


def test_cli_clusters_reports_empty_clusters(ease_run, tmp_path, capsys, monkeypatch):
    import genrec.analysis as analysis
    import genrec.analysis.pipeline  # noqa: F401
    from genrec.analysis.clustering import Clustering

    def one_cluster_of_three(Y, k, method, seed):  # as duplicate points can leave
        n = len(Y)
        return Clustering(np.zeros(n, int), np.ones(n), k, method, float("nan"), None)

    monkeypatch.setattr(analysis.pipeline, "fit_clusters", one_cluster_of_three)
    code = main(
        [
            "clusters",
            str(ease_run),
            "--embedding",
            "svd",
            "--k",
            "3",
            "--map",
            "none",
            "--out",
            str(tmp_path / "c"),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "2 of the 3 clusters came out empty" in " ".join(out.err.split())
    assert "1 (of K = 3) clusters" in " ".join(out.out.split())
    summary = json.loads((tmp_path / "c" / "profiles.json").read_text())
    assert summary["k"] == 3 and summary["clusters found"] == 1 and len(summary["profiles"]) == 1


# ----------------------------------------------------------------------------- VQ codes
def test_code_clusters_are_the_codes_ranked_by_size():
    from genrec.analysis.clustering import code_clusters

    Y = np.random.default_rng(0).standard_normal((7, 2))
    c = code_clusters(Y, np.array([9, 3, 9, 5, 3, 9, 5]))
    # 9 (three users) is cluster 0; 3 and 5 (two each) follow, the lower code first
    np.testing.assert_array_equal(c.labels, [0, 1, 0, 2, 1, 0, 2])
    assert c.k == 3 and c.method == "codes" and c.bic is None
    residual = code_clusters(Y, np.array([[1, 0], [1, 5], [2, 0], [1, 1], [2, 2], [3, 0], [1, 0]]))
    np.testing.assert_array_equal(residual.labels, [0, 0, 1, 0, 1, 2, 0])  # the first level


def test_vq_vae_codes_are_clusters_that_recover_taste_groups():
    from genrec.analysis.pipeline import cluster_users

    X, groups, _ = taste_groups()
    vq = get_model_class("vq-vae")(
        hidden_dims=(32,),
        code_dim=8,
        n_codes=4,
        restart_every=20,
        dropout=0.2,
        train={"epochs": 40, "batch_size": 40, "lr": 1e-2, "device": "cpu"},
    ).fit(X)
    ids = np.arange(X.shape[0])
    report = cluster_users(vq, X, ids, np.arange(X.shape[1]), method="codes", map_method="none")
    assert report.summary["k chosen by"] == "the model's codes"
    np.testing.assert_array_equal(report.result.labels, code_rank(vq.user_codes(X)))
    assert adjusted_rand_score(groups, report.result.labels) >= 0.8
    with pytest.raises(ConfigError, match="no K to fix or choose"):
        cluster_users(vq, X, ids, np.arange(X.shape[1]), method="codes", k=3, map_method="none")
    with pytest.raises(ConfigError, match="no discrete user codes"):
        cluster_users(
            EASE(l2=1.0).fit(X),
            X,
            ids,
            np.arange(X.shape[1]),
            method="codes",
            embedding="svd",
            map_method="none",
        )


def code_rank(codes):
    """Codes renumbered by size (the most common 0), by a direct count."""
    counts = {c: int((codes == c).sum()) for c in set(codes.tolist())}
    order = sorted(counts, key=lambda c: (-counts[c], c))
    return np.array([order.index(c) for c in codes.tolist()])


def test_cli_clusters_codes_of_a_model_without_codes_is_one_line(ease_run, tmp_path, capsys):
    code = main(
        ["clusters", str(ease_run), "--method", "codes", "--embedding", "svd", "--map", "none"]
        + ["--out", str(tmp_path / "c")]
    )
    err = capsys.readouterr().err
    assert code != 0 and "no discrete user codes" in err and "--method gmm or kmeans" in err
    assert "Traceback" not in err and not (tmp_path / "c").exists()
