"""The shared trainer: resume equals an uninterrupted run, early stopping keeps the best
weights, schedules, logs and checkpoints."""

import dataclasses
import io
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genrec.errors import ConfigError, DataError, DivergenceError
from genrec.evaluate import RankingTask
from genrec.models import MultVAE, RecVAE
from genrec.train import (
    CHECKPOINT_NAME,
    Callback,
    Constant,
    FitContext,
    LinearAnneal,
    TrainConfig,
    Trainer,
    WeightAverage,
    make_optimizer,
    native_bf16,
    parse_metric,
)
from genrec.train.checkpoint import read_checkpoint, write_checkpoint


def _data(seed=0, U=60, I=40):
    rng = np.random.default_rng(seed)
    taste = rng.integers(0, 3, U)
    p = np.where((np.arange(I)[None, :] % 3) == taste[:, None], 0.5, 0.05)
    full = (rng.random((U, I)) < p).astype(np.float32)
    held = (rng.random((U, I)) < 0.2) & (full > 0)
    train = sp.csr_matrix(np.where(held, 0, full).astype(np.float32))
    truth = sp.csr_matrix(held.astype(np.float32))
    valid = RankingTask(np.arange(U), train, train, truth, "zero", "valid")
    return train, valid


TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)}


def _with_train(cls, model: dict, train: dict, kw: dict):
    """``cls`` built from ``model`` and ``train`` (its [train] table), ``kw`` over both (a key
    of TrainConfig goes to the table)."""
    train = {**train, **{k: v for k, v in kw.items() if k in TRAIN_KEYS}}
    return cls(**{**model, **{k: v for k, v in kw.items() if k not in TRAIN_KEYS}}, train=train)


def _mult_vae(**kw):
    return _with_train(
        MultVAE,
        dict(hidden_dims=(16,), latent_dim=4),
        dict(batch_size=16, epochs=6, lr=3e-3, device="cpu", seed=1),
        kw,
    )


def _recvae(**kw):
    return _with_train(
        RecVAE,
        dict(hidden_dim=16, latent_dim=4, n_enc_epochs=2),
        dict(batch_size=16, epochs=4, lr=3e-3, device="cpu", seed=1),
        kw,
    )


class _Interrupt(Exception):
    pass


def _interrupt_at(model, step):
    original = model.train_step

    def train_step(batch, ctx):
        if ctx.step == step:
            raise _Interrupt
        return original(batch, ctx)

    model.train_step = train_step
    return model


def _strip_times(history):
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in history]


def _mult_vae_ema(**kw):
    return _mult_vae(ema_decay=0.9, **kw)


def _recvae_joint(**kw):  # one pass of 4 batches per epoch
    return _recvae(alternating=False, n_enc_epochs=3, **kw)


@pytest.mark.parametrize(
    "make, kill_step", [(_mult_vae, 9), (_recvae, 21), (_mult_vae_ema, 9), (_recvae_joint, 10)]
)
def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, make, kill_step):
    X, valid = _data()
    ref = make().fit(X, valid=valid, context=FitContext(run_dir=tmp_path / "ref"))
    # interrupted mid-epoch (4 batches per pass): the last checkpoint is an earlier epoch
    with pytest.raises(_Interrupt):
        _interrupt_at(make(), kill_step).fit(
            X, valid=valid, context=FitContext(run_dir=tmp_path / "run")
        )
    ck = read_checkpoint(tmp_path / "run/checkpoint/state.pt", torch.device("cpu"))
    assert 0 < ck["epoch"] < ref.config.train.epochs
    resumed = make().fit(X, valid=valid, context=FitContext(run_dir=tmp_path / "run", resume=True))
    for (k, a), (_, b) in zip(
        ref.module_.state_dict().items(), resumed.module_.state_dict().items()
    ):
        assert torch.equal(a, b), k
    assert _strip_times(resumed.history_) == _strip_times(ref.history_)
    assert resumed.best_epoch_ == ref.best_epoch_
    lines = (tmp_path / "run/train_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == list(range(1, ref.config.train.epochs + 1))
    np.testing.assert_array_equal(ref.score(None, X).numpy(), resumed.score(None, X).numpy())


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    X, valid = _data()
    ref = _mult_vae(epochs=2).fit(X, valid=valid, context=FitContext(run_dir=tmp_path))
    again = _mult_vae(epochs=2).fit(
        X, valid=valid, context=FitContext(run_dir=tmp_path, resume=True)
    )
    np.testing.assert_array_equal(ref.score(None, X).numpy(), again.score(None, X).numpy())


def test_resume_before_the_first_checkpoint_starts_over(tmp_path):
    X, _ = _data()
    ref = _mult_vae(epochs=2).fit(X)
    with pytest.raises(_Interrupt):  # killed in epoch 1: no checkpoint yet
        _interrupt_at(_mult_vae(epochs=2), 2).fit(X, context=FitContext(run_dir=tmp_path))
    again = _mult_vae(epochs=2).fit(X, context=FitContext(run_dir=tmp_path, resume=True))
    np.testing.assert_array_equal(ref.score(None, X).numpy(), again.score(None, X).numpy())


def test_resume_refuses_changed_settings(tmp_path):
    X, valid = _data()
    with pytest.raises(ConfigError, match="run directory"):
        _mult_vae().fit(X, context=FitContext(resume=True))
    _mult_vae(epochs=1).fit(X, context=FitContext(run_dir=tmp_path / "a"))
    with pytest.raises(ConfigError, match="lr"):
        _mult_vae(lr=0.1).fit(X, context=FitContext(run_dir=tmp_path / "a", resume=True))


def test_early_stopping_keeps_the_best_weights():
    X, valid = _data(3)
    m = _mult_vae(epochs=60, patience=3, lr=0.02).fit(X, valid=valid)
    vals = [r["valid"]["ndcg@20"] for r in m.history_]
    best = int(np.argmax(vals)) + 1  # first maximum
    assert m.best_epoch_ == best
    assert len(m.history_) == best + 3 < 60  # stopped after 3 validations without gain
    # the kept weights are those after epoch `best`: retrain exactly that long
    again = _mult_vae(epochs=best, lr=0.02).fit(X)
    for (k, a), (_, b) in zip(m.module_.state_dict().items(), again.module_.state_dict().items()):
        assert torch.equal(a, b), k


def test_jsonl_log_has_losses_metrics_and_seconds(tmp_path):
    X, valid = _data()
    _mult_vae(epochs=3, eval_every=2).fit(X, valid=valid, context=FitContext(run_dir=tmp_path))
    rows = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert {"loss", "recon", "kl", "beta", "seconds", "train_seconds", "step"} <= set(r)
    assert "valid" not in rows[0]  # eval_every=2, and always after the last epoch
    assert {"recall@20", "ndcg@20"} <= set(rows[1]["valid"]) and "valid" in rows[2]
    assert rows[2]["best_epoch"] in (2, 3)


def test_checkpoint_loads_with_weights_only(tmp_path):
    X, _ = _data()
    m = _mult_vae(epochs=2).fit(X, context=FitContext(run_dir=tmp_path))
    header, payload = (tmp_path / "checkpoint/state.pt").read_bytes().split(b"\n", 1)
    assert header.startswith(b"genrec-checkpoint/2 sha256:")
    ck = torch.load(io.BytesIO(payload), weights_only=True)
    assert ck["epoch"] == 2 and ck["step"] == 8
    assert set(ck["optimizers"]) == {"main"}
    assert [p.name for p in (tmp_path / "checkpoint").iterdir()] == ["state.pt"]  # no temps
    for k, v in m.module_.state_dict().items():
        assert torch.equal(ck["module"][k], v)


def test_linear_anneal_hits_its_cap_at_the_right_step():
    s = LinearAnneal(cap=0.2, total_steps=1000)
    assert s(0) == 0.0 and s(100) == pytest.approx(0.1)
    assert s.cap_step == 200
    assert s(199) < 0.2 and s(200) == 0.2 and s(10**6) == 0.2
    odd = LinearAnneal(cap=0.3, total_steps=7)  # 0.3 * 7 = 2.1 -> first reached at step 3
    assert odd.cap_step == 3 and odd(2) < 0.3 and odd(3) == 0.3
    assert Constant(0.5)(123) == 0.5
    with pytest.raises(ValueError):
        LinearAnneal(cap=0.2, total_steps=0)


def test_train_config_from_model_config_and_checks():
    cfg = MultVAE(train={"lr": 0.01, "seed": 4}).train_config()
    assert (cfg.lr, cfg.seed, cfg.batch_size, cfg.epochs) == (0.01, 4, 500, 200)
    assert parse_metric("recall@20") == ("recall", 20)
    for bad in (
        dict(select_metric="auc@20"),
        dict(patience=0),
        dict(precision="fp8"),
        dict(device="tpu"),
        dict(grad_clip=0.0),
        dict(ema_decay=1.0),
        dict(ema_decay=0.0),
    ):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_make_optimizer_uses_the_fused_adam_on_cpu():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = make_optimizer([p], TrainConfig(lr=0.1, weight_decay=0.01))
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["fused"]
    assert opt.defaults["weight_decay"] == 0.01
    assert isinstance(make_optimizer([p], TrainConfig(optimizer="sgd")), torch.optim.SGD)


def test_grad_clip_bounds_the_update():
    X, _ = _data()
    a = _mult_vae(epochs=1, grad_clip=1e-6, optimizer="sgd", lr=1.0).fit(X)
    init = a._build_module(X.shape[1], torch.Generator().manual_seed(1))  # fit's init
    moved = (
        sum((p - q).norm() ** 2 for p, q in zip(a.module_.parameters(), init.parameters())) ** 0.5
    )
    assert moved <= 4 * 1e-6 * 1.0001  # 4 SGD steps of norm <= 1e-6


def test_training_touches_no_global_rng():
    X, _ = _data()
    torch.manual_seed(7)
    state = torch.get_rng_state()
    _mult_vae(epochs=1).fit(X)
    assert torch.equal(torch.get_rng_state(), state)


def test_rating_task_validation_is_refused():
    from genrec.evaluate import RatingTask

    X, _ = _data()
    task = RatingTask(np.array([0]), np.array([1]), np.array([4.0]))
    with pytest.raises(ConfigError, match="ranking protocol"):
        _mult_vae(epochs=1).fit(X, valid=task)


def test_nan_loss_stops_with_a_clear_error():
    X, _ = _data()
    with pytest.raises(DivergenceError, match="lower train.lr"):
        _mult_vae(epochs=3, lr=1e9, optimizer="sgd").fit(X)


def test_weight_average_follows_its_recurrence():
    lin = torch.nn.Linear(2, 1)
    lin.register_buffer("count", torch.tensor(0))  # not floating: copied, not averaged
    start = lin.weight.detach().clone()
    avg = WeightAverage(lin, decay=0.9)
    values = [1.0, -2.0, 4.0, 0.5] + [3.0] * 300
    for t, v in enumerate(values, start=1):
        with torch.no_grad():
            lin.weight.fill_(v)
            lin.count.fill_(t)
        avg.update(lin)
        # the closed form: the decay^(t - s)-weighted mean of w_1..w_t (no share for start)
        w = 0.9 ** np.arange(t - 1, -1, -1)
        expect = float(np.dot(w, values[:t]) / w.sum())
        assert torch.allclose(avg.shadow["weight"], torch.full_like(start, expect), atol=1e-5), t
    assert avg.updates == 304 and avg.rate() == pytest.approx(0.9)
    assert int(avg.shadow["count"]) == 304
    with avg.swapped_in(lin):
        assert torch.equal(lin.weight, avg.shadow["weight"])
    assert torch.equal(lin.weight, torch.full_like(lin.weight, 3.0))  # raw weights are back


def test_ema_averages_the_raw_training_trajectory():
    X, _ = _data()
    raw = _mult_vae(epochs=2).fit(X)  # the same seed: EMA must not change the raw steps
    seen = []
    m = _mult_vae(epochs=2, ema_decay=0.8)
    original = m.train_step

    def train_step(batch, ctx):  # record the weights each step starts from
        seen.append({k: v.detach().clone() for k, v in m.module_.state_dict().items()})
        return original(batch, ctx)

    m.train_step = train_step
    m.fit(X)  # no validation: the module ends with the average of the last weights
    steps = seen[1:] + [raw.module_.state_dict()]  # the weights after update 1, 2, ..., T
    assert len(steps) == 8
    for name, final in m.module_.state_dict().items():
        expect = seen[0][name].clone()
        for t, w in enumerate(steps, start=1):
            d = 1 - 0.2 / (1 - 0.8**t)
            expect = d * expect + (1 - d) * w[name]
        assert torch.allclose(final, expect, atol=1e-6), name
        assert not torch.allclose(final, raw.module_.state_dict()[name]), name


def test_ema_validates_and_keeps_the_averaged_weights():
    from genrec.evaluate import evaluate_ranking

    X, valid = _data()
    m = _mult_vae(epochs=8, ema_decay=0.9).fit(X, valid=valid)
    kept = evaluate_ranking(m, valid, ks=(20,), metrics=("ndcg",)).metrics["ndcg@20"]
    assert kept == pytest.approx(m.history_[m.best_epoch_ - 1]["valid"]["ndcg@20"], abs=1e-12)
    plain = _mult_vae(epochs=8).fit(X, valid=valid)
    assert [r["valid"]["ndcg@20"] for r in m.history_] != [
        r["valid"]["ndcg@20"] for r in plain.history_
    ]


@pytest.mark.parametrize("native", [False, True])
def test_bf16_without_hardware_support_warns(monkeypatch, caplog, native):
    monkeypatch.setattr("genrec.train.loop.native_bf16", lambda device: native)
    X, _ = _data()
    with caplog.at_level("WARNING", logger="genrec.train"):
        _mult_vae(epochs=1, precision="bf16").fit(X)
        _mult_vae(epochs=1).fit(X)  # fp32 never warns
    warned = [r for r in caplog.records if "bfloat16" in r.getMessage()]
    assert len(warned) == (0 if native else 1)
    if warned:
        assert "use precision fp32" in warned[0].getMessage()


def test_native_bf16_answers_for_cpu_and_other_devices():
    assert isinstance(native_bf16(torch.device("cpu")), bool)
    assert native_bf16(torch.device("meta")) is True  # not a compute device: no warning


@pytest.mark.parametrize(
    "bad, field",
    [
        (dict(eval_batch_size=0), "eval_batch_size"),
        (dict(lr=float("inf")), "lr"),
        (dict(weight_decay=float("nan")), "weight_decay"),
        (dict(grad_clip=float("inf")), "grad_clip"),
        (dict(device="cudax"), "device"),
        (dict(device="cuda:abc"), "device"),
        (dict(device=None), "device"),
        (dict(seed=2**64 - 1), "seed"),
    ],
)
def test_train_config_refuses_values_that_would_fail_later(bad, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**bad)
    with pytest.raises(ConfigError, match=field):
        MultVAE(train=bad)
    assert TrainConfig(device="cuda:1", seed=-3).device == "cuda:1"  # well-formed: accepted


def test_matrix_without_items_is_refused_before_training():
    X = sp.csr_matrix((5, 0), dtype=np.float32)
    for model in (_mult_vae(epochs=1), _recvae(epochs=1)):
        with pytest.raises(DataError, match="at least one user and one item"):
            model.fit(X)
        assert model.module_ is None


def test_validation_task_is_checked_before_the_first_epoch():
    X, valid = _data()
    calls = []
    m = _mult_vae(epochs=1)
    step = m.train_step
    m.train_step = lambda batch, ctx: calls.append(1) or step(batch, ctx)
    narrow = RankingTask(None, X[:, :5], X[:, :5], X[:, :5])
    with pytest.raises(DataError, match="5 item columns but the training matrix has 40"):
        m.fit(X, valid=narrow)
    no_truth = RankingTask(
        valid.users,
        valid.inputs,
        valid.exclude,
        sp.csr_matrix(valid.truth.shape, dtype=np.float32),
        "skip",
        "valid",
    )
    with pytest.raises(DataError, match="no held-out items"):  # every metric would be NaN
        m.fit(X, valid=no_truth)
    assert not calls


def test_resume_refuses_other_training_data(tmp_path):
    X, _ = _data()
    _mult_vae(epochs=1).fit(X, context=FitContext(run_dir=tmp_path))
    with pytest.raises(DataError, match="60 users x 40 items.*same training data"):
        _mult_vae(epochs=2).fit(X[:30], context=FitContext(run_dir=tmp_path, resume=True))
    with pytest.raises(DataError, match="same training data"):  # a different item count
        _mult_vae(epochs=2).fit(X[:, :30], context=FitContext(run_dir=tmp_path, resume=True))


def test_make_optimizer_leaves_cpu_adam_unfused_before_torch_2_4(monkeypatch):
    # torch 2.2 and 2.3 have no fused CPU Adam: asking for one raises in the constructor
    monkeypatch.setattr("genrec.train.optim._FUSED_ADAM_CPU", False)
    p = torch.nn.Parameter(torch.zeros(3))
    opt = make_optimizer([p], TrainConfig(lr=0.1))
    assert isinstance(opt, torch.optim.Adam) and not opt.defaults["fused"]


def test_native_bf16_on_cuda_needs_compute_capability_8(monkeypatch):
    # is_bf16_supported() also says yes for emulated bf16 (V100, T4); the capability does not
    for major, native in ((7, False), (8, True), (9, True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, m=major: (m, 0))
        assert native_bf16(torch.device("cuda")) is native


def test_resume_from_a_checkpoint_of_another_device_type_continues(tmp_path, caplog):
    # a CUDA generator's state (16 bytes) cannot be loaded into a CPU generator: simulated by
    # writing such a state into a CPU run's checkpoint
    X, valid = _data()
    _mult_vae(epochs=1).fit(X, valid=valid, context=FitContext(run_dir=tmp_path))
    path = tmp_path / CHECKPOINT_NAME
    ck = read_checkpoint(path, torch.device("cpu"))
    ck["noise_generator"] = torch.zeros(16, dtype=torch.uint8)
    write_checkpoint(path, ck)
    with caplog.at_level("WARNING", logger="genrec.train"):
        m = _mult_vae(epochs=2).fit(
            X, valid=valid, context=FitContext(run_dir=tmp_path, resume=True)
        )
    assert len(m.history_) == 2
    assert any("another device type" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_an_early_stopped_run_resumes_only_with_more_patience(tmp_path):
    X, valid = _data(3)
    m = _mult_vae(epochs=60, patience=3, lr=0.02).fit(
        X, valid=valid, context=FitContext(run_dir=tmp_path)
    )
    stopped = len(m.history_)
    assert stopped < 60
    same = _mult_vae(epochs=60, patience=3, lr=0.02).fit(
        X, valid=valid, context=FitContext(run_dir=tmp_path, resume=True)
    )
    assert len(same.history_) == stopped  # still stopped: nothing more to do
    more = _mult_vae(epochs=60, patience=6, lr=0.02).fit(
        X, valid=valid, context=FitContext(run_dir=tmp_path, resume=True)
    )
    assert len(more.history_) > stopped  # 3 more validations without gain allowed
    ref = _mult_vae(epochs=60, patience=6, lr=0.02).fit(X, valid=valid)
    assert len(ref.history_) == len(more.history_)  # as one run with patience 6


def test_matrix_without_interactions_is_refused_before_training():
    explicit_zeros = sp.csr_matrix((np.zeros(3, np.float32), ([0, 1, 2], [0, 1, 2])), shape=(4, 5))
    for X in (sp.csr_matrix((4, 5), dtype=np.float32), explicit_zeros):
        for model in (_mult_vae(epochs=1), _recvae(epochs=1)):
            with pytest.raises(DataError, match="without interactions"):
                model.fit(X)
            assert model.module_ is None


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(epochs="3"), "epochs must be an integer"),
        (dict(lr="x"), "lr must be a number"),
        (dict(patience=2.5), "patience must be an integer or None"),
        (dict(batch_size=True), "batch_size must be an integer"),
    ],
)
def test_a_config_built_directly_with_a_wrong_type_names_the_field(bad, message):
    from genrec.models.mult_vae import MultVAEConfig

    with pytest.raises(ValueError, match=message):  # no conversion here, unlike MultVAE(**kw)
        TrainConfig(**bad)
    with pytest.raises(ValueError, match="latent_dim must be an integer"):
        MultVAEConfig(latent_dim="3")
    assert TrainConfig(epochs=np.int64(3), lr=np.float32(0.01), patience=None).epochs == 3


# ---------------------------------------------------------------------------- fingerprints
FP = {
    "model": "MultVAE",
    "config": {"lr": 3e-3, "epochs": 2, "dropout": 0.5},
    "data": {"shape": [60, 40], "checksum": "abc"},
    "protocol": {"name": "diffrec"},
}


def test_resume_refuses_a_checkpoint_of_another_run_naming_the_first_differing_key(tmp_path):
    """The reported defect: a resume picked up another config's checkpoint and kept its
    weights. The fingerprint written into the checkpoint now stops it."""
    X, _ = _data()
    _mult_vae(epochs=1).fit(X, context=FitContext(run_dir=tmp_path, fingerprint=FP))
    other = {
        **FP,
        "config": {**FP["config"], "dropout": 0.2},
        "data": {**FP["data"], "checksum": "xyz"},
    }
    with pytest.raises(
        ConfigError, match=r"its config\.dropout differs.*start over \(force\)"
    ) as e:
        _mult_vae(epochs=2).fit(
            X, context=FitContext(run_dir=tmp_path, resume=True, fingerprint=other)
        )
    assert "\n" not in str(e.value)
    missing = {k: v for k, v in FP.items() if k != "protocol"}
    with pytest.raises(ConfigError, match=r"its protocol\.name differs"):
        _mult_vae(epochs=2).fit(
            X, context=FitContext(run_dir=tmp_path, resume=True, fingerprint=missing)
        )
    # the settings a resume may change (more epochs, more patience) do not count
    longer = {**FP, "config": {**FP["config"], "epochs": 4}}
    m = _mult_vae(epochs=2).fit(
        X, context=FitContext(run_dir=tmp_path, resume=True, fingerprint=longer)
    )
    assert len(m.history_) == 2


def test_resume_refuses_a_checkpoint_without_a_fingerprint_when_given_one(tmp_path):
    X, _ = _data()
    _mult_vae(epochs=1).fit(X, context=FitContext(run_dir=tmp_path))  # as older versions wrote
    with pytest.raises(ConfigError, match="no run fingerprint.*start over \\(force\\)"):
        _mult_vae(epochs=2).fit(
            X, context=FitContext(run_dir=tmp_path, resume=True, fingerprint=FP)
        )
    m = _mult_vae(epochs=2).fit(X, context=FitContext(run_dir=tmp_path, resume=True))
    assert len(m.history_) == 2  # no fingerprint asked for: the old checks only


def test_a_checkpoint_without_lr_decay_reads_as_the_default(tmp_path):
    X, _ = _data()
    _mult_vae(epochs=1).fit(X, context=FitContext(run_dir=tmp_path))
    path = tmp_path / CHECKPOINT_NAME
    ck = read_checkpoint(path, torch.device("cpu"))
    cfg = json.loads(ck["train_config"])
    del cfg["lr_decay"]  # written before the field existed
    ck["train_config"] = json.dumps(cfg)
    write_checkpoint(path, ck)
    assert (
        len(_mult_vae(epochs=2).fit(X, context=FitContext(run_dir=tmp_path, resume=True)).history_)
        == 2
    )


# ---------------------------------------------------------------------------- schedules, hooks
def test_lr_decay_sets_lr0_times_decay_to_the_epoch():
    """Each epoch's rate is lr * lr_decay**epoch, for every optimizer's groups (their own
    initial rates), from the epoch alone (so a resume sets the same rates)."""
    X, _ = _data()
    m = _mult_vae(epochs=3)
    m.module_ = m._build_module(X.shape[1], torch.Generator().manual_seed(0))
    m.n_items_ = X.shape[1]
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.01, lr_decay=0.5, device="cpu")
    opt = make_optimizer(
        [{"params": [p], "lr": 0.01 if i else 0.04} for i, p in enumerate(m.module_.parameters())],
        cfg,
    )
    m.build_optimizers = lambda config: {"main": opt}
    seen = {}
    step = m.train_step

    def train_step(batch, ctx):
        seen[ctx.epoch] = [g["lr"] for g in opt.param_groups[:2]]
        return step(batch, ctx)

    m.train_step = train_step
    Trainer(cfg).fit(m, X)
    assert seen == {e: pytest.approx([0.04 * 0.5**e, 0.01 * 0.5**e]) for e in range(3)}


def test_callbacks_see_every_batch_and_epoch_in_order():
    X, valid = _data()
    events = []

    class Spy(Callback):
        def on_train_begin(self, *, epochs, start_epoch, select):
            events.append(("begin", epochs, start_epoch, select))

        def on_epoch_begin(self, epoch, n_batches):
            events.append(("epoch", epoch, n_batches))

        def on_batch(self, step, loss):
            events.append(("batch", step))

        def on_epoch_end(self, record):
            events.append(("end", record["epoch"], "valid" in record))

        def on_train_end(self):
            events.append(("done",))

    _mult_vae(epochs=2).fit(X, valid=valid, context=FitContext(callbacks=(Spy(),)))
    per_epoch = -(-X.shape[0] // 16)  # batch_size 16
    expect = [("begin", 2, 0, "ndcg@20")]
    for e in range(2):
        expect += [("epoch", e, per_epoch)]
        expect += [("batch", e * per_epoch + b) for b in range(per_epoch)]
        expect += [("end", e + 1, True)]
    assert events == expect + [("done",)]


def test_the_rich_progress_bar_runs_as_a_callback():
    from genrec.cli.progress import RichProgress

    X, valid = _data()
    bar = RichProgress()
    _mult_vae(epochs=2).fit(X, valid=valid, context=FitContext(callbacks=(bar,)))
    assert bar._progress is None and "ndcg@20" in bar._valid  # closed, showed the metric


def test_the_train_package_imports_nothing_from_the_models():
    import subprocess
    import sys

    code = (
        "import sys, genrec.train, genrec.train.loop; "
        "print([m for m in sys.modules if m.startswith('genrec.models')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# issue 28, defect 9: lr=1e30 on a model the trainer runs. One step can leave finite weights
# whose scores overflow (the last step's update is seen by no loss): that was a NaN traceback
# in the validation or a model that scores inf; now it is the one DivergenceError, naming
# train.lr, with validation and without
_TRAINER_MODELS = [
    "gaussian-vae",
    "mult-vae",
    "mult-dae",
    "recvae",
    "cdae",
    "diffrec",
    "ldiffrec",
    "biased-mf",
    "bpr-mf",
    "fm",
    "fm/bpr",
]


@pytest.mark.parametrize("with_valid", [True, False])
@pytest.mark.parametrize("entry", _TRAINER_MODELS)
def test_a_huge_learning_rate_is_a_divergence_error_naming_train_lr(entry, with_valid):
    from benchmarks.golden import GOLDEN_CONFIGS, build_model, ranking_data, rating_data

    kw = dict(GOLDEN_CONFIGS[entry], lr=1e30)
    for epochs, batch_size in ((3, kw["batch_size"]), (1, 100_000)):  # many steps, one step
        model = build_model(entry, dict(kw, epochs=epochs, batch_size=batch_size))
        X, valid, _ = rating_data() if model.selects_on() == "rating" else ranking_data()
        try:
            model.fit(X, valid=valid if with_valid else None)
        except DivergenceError as e:
            msg = str(e)
        else:  # a run of finite weights and finite scores is not a failure: check them
            scores = torch.as_tensor(model.score(np.arange(X.shape[0]), X))
            assert torch.isfinite(scores).all(), f"{entry}: fit passed with non-finite scores"
            continue
        assert "\n" not in msg and "diverged" in msg and "train.lr (now 1e+30)" in msg
