"""Packaging: one version everywhere, optional packages behind extras with a one-line error."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import genrec
from genrec._optional import EXTRAS, require
from genrec.errors import GenrecError, MissingExtraError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(genrec.__file__).resolve().parents[1]  # the genrec under test (src/ or site-packages)
OPTIONAL = sorted(EXTRAS)  # top-level modules: matplotlib, openTSNE, pyarrow, sklearn, umap, ...


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _names(requirements: list[str]) -> set[str]:
    """Distribution names of requirement strings ("scikit-learn>=1.3; ..." -> scikit-learn)."""
    out = set()
    for r in requirements:
        name = r.split(";")[0].split("[")[0]
        for op in "<>=!~ ":
            name = name.split(op)[0]
        out.add(name.strip().lower())
    return out


# ------------------------------------------------------------------------------- version


def test_version_is_single_sourced_in_pyproject():
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    dynamic = _pyproject()["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "genrec.__version__"}


def test_cli_version_and_wheel_metadata_agree_with_dunder_version(tmp_path, capsys):
    from genrec.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.split() == ["genrec,", "version", genrec.__version__]
    # the metadata a wheel built from this tree gets (setuptools' own PEP 517 hook, no
    # network), built in a copy so that the tree gets no egg-info
    tree, out = tmp_path / "tree", tmp_path / "meta"
    tree.mkdir()
    out.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(
        ROOT / "src" / "genrec",
        tree / "src" / "genrec",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    code = (
        "import sys; from setuptools import build_meta as b; "
        "print(b.prepare_metadata_for_build_wheel(sys.argv[1]))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    dist_info = res.stdout.strip().splitlines()[-1]
    meta = (out / dist_info / "METADATA").read_text()
    assert f"\nVersion: {genrec.__version__}\n" in meta
    assert "\nName: genrec\n" in meta
    assert "\nLicense-Expression: MIT\n" in meta and "\nLicense-File: LICENSE\n" in meta


# ------------------------------------------------------------------------------ extras


def test_core_dependencies_leave_the_optional_packages_to_the_extras():
    project = _pyproject()["project"]
    core = _names(project["dependencies"])
    assert core == {"numpy", "scipy", "pandas", "torch", "click", "rich", "tomli"}
    extras = {k: _names(v) for k, v in project["optional-dependencies"].items()}
    for dist, extra in EXTRAS.values():
        assert dist.lower() in extras[extra], (dist, extra)
        assert dist.lower() not in core
    # dev pulls every extra (umap is kept as a part of analysis), so the suite runs everything
    (own,) = [d for d in project["optional-dependencies"]["dev"] if d.startswith("genrec[")]
    pulled = set(own[len("genrec[") : -1].split(","))
    assert pulled == set(project["optional-dependencies"]) - {"dev", "umap"}


def test_require_returns_the_module():
    assert require("scipy.sparse", "analysis", "Anything") is sp


def test_require_names_the_package_and_the_extra():
    with pytest.raises(MissingExtraError) as e:
        require("genrec_no_such_package.sub", "parquet", "Doing X")
    assert str(e.value) == (
        "Doing X needs the optional package genrec_no_such_package: pip install 'genrec[parquet]'"
    )
    assert isinstance(e.value, GenrecError) and isinstance(e.value, ImportError)


def test_require_passes_on_a_broken_install(tmp_path, monkeypatch):
    # an installed package whose own dependency is missing is not "the extra is missing"
    pkg = tmp_path / "genrec_fake_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import genrec_fake_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as e:
        require("genrec_fake_pkg", "analysis", "Doing X")
    assert not isinstance(e.value, MissingExtraError)
    assert e.value.name == "genrec_fake_missing_dependency"


@pytest.fixture
def block(monkeypatch):
    """block("sklearn", ...): those packages (and their loaded submodules) cannot be imported."""

    def _block(*tops: str) -> None:
        for name in list(sys.modules):
            if name.partition(".")[0] in tops:
                monkeypatch.setitem(sys.modules, name, None)
        for top in tops:
            monkeypatch.setitem(sys.modules, top, None)

    return _block


def _message(purpose: str, dist: str, extra: str) -> str:
    return f"{purpose} needs the optional package {dist}: pip install 'genrec[{extra}]'"


def test_analysis_without_scikit_learn(block):
    from genrec.analysis import embed_2d, fit_clusters, reduce_dim, svd_embeddings
    from genrec.models.ldiffrec import cluster_items, svd_item_embeddings

    X = sp.random(30, 12, density=0.3, format="csr", random_state=0)
    Y = np.random.default_rng(0).normal(size=(30, 4))
    block("sklearn", "openTSNE")
    extra = ("scikit-learn", "analysis")
    for fn, purpose in [
        (lambda: svd_embeddings(X, dim=3), "A truncated SVD of the interactions"),
        (lambda: reduce_dim(Y, dim=2), "Reducing embeddings by PCA"),
        (lambda: fit_clusters(Y, 3, method="kmeans"), "K-Means clustering"),
        (lambda: embed_2d(Y, method="tsne"), "A t-SNE map"),
        (lambda: svd_item_embeddings(X, 3), "L-DiffRec's item clustering"),
        (lambda: cluster_items(Y, 3), "L-DiffRec's item clustering"),
    ]:
        with pytest.raises(MissingExtraError) as e:
            fn()
        assert str(e.value) == _message(purpose, *extra)
    # the silhouette score is the one sklearn use inside genrec's own GMM path
    with pytest.raises(
        MissingExtraError, match="The silhouette score needs the optional package scikit-learn"
    ):
        fit_clusters(Y, 2, method="gmm")


@pytest.mark.slow
def test_tsne_falls_back_to_scikit_learn_without_opentsne(block):
    from genrec.analysis import embed_2d

    Y = np.random.default_rng(0).normal(size=(20, 3))
    block("openTSNE")
    xy = embed_2d(Y, method="tsne")
    assert xy.shape == (20, 2) and np.isfinite(xy).all()


def test_umap_map_without_umap_learn(block):
    from genrec.analysis import embed_2d

    block("umap")
    with pytest.raises(MissingExtraError) as e:
        embed_2d(np.zeros((10, 2)), method="umap")
    assert str(e.value) == _message("A UMAP map", "umap-learn", "analysis")


def test_plots_without_matplotlib(block, tmp_path):
    from genrec.analysis.report import map_png
    from genrec.foundations import plots

    block("matplotlib")
    with pytest.raises(MissingExtraError) as e:
        map_png(np.zeros((3, 2)), np.zeros(3, np.int64), "t")
    assert str(e.value) == _message("The PNG map", "matplotlib", "analysis")
    for fn in (
        lambda: plots.plot_trace([1.0, 2.0], tmp_path / "t.png", "bound"),
        lambda: plots.plot_gmm_2d(
            np.zeros((3, 2)),
            np.zeros(3, int),
            np.ones(1),
            np.zeros((1, 2)),
            np.eye(2)[None],
            "full",
            tmp_path / "g.png",
        ),
        lambda: plots.plot_jar_posteriors([(2, 1)], [(2, 1)], [0.1], [(1, 0)], tmp_path / "j.png"),
    ):
        with pytest.raises(MissingExtraError) as e:
            fn()
        assert str(e.value) == _message("The foundations plots", "matplotlib", "analysis")
    assert not list(tmp_path.iterdir())


def test_parquet_log_without_pyarrow(block, tmp_path):
    from genrec.data import load_dataset

    p = tmp_path / "log.parquet"
    pd.DataFrame({"user": [1, 2], "item": [1, 2]}).to_parquet(p)
    block("pyarrow")
    with pytest.raises(MissingExtraError) as e:
        load_dataset(p)
    assert str(e.value) == _message(f"{p}: reading a Parquet log", "pyarrow", "parquet")


@pytest.mark.slow
def test_core_works_without_any_optional_package(tmp_path):
    # a fresh interpreter where none of the optional packages can be imported: the core
    # install. A finder in front of sys.meta_path refuses them as a missing package would.
    log = tmp_path / "log.csv"
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}") for u in range(30) for i in rng.choice(25, 6, replace=False)]
    pd.DataFrame(rows, columns=["user", "item"]).to_csv(log, index=False)
    code = textwrap.dedent(f"""
        import json, sys
        BLOCKED = {OPTIONAL!r}

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Blocker())
        import genrec, genrec.models, genrec.data, genrec.analysis, genrec.foundations
        import genrec.foundations.plots, genrec.evaluate, genrec.protocols, genrec.train
        import genrec.cli, genrec.serve, genrec.serve.service
        from genrec.data import load_dataset
        from genrec.errors import MissingExtraError
        from genrec.evaluate import evaluate_ranking
        from genrec.models import EASE
        from genrec.protocols import ProtocolConfig, build_protocol

        ds = load_dataset(sys.argv[1])
        data = build_protocol(ds, ProtocolConfig(name="strong", n_heldout=0.2))
        model = EASE(l2=10.0).fit(data.train.matrix)
        metrics = evaluate_ranking(model, data.test, ks=(5,)).metrics
        items, _ = model.recommend(None, data.train.matrix[:2], k=3)
        try:
            genrec.analysis.svd_embeddings(data.train.matrix, dim=2)
            missing = None
        except MissingExtraError as e:
            missing = str(e)
        loaded = sorted({{m.partition(".")[0] for m in sys.modules}} & set(BLOCKED))
        print(json.dumps({{"recall": metrics["recall@5"], "shape": list(items.shape),
                          "missing": missing, "loaded": loaded}}))
    """)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    res = subprocess.run(
        [sys.executable, "-c", code, str(log)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    assert out["shape"] == [2, 3] and 0.0 <= out["recall"] <= 1.0
    assert out["missing"] == _message(
        "A truncated SVD of the interactions", "scikit-learn", "analysis"
    )
