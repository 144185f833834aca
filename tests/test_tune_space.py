"""Search spaces for `genrec tune`: the shipped ones load against their benchmark configs,
every bad space is one line naming the file and key, sampling follows the conditions."""

from pathlib import Path

import pytest

from genrec.config import build_config
from genrec.errors import ConfigError
from genrec.runs import RunSpec
from genrec.tune import load_space, space_from_mapping

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {
    "mult-vae": "configs/ml-1m/mult-vae.toml",
    "recvae": "configs/ml-1m/recvae.toml",
    "autorec": "configs/ml-100k/autorec-u1.toml",
}


class FakeTrial:
    """The suggest_* calls of an Optuna trial: the low end of a range, the last choice."""

    def __init__(self):
        self.asked = []

    def suggest_float(self, name, low, high, step=None, log=False):
        self.asked.append(name)
        return low

    def suggest_int(self, name, low, high, step=1, log=False):
        self.asked.append(name)
        return low

    def suggest_categorical(self, name, choices):
        self.asked.append(name)
        return choices[-1]


@pytest.mark.parametrize("model", sorted(SHIPPED))
def test_shipped_spaces_load_and_sample_configs_the_model_accepts(model):
    spec = RunSpec.from_toml(ROOT / SHIPPED[model])
    space = load_space(ROOT / "configs" / "spaces" / f"{model}.toml", model=model, base=spec.config)
    assert space.model == model and space.params
    values = space.sample(FakeTrial())
    assert set(values) == {p.key for p in space.params}
    cfg = build_config(spec.model_class.config_class, values, base=spec.config)
    assert cfg != spec.config


def test_sampling_kinds_and_a_list_choice_round_trip():
    space = space_from_mapping(
        {
            "model": "mult-vae",
            "params": {
                "train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                "latent_dim": {"low": 100, "high": 400, "step": 50},
                "anneal_cap": {"low": 0, "high": 1},  # a float setting: floats from int bounds
                "hidden_dims": {"choices": [[600], [1000, 300]]},
            },
        }
    )
    kinds = {p.key: p.kind for p in space.params}
    assert kinds == {
        "train.lr": "float",
        "latent_dim": "int",
        "anneal_cap": "float",
        "hidden_dims": "categorical",
    }
    assert isinstance(space.sample(FakeTrial())["anneal_cap"], float)
    values = space.sample(FakeTrial())
    assert values["hidden_dims"] == [1000, 300] and values["latent_dim"] == 100
    assert space.values_of({"hidden_dims": "[600]", "latent_dim": 150}) == {
        "hidden_dims": [600],
        "latent_dim": 150,
    }
    assert isinstance(values["latent_dim"], int)


def test_a_conditional_key_is_sampled_only_when_its_condition_holds():
    params = {
        "total_anneal_steps": {"choices": [200000, 1]},
        "anneal_cap": {"low": 0.1, "high": 0.5, "when": {"total_anneal_steps": [200000]}},
    }
    space = space_from_mapping({"model": "mult-vae", "params": params})
    trial = FakeTrial()  # takes the last choice: 1, so anneal_cap is not asked
    assert space.sample(trial) == {"total_anneal_steps": 1}
    assert trial.asked == ["total_anneal_steps"]
    params["total_anneal_steps"] = {"choices": [1, 200000]}
    space = space_from_mapping({"model": "mult-vae", "params": params})
    assert space.sample(FakeTrial()) == {"total_anneal_steps": 200000, "anneal_cap": 0.1}


def _toml(v):
    import json

    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    return json.dumps(v)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"dropuot": {"low": 0.1, "high": 0.5}}, r"params\.dropuot = 0\.1: .*unknown key dropuot"),
        ({"train.lrr": {"low": 0.1, "high": 0.5}}, r"unknown key lrr.*valid keys: epochs"),
        ({"dropout": {"low": 0.5, "high": 0.5}}, r"params\.dropout: empty range: low 0\.5"),
        ({"dropout": {"low": 0.6, "high": 0.2}}, r"empty range"),
        ({"train.lr": {"low": 0, "high": 0.1, "log": True}}, r"a log scale needs low > 0"),
        ({"train.lr": {"low": -1.0, "high": 0.1, "log": True}}, r"log scale needs low > 0"),
        ({"dropout": {"low": 0.1, "high": 1.0}}, r"params\.dropout = 1\.0: .*dropout"),
        ({"dropout": {"choices": []}}, r"choices must be a non-empty list"),
        ({"dropout": {"choices": [0.1, 0.1]}}, r"choices repeat a value"),
        ({"dropout": {"choices": [0.1], "low": 0.1}}, r"choices or a range"),
        ({"dropout": {"low": 0.1}}, r"give low and high"),
        ({"dropout": {"low": 0.1, "high": 0.5, "lg": True}}, r"unknown field lg"),
        ({"dropout": 0.3}, r"expected a table"),
        ({"dropout": {"low": "a", "high": 0.5}}, r"finite numbers"),
        ({"dropout": {"low": 0.1, "high": 0.5, "step": 0}}, r"step must be a number > 0"),
        ({"train.lr": {"low": 1e-4, "high": 1e-2, "log": True, "step": 1e-4}}, r"log or step"),
        ({"latent_dim": {"low": 1.5, "high": 4}}, r"latent_dim is an integer setting"),
        ({"train.epochs": {"low": 1, "high": 5.0}}, r"epochs is an integer setting"),
        ({"hidden_dims": {"low": 1, "high": 5}}, r"a range needs a number setting"),
        ({"dropout": {"choices": [0, 0.0]}}, r"choices repeat a value"),
        ({"dropout": {"choices": [1, True]}}, r"choices repeat a value"),
        (
            {
                "dropout": {"low": 0.1, "high": 0.5},
                "anneal_cap": {"low": 0.1, "high": 0.2, "when": {"dropout": [0.2]}},
            },
            r"when names 'dropout', a range; a condition needs a key with choices",
        ),
        (
            {
                "total_anneal_steps": {"choices": [1, 200000]},
                "anneal_cap": {"low": 0.1, "high": 0.2, "when": {"total_anneal_steps": [2000]}},
            },
            r"when total_anneal_steps = 2000 is not one of its choices \(1, 200000\)",
        ),
        (
            {"anneal_cap": {"low": 0.1, "high": 0.5, "when": {"total_anneal_steps": [1]}}},
            r"when names 'total_anneal_steps', which is not a key earlier",
        ),
        ({}, r"no \[params\] table"),
    ],
)
def test_bad_spaces_are_one_line_errors_naming_the_file_and_key(tmp_path, params, match):
    path = tmp_path / "space.toml"
    lines = ['model = "mult-vae"', "[params]"]
    lines += [f'"{key}" = {_toml(entry)}' for key, entry in params.items()]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=match) as info:
        load_space(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_space_for_another_model_or_unknown_keys_are_refused(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('model = "recvae"\n[params]\ngamma = { low = 0.001, high = 0.1 }\n')
    with pytest.raises(ConfigError, match="this space is for recvae, not mult-vae"):
        load_space(path, model="mult-vae")
    path.write_text('model = "recvae"\nparam = 1\n')
    with pytest.raises(ConfigError, match="unknown key param; a space file has"):
        load_space(path)
    path.write_text("[params]\ngamma = { low = 0.001, high = 0.1 }\n")
    with pytest.raises(ConfigError, match="name the model"):
        load_space(path)
    path.write_text("model = 3\n[params]\ngamma = { low = 0.001, high = 0.1 }\n")
    with pytest.raises(ConfigError, match="model must be a model name"):
        load_space(path)

    with pytest.raises(ConfigError, match="config file not found"):
        load_space(tmp_path / "missing.toml")


def test_a_list_valued_choice_is_a_condition_listed_as_a_list():
    params = {
        "hidden_dims": {"choices": [[600], [1000]]},
        "latent_dim": {"low": 100, "high": 200, "when": {"hidden_dims": [[1000]]}},
    }
    space = space_from_mapping({"model": "mult-vae", "params": params})
    assert space.sample(FakeTrial()) == {"hidden_dims": [1000], "latent_dim": 100}
