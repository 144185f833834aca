"""Composed configs: nested tables, old flat keys, declared range checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import pytest

from genrec.config import Range, build_config, check_ranges, config_to_dict, parse_overrides
from genrec.errors import ConfigError
from genrec.models.diffrec import DiffRec
from genrec.models.mult_vae import MultVAE, MultVAEConfig
from genrec.train import TrainConfig


@dataclass(frozen=True)
class Inner:
    size: Annotated[int, Range(ge=1)] = 3
    rate: Annotated[float, Range(gt=0, lt=1)] = 0.5

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class Outer:
    width: Annotated[int, Range(ge=2, le=10)] = 4
    sizes: Annotated[tuple[int, ...], Range(ge=1, min_len=1)] = (1, 2)
    scale: Annotated[float | None, Range(ge=0)] = None
    kind: Literal["a", "b"] = "a"
    inner: Inner = field(default_factory=lambda: Inner(size=7))

    def __post_init__(self) -> None:
        check_ranges(self)


def test_a_table_builds_the_nested_config_over_the_field_default():
    c = build_config(Outer, {"inner": {"rate": 0.25}}, where="m")
    assert c.inner == Inner(size=7, rate=0.25)  # size keeps the outer default (7), not Inner's


def test_a_table_builds_over_the_base_value_and_an_instance_passes_through():
    base = build_config(Outer, {"inner": {"size": 9}})
    c = build_config(Outer, {"inner": {"rate": 0.75}}, base=base)
    assert c.inner == Inner(size=9, rate=0.75)
    given = Inner(size=2)
    assert build_config(Outer, {"inner": given}).inner is given


def test_dotted_keys_are_nested_tables():
    assert build_config(Outer, {"inner.size": 5}).inner.size == 5
    assert build_config(Outer, parse_overrides(["inner.size=5"])).inner.size == 5


def test_nested_errors_name_the_path():
    with pytest.raises(ConfigError, match=r"^m\.inner\.size: expected an integer, got 'x'$"):
        build_config(Outer, {"inner": {"size": "x"}}, where="m")
    with pytest.raises(
        ConfigError,
        match=r"^m\.inner: unknown key sise for Inner; valid keys: "
        r"size, rate$",
    ):
        build_config(Outer, {"inner": {"sise": 1}}, where="m")
    with pytest.raises(ConfigError, match=r"^m\.inner: rate must be in \(0, 1\), got 1\.0$"):
        build_config(Outer, {"inner": {"rate": 1.0}}, where="m")
    with pytest.raises(ConfigError, match=r"m\.inner: expected a table of Inner keys"):
        build_config(Outer, {"inner": 3}, where="m")


def test_an_old_flat_key_names_its_new_spelling():
    with pytest.raises(ConfigError) as e:
        build_config(Outer, {"size": 5}, where="m")
    assert str(e.value) == ("m: size is now inner.size (inner.size=5, or a [inner] table in TOML)")
    with pytest.raises(
        ConfigError,
        match="^m: unknown key nope for Outer; valid keys: width, sizes, scale, kind, inner$",
    ):
        build_config(Outer, {"nope": 5}, where="m")
    with pytest.raises(
        ConfigError,
        match=r"^m: size is now inner\.size .*; unknown key nope "
        r"for Outer; valid keys: width,",
    ):
        build_config(Outer, {"size": 5, "nope": 1}, where="m")


def test_the_model_says_where_an_old_trainer_key_went():
    with pytest.raises(ConfigError) as e:
        MultVAE(epochs=50)
    assert str(e.value) == (
        "mult-vae: epochs is now train.epochs (train.epochs=50, or a [train] table in TOML)"
    )
    with pytest.raises(
        ConfigError,
        match=r"diffusion\.steps.*train\.device=cpu.*\[diffusion\] "
        r"and a \[train\] table",
    ):
        DiffRec(steps=5, device="cpu")


def test_set_train_epochs_keeps_the_model_s_other_train_defaults():
    c = build_config(MultVAEConfig, parse_overrides(["train.epochs=50"]), where="mult-vae")
    assert c.train == TrainConfig(epochs=50, batch_size=500, lr=1e-3, patience=None)
    assert MultVAE(train={"epochs": 5}).config.train.patience is None  # not TrainConfig's 20
    with pytest.raises(ConfigError, match=r"^mult-vae\.train\.epochs: expected an integer"):
        MultVAE(train={"epochs": "many"})


def test_config_to_dict_nests_and_round_trips():
    c = build_config(Outer, {"sizes": [3], "inner": {"size": 2}})
    d = config_to_dict(c)
    assert d == {
        "width": 4,
        "sizes": [3],
        "scale": None,
        "kind": "a",
        "inner": {"size": 2, "rate": 0.5},
    }
    assert build_config(Outer, d) == c
    m = MultVAE(train={"lr": 0.01}).config
    assert build_config(MultVAEConfig, config_to_dict(m)) == m


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(width=1), "width must be in [2, 10], got 1"),
        (dict(width=11), "width must be in [2, 10], got 11"),
        (dict(width=True), "width must be an integer, got True"),
        (dict(width=4.0), "width must be an integer, got 4.0"),
        (dict(sizes=()), "sizes needs at least 1 entry, got ()"),
        (dict(sizes=(1, 0)), "sizes entries must be >= 1, got (1, 0)"),
        (dict(sizes=3), "sizes must be a tuple of integers, got 3"),
        (dict(scale=-1.0), "scale must be >= 0 and finite or None, got -1.0"),
        (dict(scale=float("inf")), "scale must be >= 0 and finite or None, got inf"),
        (dict(scale="1"), "scale must be a number or None, got '1'"),
        (dict(kind="c"), "kind must be one of a, b, got 'c'"),
        (dict(inner={"size": 1}), "inner must be a Inner, got dict"),
    ],
)
def test_declared_checks_run_at_construction(bad, message):
    with pytest.raises(ValueError) as e:
        Outer(**bad)
    assert str(e.value).startswith(message)


def test_declared_checks_accept_the_bounds_and_none():
    c = Outer(width=2, sizes=(1,), scale=0.0)
    assert (c.width, c.scale) == (2, 0.0)
    assert Outer(width=10, scale=None).width == 10


def test_range_descriptions():
    assert Range(ge=0, lt=1).describe(True) == "in [0, 1)"
    assert Range(gt=0).describe(True) == "> 0 and finite"
    assert Range(ge=1).describe(False) == ">= 1"
    assert Range().describe(True) == "finite"


@pytest.mark.parametrize(
    "bad",
    [
        dict(train={"epochs": 0}),
        dict(train={"device": "tpu"}),
        dict(train={"seed": 2**63}),
        dict(diffusion={"steps": 0}),
        dict(diffusion={"reverse_steps": 99}),
    ],
)
def test_diffrec_refuses_bad_train_and_diffusion_values_at_construction(bad):
    # regression: DiffRec's config did not check its trainer fields, so epochs=0 failed in fit
    with pytest.raises(ConfigError):
        DiffRec(**bad)


def test_dotted_and_nested_spellings_merge_without_changing_the_caller_s_dicts():
    given = {"inner": {"size": 2}, "inner.rate": 0.25}
    assert build_config(Outer, given).inner == Inner(size=2, rate=0.25)
    assert given == {"inner": {"size": 2}, "inner.rate": 0.25}
    with pytest.raises(ConfigError, match="given both as a value and as a table"):
        build_config(Outer, {"inner": 3, "inner.size": 2})


# issue 28, defect 13: a config with a byte-order mark or bytes that are not UTF-8
def test_a_toml_config_with_a_utf8_byte_order_mark_is_read(tmp_path):
    from genrec.config import load_toml

    p = tmp_path / "c.toml"
    p.write_bytes(b"\xef\xbb\xbfl2 = 5\n[train]\nepochs = 2\n")
    assert load_toml(p) == {"l2": 5, "train": {"epochs": 2}}


def test_a_toml_config_that_is_not_utf8_names_the_line_and_byte(tmp_path):
    from genrec.config import load_toml

    p = tmp_path / "c.toml"
    p.write_bytes(b"\xef\xbb\xbfl2 = 5\n# caf\xe9 au lait\n")  # latin-1 e-acute on line 2
    with pytest.raises(ConfigError) as e:
        load_toml(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}, line 2: not UTF-8 text") and "at byte 15" in msg
    assert "\n" not in msg and "save the config as UTF-8" in msg
