"""Bulk export: ``Run.recommend_all`` and ``genrec recommend RUN --all-users --output FILE``
give every user the list that ``recommend --user`` gives, written atomically."""

import json
import sys

import numpy as np
import pandas as pd
import pytest

from genrec.cli import main
from genrec.errors import ConfigError, MissingExtraError
from genrec.runs import RunSpec, load_run, train_run, write_recommendations
from genrec.runs.export import default_batch_size, export_format
from tests.synthetic import write_ml100k

SEQ = {"protocol": {"name": "seq-loo"}, "train": {"epochs": 2, "device": "cpu"}}
MODELS = {  # closed form, sequential (torch), autoencoder (torch)
    "ease": {"l2": 5.0},
    "gru4rec": SEQ,
    "mult-vae": {"hidden_dims": [16], "latent_dim": 8, "train": {"epochs": 2, "device": "cpu"}},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Small finished runs on a synthetic ML-100K (60 users, 40 items, with titles)."""
    root = tmp_path_factory.mktemp("export")
    data = write_ml100k(root / "ml-100k")
    out = {}
    for model, values in MODELS.items():
        values = {"model": model, "dataset": str(data), **values}
        out[model] = train_run(RunSpec.from_mapping(values, out=root / model)).out
    return out


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _rows(batches):
    frames = [
        pd.DataFrame(
            {"user": b.user, "rank": b.rank, "item": b.item, "score": b.score}
            | ({} if b.title is None else {"title": b.title})
        )
        for b in batches
    ]
    return pd.concat(frames, ignore_index=True)


def _same_lists(table, run, k, include_seen=False):
    """Every user's rows in ``table`` are ``run.recommend(user=...)``'s list: the same
    items in the same order, scores equal up to float32 rounding."""
    assert table["user"].tolist() == sorted(table["user"].tolist(), key=run.users.index)
    groups = dict(list(table.groupby("user", sort=False)))
    for u in run.users.raw.tolist():
        want = run.recommend(user=u, k=k, include_seen=include_seen).items
        got = groups.get(u, table.iloc[:0])
        assert got["item"].tolist() == [r["item"] for r in want], u
        assert got["rank"].tolist() == list(range(1, len(want) + 1))
        np.testing.assert_allclose(
            got["score"].to_numpy(np.float32),
            np.array([r["score"] for r in want], np.float32),
            rtol=1e-5,
            atol=1e-6,
        )
        if "title" in got:
            assert got["title"].tolist() == [r["title"] for r in want]


# ------------------------------------------------------------------------------ library


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("batch_size", [7, None])
def test_recommend_all_gives_every_user_the_list_recommend_gives(runs, model, batch_size):
    run = load_run(runs[model])
    batches = list(run.recommend_all(k=12, batch_size=batch_size))
    assert sum(b.n_users for b in batches) == len(run.users)
    if batch_size == 7:
        assert len(batches) == -(-len(run.users) // 7)  # batched, not one call per user
    _same_lists(_rows(batches), run, k=12)


def test_recommend_all_scores_each_batch_in_one_call(runs, monkeypatch):
    run = load_run(runs["ease"])
    calls = []
    original = type(run.model).recommend

    def counted(self, users, X_users, **kw):
        calls.append(len(users))
        return original(self, users, X_users, **kw)

    monkeypatch.setattr(type(run.model), "recommend", counted)
    list(run.recommend_all(k=5, batch_size=25))
    assert calls == [25, 25, len(run.users) - 50]


def test_include_seen_and_a_k_past_the_unseen_items(runs):
    run = load_run(runs["ease"])
    n_items = run.data.train.shape[1]
    seen = _rows(run.recommend_all(k=n_items, include_seen=True))
    assert (seen.groupby("user").size() == n_items).all()  # every item, seen ones too
    _same_lists(seen, run, k=n_items, include_seen=True)
    unseen = _rows(run.recommend_all(k=10**6))  # clamped; each user's unseen items only
    known = np.diff(run.data.known.indptr)
    sizes = unseen.groupby("user", sort=False).size()
    assert sizes.tolist() == (n_items - known)[known < n_items].tolist()
    _same_lists(unseen, run, k=n_items)


def test_recommend_all_refuses_a_bad_k_or_batch_size(runs):
    run = load_run(runs["ease"])
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="k must be a positive integer"):
            run.recommend_all(k=bad)
    with pytest.raises(ConfigError, match="batch_size must be at least 1"):
        run.recommend_all(k=3, batch_size=0)
    assert default_batch_size(3706) == 1024 and default_batch_size(10**6) == 16
    assert default_batch_size(10**9) == 1


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_recommendations_streams_and_reads_back(runs, tmp_path, suffix):
    run = load_run(runs["gru4rec"])
    out = tmp_path / f"recs{suffix}"
    seen = []
    n = write_recommendations(out, run.recommend_all(k=4, batch_size=9), on_batch=seen.append)
    table = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert n == len(table) == sum(len(b) for b in seen) and len(seen) == -(-len(run.users) // 9)
    assert list(table.columns) == ["user", "rank", "item", "score", "title"]  # titles known
    _same_lists(table, run, k=4)
    if suffix == ".csv":  # each score reads back as the same float32
        direct = _rows(run.recommend_all(k=4, batch_size=9))  # the same batches: same sums
        assert (table["score"].to_numpy(np.float32) == direct["score"].to_numpy()).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failure_while_writing_leaves_no_partial_file_and_the_old_one(
    runs, tmp_path, suffix, error
):
    run = load_run(runs["ease"])
    out = tmp_path / f"recs{suffix}"
    out.write_bytes(b"the earlier export")

    def failing():
        batches = run.recommend_all(k=3, batch_size=10)
        yield next(batches)
        yield next(batches)
        raise error("stopped after two batches")

    with pytest.raises(error):
        write_recommendations(out, failing())
    assert out.read_bytes() == b"the earlier export"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left


def test_export_format_from_the_suffix_or_the_option(tmp_path):
    assert export_format("a.csv") == "csv" and export_format("a.PARQUET") == "parquet"
    assert export_format("a.pq") == "parquet" and export_format("a.txt", "csv") == "csv"
    with pytest.raises(ConfigError, match="cannot tell the format from the suffix '.json'"):
        export_format("a.json")
    with pytest.raises(ConfigError, match="unknown export format 'xlsx'"):
        export_format("a.csv", "xlsx")


def test_parquet_without_pyarrow_names_the_extra(runs, tmp_path, monkeypatch, capsys):
    for name in [m for m in sys.modules if m.partition(".")[0] == "pyarrow"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    run = load_run(runs["ease"])
    out = tmp_path / "recs.parquet"
    with pytest.raises(MissingExtraError, match=r"pip install 'genrec\[parquet\]'"):
        write_recommendations(out, run.recommend_all(k=3))
    code, _, err = cli(capsys, "recommend", runs["ease"], "--all-users", "--output", out)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "needs the optional package pyarrow: pip install 'genrec[parquet]'" in err
    assert not list(tmp_path.iterdir())
    csv = out.with_suffix(".csv")
    code, _, err = cli(capsys, "recommend", runs["ease"], "--all-users", "--output", csv)
    assert code == 0, err  # CSV needs nothing more


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize("model", list(MODELS))
def test_all_users_file_equals_recommend_user_for_every_user(runs, tmp_path, capsys, model):
    folder = runs[model]
    k = 7
    files = {}
    for suffix in (".csv", ".parquet"):
        files[suffix] = tmp_path / f"recs{suffix}"
        code, _, err = cli(
            capsys, "recommend", folder, "--all-users", "-k", k, "--output", files[suffix]
        )
        assert code == 0, err
        assert f"wrote {files[suffix]}" in err
    csv, parquet = pd.read_csv(files[".csv"]), pd.read_parquet(files[".parquet"])
    assert csv["item"].tolist() == parquet["item"].tolist()
    users = load_run(folder).users.raw.tolist()
    for u in users:
        code, _, err = cli(
            capsys, "recommend", folder, "--user", u, "-k", k, "--output", tmp_path / "u.json"
        )
        assert code == 0, err
        want = json.loads((tmp_path / "u.json").read_text())["recommendations"]
        for table in (csv, parquet):
            got = table[table["user"] == u]
            assert got["item"].tolist() == [r["item"] for r in want]
            assert got["title"].tolist() == [r["title"] for r in want]
            np.testing.assert_allclose(
                got["score"], [r["score"] for r in want], rtol=1e-5, atol=1e-6
            )


def test_all_users_include_seen_format_option_and_batch_size(runs, tmp_path, capsys):
    out = tmp_path / "recs.data"  # no known suffix: --format names it
    code, _, err = cli(
        capsys, "recommend", runs["ease"], "--all-users", "--include-seen", "-k", 40,
        "--format", "parquet", "--batch-size", 16, "--output", out,
    )  # fmt: skip
    assert code == 0, err
    table = pd.read_parquet(out)
    run = load_run(runs["ease"])
    _same_lists(table, run, k=40, include_seen=True)
    assert "users written" in err  # not a terminal: progress as log lines


@pytest.mark.parametrize(
    "args, message",
    [
        (["--all-users", "--user", "1", "--output", "r.csv"], "leave out --user"),
        (["--all-users", "--items", "1,2", "--output", "r.csv"], "leave out --items"),
        (["--all-users"], "--all-users needs --output FILE"),
        (["--all-users", "--output", "r.json"], "cannot tell the format from the suffix"),
        (["--user", "1", "--format", "csv"], "--format goes with --all-users"),
        (["--user", "1", "--batch-size", "8"], "--batch-size goes with --all-users"),
    ],
)
def test_all_users_refusals_are_one_line(runs, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "recommend", runs["ease"], *args)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.iterdir())


def test_ctrl_c_during_the_export_keeps_the_earlier_file(runs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "recs.csv"
    code, _, err = cli(capsys, "recommend", runs["ease"], "--all-users", "-k", 3, "--output", out)
    assert code == 0, err
    before = out.read_bytes()
    from genrec.runs import export

    original = export._columns
    calls = []

    def interrupted(rows):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(rows)

    monkeypatch.setattr(export, "_columns", interrupted)
    code, _, err = cli(
        capsys, "recommend", runs["ease"], "--all-users", "-k", 5, "--batch-size", 10,
        "--output", out,
    )  # fmt: skip
    assert code == 130, err  # Ctrl-C: "aborted", status 130
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [out.name]
