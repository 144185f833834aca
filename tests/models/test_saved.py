"""Saved model folders are checked before use (issue 28, defects 3 and 10).

Every registered model declares the arrays it saves (``Recommender.state_arrays``);
``Recommender.load`` refuses a ``weights.npz`` whose arrays are missing, unexpected, of the
wrong dtype or shape, not finite, or fewer bytes than ``model.json`` declares, and a
``model.json`` that is not one genrec writes, each with one line naming the file and the
array or field (a :class:`genrec.errors.GenrecError`, never another exception).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from benchmarks.golden import build_model, one_thread, training_input

from genrec.data import Sequences
from genrec.errors import ConfigError, DataError, GenrecError
from genrec.io import RECORD_DIGEST, file_digest, save_arrays, seal_record
from genrec.models import MODELS, Recommender
from tests.models.test_registry import TINY

NAMES = sorted(MODELS)


def _data(model: Recommender) -> sp.csr_matrix | Sequences:
    """The data ``model`` fits on: ordered histories for a sequential model."""
    return training_input(model)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """One fitted, saved folder per registered model (one epoch of its tiny config)."""
    root = tmp_path_factory.mktemp("saved")
    out = {}
    with one_thread():
        for name in NAMES:
            kwargs = dict(TINY[name])
            if "epochs" in kwargs:
                kwargs["epochs"] = 1
            model = build_model(name, kwargs)
            model.fit(_data(model))
            out[name] = model.save(root / name)
    return out


def _copy(saved: dict[str, Path], name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved[name], tmp_path / name))


def _arrays(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "weights.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write_meta(folder: Path, meta: dict) -> None:
    """Write ``model.json`` with a matching checksum: a folder written this way on purpose
    (its damage is in the contents, which the checksums cannot tell)."""
    meta = {k: v for k, v in meta.items() if k != RECORD_DIGEST}
    (folder / "model.json").write_text(json.dumps(seal_record(meta)))


def _save_weights(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """Replace ``weights.npz`` and the checksum of it that model.json records."""
    save_arrays(folder / "weights.npz", arrays)
    meta = json.loads((folder / "model.json").read_text())
    meta["files"] = {**meta.get("files", {}), "weights.npz": file_digest(folder / "weights.npz")}
    _write_meta(folder, meta)


def _scores(model: Recommender, X: sp.csr_matrix | Sequences) -> np.ndarray:
    n = X.n_users if isinstance(X, Sequences) else X.shape[0]
    with torch.no_grad():
        return torch.as_tensor(model.score(np.arange(n), X)).cpu().numpy()


def _one_line_error(folder: Path, *parts: str) -> str:
    with pytest.raises(GenrecError) as info:
        Recommender.load(folder)
    message = str(info.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message
    return message


#: per model, a float array whose last axis has a fixed size (from the config or the item
#: count), so that its own shape is wrong when that axis grows by one: the array each
#: damage below is done to
TARGET = {
    "autorec": "net.decode.weight",
    "biased-mf": "user_factors",
    "bpr-mf": "user_factors",
    "cdae": "user_node.weight",
    "diffrec": "denoiser.out_layers.0.weight",
    "ease": "B",
    "fm": "V",
    "gaussian-vae": "decoder.1.weight",
    "ldiffrec": "denoiser.out_layers.0.weight",
    "mult-dae": "decoder.0.weight",
    "mult-vae": "decoder.1.weight",
    "popularity": "item_scores",
    "recvae": "encoder.fc1.weight",
    "vq-vae": "quantizer.codebook",
    "transition": "popularity",
    "gru4rec": "out",
    "bert4rec": "head.weight",
    "hstu": "blocks.0.uvqk",
    "sasrec": "blocks.0.qkv.weight",
    "tiger": "encoder.0.attn.q.weight",
    "p5": "encoder.0.attn.q.weight",
}


@pytest.fixture()
def folder(saved, tmp_path, request) -> tuple[Path, str]:
    """A copy of the saved folder of the model ``request.param``, and the array to damage."""
    return _copy(saved, request.param, tmp_path), TARGET[request.param]


def test_every_registered_model_has_an_array_to_damage():
    assert set(TARGET) == set(MODELS)


# ----------------------------------------------------------------------------- defect 3
@pytest.mark.parametrize("name", NAMES)
def test_every_model_declares_the_arrays_it_saves(name, saved):
    from genrec.models.saved import check_headers

    model = Recommender.load(saved[name])
    spec = model.state_arrays()
    assert spec is not None, f"{name} declares no state_arrays"
    arrays = _arrays(saved[name])
    check_headers(spec, {k: (v.shape, v.dtype) for k, v in arrays.items()}, name)
    assert set(spec) == set(model._get_state())


@pytest.mark.parametrize("folder", NAMES, indirect=True)
def test_a_missing_array_is_refused(folder):
    path, name = folder
    arrays = _arrays(path)
    del arrays[name]
    _save_weights(path, arrays)
    _one_line_error(path, "weights.npz", f"array {name!r} is missing")


@pytest.mark.parametrize("folder", NAMES, indirect=True)
def test_an_array_of_the_wrong_shape_is_refused(folder):
    path, name = folder
    arrays = _arrays(path)
    a = arrays[name]
    arrays[name] = np.concatenate([a, np.zeros((*a.shape[:-1], 1), a.dtype)], axis=-1)
    _save_weights(path, arrays)
    _one_line_error(path, "weights.npz", f"array {name!r} has shape {arrays[name].shape}")


@pytest.mark.parametrize("folder", NAMES, indirect=True)
def test_an_array_of_the_wrong_dtype_is_refused(folder):
    path, name = folder
    arrays = _arrays(path)
    arrays[name] = arrays[name].astype(np.int64)
    _save_weights(path, arrays)
    _one_line_error(path, "weights.npz", f"array {name!r} has dtype int64")


@pytest.mark.parametrize("folder", NAMES, indirect=True)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_weights_that_are_not_finite_are_refused(folder, value):
    path, name = folder
    arrays = _arrays(path)
    arrays[name] = arrays[name].copy()
    arrays[name].flat[arrays[name].size // 2] = value
    _save_weights(path, arrays)
    _one_line_error(path, "weights.npz", f"array {name!r} has 1 NaN or infinite values")


@pytest.mark.parametrize("folder", NAMES, indirect=True)
def test_an_unexpected_array_is_refused(folder):
    path, _ = folder
    arrays = _arrays(path)
    arrays["extra"] = np.zeros(3, np.float32)
    _save_weights(path, arrays)
    _one_line_error(path, "weights.npz", "unexpected array 'extra'")


def _never_set(monkeypatch, path: Path) -> None:
    """Make reaching ``_set_state`` (which builds the networks) a test failure."""
    cls = MODELS[json.loads((path / "model.json").read_text())["model"]]

    def allocate(self, state):
        raise AssertionError("the folder reached _set_state")

    monkeypatch.setattr(cls, "_set_state", allocate)


#: I-AutoRec's network is sized by the users (its weights do not grow with the items):
#: its saved training matrix disagrees with the item count instead
SIZED_BY_USERS = {"autorec"}


@pytest.mark.parametrize("folder", NAMES, indirect=True)
def test_an_absurd_item_count_in_model_json_is_refused_before_allocating(folder, monkeypatch):
    path, _ = folder
    meta = json.loads((path / "model.json").read_text())
    _write_meta(path, {**meta, "n_items": 10**9})
    if meta["model"] in SIZED_BY_USERS:
        _one_line_error(path, "weights.npz", "'train_shape'", "the 1000000000 items")
        return
    _never_set(monkeypatch, path)
    _one_line_error(path, "model.json: declares", "MiB of weights")


def test_an_absurd_layer_size_in_model_json_is_refused_before_allocating(
    saved, tmp_path, monkeypatch
):
    path = _copy(saved, "mult-vae", tmp_path)
    meta = json.loads((path / "model.json").read_text())
    meta["config"]["hidden_dims"] = [10**9]
    _write_meta(path, meta)
    _never_set(monkeypatch, path)
    _one_line_error(path, "model.json: declares", "MiB of weights")


def test_ease_weights_of_the_wrong_shape_are_refused(saved, tmp_path):
    path = _copy(saved, "ease", tmp_path)
    n = json.loads((path / "model.json").read_text())["n_items"]
    _save_weights(path, {"B": np.zeros((n - 1, n - 1), np.float32)})
    _one_line_error(path, "weights.npz", f"array 'B' has shape ({n - 1}, {n - 1})")


def test_a_ldiffrec_cluster_outside_n_clusters_is_refused(saved, tmp_path):
    path = _copy(saved, "ldiffrec", tmp_path)
    arrays = _arrays(path)
    arrays["vae.item_cluster"] = arrays["vae.item_cluster"].copy()
    arrays["vae.item_cluster"][0] = Recommender.load(path).config.n_clusters  # one past the last
    _save_weights(path, arrays)
    _one_line_error(path, "weights.npz", "'vae.item_cluster' holds cluster numbers outside")


def test_ldiffrec_indices_that_disagree_with_the_clusters_are_refused(saved, tmp_path):
    path = _copy(saved, "ldiffrec", tmp_path)
    arrays = _arrays(path)
    arrays["vae.inv_perm"] = arrays["vae.inv_perm"][::-1].copy()
    _save_weights(path, arrays)
    _one_line_error(path, "weights.npz", "'vae.inv_perm' does not match")


@pytest.mark.parametrize("name", ["autorec", "fm"])
def test_a_saved_sparse_matrix_out_of_range_is_refused(name, saved, tmp_path):
    path = _copy(saved, name, tmp_path)
    arrays = _arrays(path)
    key = "train_indices" if name == "autorec" else "item_block_indices"
    arrays[key] = arrays[key].copy()
    arrays[key][0] = 10**6
    _save_weights(path, arrays)
    _one_line_error(path, "weights.npz", key, "do not form a sparse matrix")


def test_check_headers_binds_named_dimensions_across_arrays():
    from genrec.models.saved import ArraySpec, check_headers

    spec = {"a": ArraySpec(("n", 2)), "b": ArraySpec(("n",)), "c": ArraySpec((None,), "i")}
    f4, i8 = np.dtype(np.float32), np.dtype(np.int64)
    ok = {"a": ((5, 2), f4), "b": ((5,), f4), "c": ((7,), i8)}
    assert check_headers(spec, ok, "w") == {"n": 5}
    with pytest.raises(DataError, match=r"w: array 'b' has shape \(4,\), expected \(n=5,\)"):
        check_headers(spec, {**ok, "b": ((4,), f4)}, "w")
    with pytest.raises(DataError, match="array 'c' has dtype float32, expected integer"):
        check_headers(spec, {**ok, "c": ((7,), f4)}, "w")


# ----------------------------------------------------------------------------- defect 10
def _meta(path: Path) -> dict:
    return json.loads((path / "model.json").read_text())


MALFORMED: dict[str, tuple[object, str]] = {
    # case -> (new model.json: bytes, or a function of the saved fields; what the error says)
    "not UTF-8": (b'{"format": "genrec-model/1", \xff\xfe}', "not UTF-8 text"),
    "invalid JSON": (b'{"format": "genrec-model/1", ', "invalid JSON"),
    "empty": (b"", "invalid JSON"),
    "not an object": (b"[1, 2, 3]", "a JSON list, not an object"),
    "no format": (lambda m: {k: v for k, v in m.items() if k != "format"}, "'format' is missing"),
    "no model": (lambda m: {k: v for k, v in m.items() if k != "model"}, "'model' is missing"),
    "no config": (lambda m: {k: v for k, v in m.items() if k != "config"}, "'config' is missing"),
    "no n_items": (
        lambda m: {k: v for k, v in m.items() if k != "n_items"},
        "'n_items' is missing",
    ),
    "model not a name": (lambda m: {**m, "model": ["ease"]}, "field 'model' must be"),
    "unknown model": (lambda m: {**m, "model": "no-such-model"}, "field 'model': unknown model"),
    "config not a table": (lambda m: {**m, "config": "l2=1"}, "field 'config' must be"),
    "n_items text": (lambda m: {**m, "n_items": "40"}, "field 'n_items' must be"),
    "n_items bool": (lambda m: {**m, "n_items": True}, "field 'n_items' must be"),
    "n_items zero": (lambda m: {**m, "n_items": 0}, "field 'n_items' must be"),
    "n_items float": (lambda m: {**m, "n_items": 40.5}, "field 'n_items' must be"),
    "config fails its checks": (lambda m: {**m, "config": {**m["config"], "l2": -1.0}}, "l2"),
    "config of wrong type": (lambda m: {**m, "config": {**m["config"], "l2": "big"}}, "l2"),
    "config unknown key": (lambda m: {**m, "config": {**m["config"], "bogus": 1}}, "bogus"),
    "other format": (lambda m: {**m, "format": "genrec-model/9"}, "unsupported format"),
}


def _malform(path: Path, case: str) -> str:
    new, says = MALFORMED[case]
    meta_path = path / "model.json"
    if isinstance(new, bytes):
        meta_path.write_bytes(new)
    else:
        _write_meta(path, new(_meta(path)))
    return says


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_model_json_is_refused_with_one_line(case, saved, tmp_path):
    path = _copy(saved, "ease", tmp_path)
    says = _malform(path, case)
    message = _one_line_error(path, "model.json", says)
    if case not in ("other format",) and not case.startswith("config "):
        assert "not a genrec model folder" in message


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    from genrec.runs import RunSpec, train_run
    from tests.synthetic import write_ml100k

    root = tmp_path_factory.mktemp("run")
    data = write_ml100k(root / "ml-100k")
    out = root / "run"
    train_run(RunSpec.from_mapping({"model": "ease", "dataset": str(data), "l2": 5.0}, out=out))
    return out


def _malformed_run(run_folder: Path, tmp_path: Path, case: str) -> tuple[Path, str]:
    """A copy of the run whose model.json is malformed, its checksum in run.json updated
    (a folder whose files agree with run.json, as a run written that way would be)."""
    path = Path(shutil.copytree(run_folder, tmp_path / "run"))
    says = _malform(path, case)
    record = json.loads((path / "run.json").read_text())
    record["files"]["model.json"] = file_digest(path / "model.json")
    record = {k: v for k, v in record.items() if k != RECORD_DIGEST}
    (path / "run.json").write_text(json.dumps(seal_record(record)))
    return path, says


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_load_run_refuses_a_malformed_model_json_with_one_line(case, run_folder, tmp_path):
    from genrec.runs import load_run

    path, says = _malformed_run(run_folder, tmp_path, case)
    with pytest.raises(GenrecError) as info:
        load_run(path)
    assert "\n" not in str(info.value) and "model.json" in str(info.value)
    assert says in str(info.value)


@pytest.mark.parametrize("case", ["not UTF-8", "not an object", "no n_items", "unknown model"])
@pytest.mark.parametrize("command", ["recommend", "evaluate"])
def test_the_cli_refuses_a_malformed_model_json_without_traceback(
    command, case, run_folder, tmp_path, capsys
):
    from genrec.cli import main

    path, says = _malformed_run(run_folder, tmp_path, case)
    argv = [command, str(path)] + (["--user", "1"] if command == "recommend" else [])
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert "model.json" in err and says in " ".join(err.split()), err


# ----------------------------------------------------------------------------- fuzzing
def _damaged(data: bytes) -> list[tuple[str, bytes]]:
    """Deterministic damage at evenly spread positions: 16 bytes with their lowest bit
    flipped (text stays text: '4' -> '5', '"' -> '#'), 8 with every bit flipped, and 8
    truncations."""
    n = len(data)

    def spread(k: int, offset: int = 0) -> list[int]:
        return sorted({(int(p) + offset) % n for p in np.linspace(0, n - 1, k)})

    out = []
    for mask, positions in ((0x01, spread(16)), (0xFF, spread(8, 3))):
        for p in positions:
            out.append((f"xor{mask:#x}@{p}", data[:p] + bytes([data[p] ^ mask]) + data[p + 1 :]))
    out += [(f"cut@{p}", data[:p]) for p in spread(8)]
    return out


@pytest.mark.parametrize("name", ["ease", "mult-vae"])
@pytest.mark.parametrize("file", ["model.json", "weights.npz"])
def test_damaged_files_load_identically_or_raise_a_genrec_error(name, file, saved, tmp_path):
    model = Recommender.load(saved[name])
    X = _data(model)
    want = _scores(model, X)
    good = (saved[name] / file).read_bytes()
    outcomes = {"loaded": 0, "refused": 0}
    path = _copy(saved, name, tmp_path)
    for label, data in _damaged(good):
        (path / file).write_bytes(data)
        try:
            loaded = Recommender.load(path)
        except GenrecError as e:
            assert "\n" not in str(e), (label, str(e))
            outcomes["refused"] += 1
            continue
        except Exception as e:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{file} {label}: {type(e).__name__}: {e}")
        np.testing.assert_array_equal(_scores(loaded, X), want, err_msg=f"{file} {label}")
        outcomes["loaded"] += 1
    assert outcomes["refused"] > 0, outcomes


def test_config_errors_in_model_json_name_the_file(saved, tmp_path):
    path = _copy(saved, "ease", tmp_path)
    meta = _meta(path)
    _write_meta(path, {**meta, "config": {"l2": -1.0}})
    with pytest.raises(ConfigError, match="model.json"):
        Recommender.load(path)
