"""Which models run under which protocol, and what a refusal advises (issue 27, defect 10).

The runner refuses a model the protocol cannot train or evaluate before the protocol is built
(:func:`genrec.runs.checks.check_protocol`). Each refusal must agree with what would fail
later (the protocol on the data, the model's ``check_task`` and ``check_valid_task``), and
every fix it names must work: following the advice never leads to a second refusal.
"""

import re

import numpy as np
import pytest

from genrec.data import Dataset, Interactions
from genrec.errors import ConfigError, GenrecError
from genrec.models import MODELS
from genrec.models.base import FOLD_IN_MODELS, RATING_MODELS
from genrec.protocols import PROTOCOLS, ProtocolConfig, build_protocol
from genrec.runs.checks import check_protocol, preflight


def _dataset(implicit: bool) -> Dataset:
    """40 users x 25 items, 10 rated items each (ratings 3..5, times), or the same pairs
    as implicit data."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(40), 10)
    items = np.concatenate([rng.choice(25, 10, replace=False) for _ in range(40)])
    ratings = None if implicit else rng.integers(3, 6, len(users)).astype(np.float32)
    times = np.arange(len(users), dtype=np.float64)
    inter = Interactions.from_arrays(
        users, items, ratings, times, user_ids=np.arange(40), item_ids=np.arange(25)
    )
    name = "implicit-log" if implicit else "rated-log"
    return Dataset(name, inter, implicit=implicit, rating_range=None if implicit else (3, 5))


DATA = {implicit: _dataset(implicit) for implicit in (False, True)}
PDATA: dict = {}


def _configs():
    """Every registered model's default config, and FM trained to rank."""
    out = [(name, cls, cls.config_class()) for name, cls in MODELS.items()]
    fm = MODELS["fm"]
    out.append(("fm", fm, fm(objective="bpr").config))
    return out


def _runs_later(cls, config, protocol: str, implicit: bool) -> bool:
    """Whether the protocol builds on the data and the runner's preflight passes."""
    key = (protocol, implicit)
    if key not in PDATA:
        try:
            PDATA[key] = build_protocol(DATA[implicit], ProtocolConfig(name=protocol))
        except GenrecError as e:
            PDATA[key] = e
    if isinstance(PDATA[key], GenrecError):
        return False
    try:
        preflight(cls, [config], PDATA[key], None, True)
    except GenrecError:
        return False
    return True


def _refusal(cls, config, protocol: str, implicit: bool) -> str | None:
    try:
        check_protocol(cls, [config], protocol, implicit, DATA[implicit].name)
    except ConfigError as e:
        return str(e)
    return None


def _advice(msg: str) -> list[tuple[str, str]]:
    """The (model, protocol) pairs a refusal names as what works."""
    pairs = []
    for m in re.finditer(r"use protocol ([a-z, -]+?) with ([a-z0-9-]+)", msg):
        pairs += [(m.group(2), p) for p in re.split(r", | or ", m.group(1))]
    for m in re.finditer(r"use a model such as ([a-z0-9, .-]+?) under protocol ([a-z, -]+)", msg):
        models = [x for x in m.group(1).split(", ") if x != "..."]
        pairs += [(x, p) for x in models for p in re.split(r", | or ", m.group(2))]
    return pairs


def test_biased_mf_on_implicit_data_gets_advice_that_works():
    cls = MODELS["biased-mf"]
    for protocol in ("rating", "diffrec"):  # its default, then the ranking protocol
        msg = _refusal(cls, cls.config_class(), protocol, True)
        assert msg is not None and "\n" not in msg
        advice = _advice(msg)
        assert advice and all(model != "biased-mf" for model, _ in advice)
        for model, p in advice:
            assert _runs_later(MODELS[model], MODELS[model].config_class(), p, True), msg


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_every_model_protocol_refusal_agrees_with_the_later_checks_and_its_advice_works(
    implicit,
):
    refused = 0
    for name, cls, config in _configs():
        for protocol in PROTOCOLS:
            msg = _refusal(cls, config, protocol, implicit)
            later = _runs_later(cls, config, protocol, implicit)
            assert (msg is None) == later, (name, protocol, implicit, msg)
            if msg is None:
                continue
            refused += 1
            assert msg.startswith(f"{DATA[implicit].name}: ") and "\n" not in msg
            advice = _advice(msg)
            assert advice, msg
            for model, p in advice:
                to = MODELS[model]
                cfg = config if model == name else to.config_class()
                assert _runs_later(to, cfg, p, implicit), (msg, model, p)
    assert refused >= (20 if implicit else 10)  # the table has refusals to check


def test_the_models_named_in_check_task_refusals_are_what_they_say():
    predicts = [n for n, c in MODELS.items() if c.capabilities.predicts_ratings]
    assert sorted(RATING_MODELS) == sorted(predicts)
    for name in FOLD_IN_MODELS:
        cls = MODELS[name]
        assert cls.capabilities.folds_in and cls().selects_on() != "rating"
