"""Search spaces: which config keys a study varies, over which ranges, read from TOML.

A space file names the model and, under ``[params]``, one entry per config key (nested keys
dotted, as ``--set`` takes them)::

    model = "mult-vae"
    [params]
    "train.lr" = { low = 1e-4, high = 1e-2, log = true }   # a float range, log scale
    dropout = { low = 0.3, high = 0.7 }
    latent_dim = { low = 100, high = 400, step = 50 }       # an integer setting: integers
    hidden_dims = { choices = [[600], [1000]] }             # one of these values
    total_anneal_steps = { choices = [1, 200000] }
    anneal_cap = { low = 0.1, high = 0.5, when = { total_anneal_steps = [200000] } }

A range samples integers or floats as the config's field is typed (``l2 = { low = 10, high =
1000 }`` of a float setting samples floats). ``when`` makes a key conditional: it is sampled
only when an earlier key of the space, one with ``choices``, took one of the listed values
(otherwise the base config's value stays); for list-valued choices list lists
(``when = { hidden_dims = [[600]] }``).

Everything is checked when the space is read, against the model's config: a key the model
does not have, a bound or choice the config refuses, a range over a setting that is not a
number, an empty range, a log scale with a bound <= 0, a ``when`` naming a later key, a key
without choices, or a value not among them. Each is one :class:`ConfigError` line naming
the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from genrec.config import build_config, load_toml
from genrec.errors import ConfigError
from genrec.models import get_model_class

__all__ = ["Param", "SearchSpace", "load_space", "space_from_mapping"]

_KEYS = {"low", "high", "log", "step", "choices", "when"}


@dataclass(frozen=True)
class Param:
    """One searched key: a range (``kind`` "int" or "float") or a list of ``choices``."""

    key: str
    kind: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def describe(self) -> str:
        if self.kind == "categorical":
            return "one of " + ", ".join(json.dumps(c) for c in self.choices)
        text = f"{self.kind} in [{self.low:g}, {self.high:g}]"
        return text + (" (log)" if self.log else "") + (f" step {self.step:g}" if self.step else "")

    def active(self, chosen: Mapping[str, Any]) -> bool:
        """Whether this key is sampled, given the values the earlier keys took."""
        return all(k in chosen and chosen[k] in vals for k, vals in self.when)

    def suggest(self, trial: Any) -> Any:
        """This key's value for an Optuna ``trial``."""
        if self.kind == "categorical":
            labels = [_label(c) for c in self.choices]
            got = trial.suggest_categorical(self.key, labels)
            return self.choices[labels.index(got)]
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=step, log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def from_stored(self, value: Any) -> Any:
        """A value as Optuna stores it (a label for a list choice) as the config takes it."""
        if self.kind == "categorical":
            labels = [_label(c) for c in self.choices]
            return self.choices[labels.index(value)] if value in labels else value
        return value


def _label(choice: Any) -> Any:
    """Optuna keeps None, bool, int, float and str choices; a list is kept as its JSON."""
    return json.dumps(choice) if isinstance(choice, (list, tuple, dict)) else choice


@dataclass(frozen=True)
class SearchSpace:
    """The keys a study varies (in file order), for ``model``; ``source`` names the file."""

    model: str
    params: tuple[Param, ...]
    source: str = "space"

    def sample(self, trial: Any) -> dict[str, Any]:
        """The configuration values of one trial, dotted keys as the space names them."""
        chosen: dict[str, Any] = {}
        for p in self.params:
            if p.active(chosen):
                chosen[p.key] = p.suggest(trial)
        return chosen

    def values_of(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """Config values from a finished trial's stored params."""
        by_key = {p.key: p for p in self.params}
        return {k: by_key[k].from_stored(v) if k in by_key else v for k, v in stored.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (stored with the study, compared when it continues)."""
        return {
            "model": self.model,
            "params": [
                {
                    "key": p.key,
                    "kind": p.kind,
                    "low": p.low,
                    "high": p.high,
                    "log": p.log,
                    "step": p.step,
                    "choices": list(p.choices),
                    "when": [[k, list(v)] for k, v in p.when],
                }
                for p in self.params
            ],
        }


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _field_kind(cls: type, key: str) -> str | None:
    """ "int" or "float" for a number setting of the config class ``cls`` (dotted keys walk
    nested configs; Optional unwrapped), None for any other type or an unknown key."""
    node: Any = cls
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(node):
            return None
        hints = typing.get_type_hints(node)
        if part not in hints:
            return None
        tp = hints[part]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else None
        if i < len(parts) - 1:
            node = tp
            continue
        if tp is int:
            return "int"
        return "float" if tp is float else None
    return None


def _same(a: Any, b: Any) -> bool:
    """Equal as Optuna would store them (0 and 0.0, 1 and True are one value there)."""
    return bool(a == b) or json.dumps(a) == json.dumps(b)


def _parse_param(key: str, entry: Any, where: str, earlier: dict[str, Param], cls: type) -> Param:
    at = f"{where}: params.{key}"
    if not isinstance(entry, Mapping):
        raise ConfigError(
            f"{at}: expected a table such as {{ low = 0.1, high = 0.5 }} or {{ choices = [...] }}"
            f", got {entry!r}"
        )
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise ConfigError(
            f"{at}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"valid fields: {', '.join(sorted(_KEYS))}"
        )
    when: list[tuple[str, tuple[Any, ...]]] = []
    cond = entry.get("when", {})
    if not isinstance(cond, Mapping) or not cond:
        if "when" in entry:
            raise ConfigError(f"{at}: when must be a table such as {{ optimizer = ['sgd'] }}")
        cond = {}
    for k, v in cond.items():
        if k not in earlier:
            raise ConfigError(
                f"{at}: when names {k!r}, which is not a key earlier in the space; a condition "
                f"can only refer to a key listed above it"
            )
        if earlier[k].kind != "categorical":
            raise ConfigError(
                f"{at}: when names {k!r}, a range; a condition needs a key with choices"
            )
        vals = tuple(v) if isinstance(v, list) else (v,)
        if not vals:
            raise ConfigError(f"{at}: when {k} lists no values")
        for x in vals:
            if not any(_same(x, c) for c in earlier[k].choices):
                raise ConfigError(
                    f"{at}: when {k} = {json.dumps(x)} is not one of its choices "
                    f"({', '.join(json.dumps(c) for c in earlier[k].choices)})"
                )
        when.append((k, vals))
    if "choices" in entry:
        choices = entry["choices"]
        extra = sorted(set(entry) & {"low", "high", "log", "step"})
        if extra:
            raise ConfigError(f"{at}: give choices or a range (low, high), not both ({extra[0]})")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{at}: choices must be a non-empty list of values")
        labels = [_label(c) for c in choices]
        for i, a in enumerate(labels):
            if any(a == b for b in labels[:i]):
                raise ConfigError(
                    f"{at}: choices repeat a value ({json.dumps(choices[i])}; 0 and 0.0, 1 "
                    f"and true count as one)"
                )
        return Param(key, "categorical", choices=tuple(choices), when=tuple(when))
    if "low" not in entry or "high" not in entry:
        raise ConfigError(f"{at}: give low and high (a range) or choices = [...]")
    low, high = entry["low"], entry["high"]
    if not _number(low) or not _number(high) or not math.isfinite(low) or not math.isfinite(high):
        raise ConfigError(f"{at}: low and high must be finite numbers, got {low!r} and {high!r}")
    if not low < high:
        raise ConfigError(f"{at}: empty range: low {low} is not below high {high}")
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{at}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{at}: a log scale needs low > 0, got low = {low}")
    step = entry.get("step")
    if step is not None and (not _number(step) or not step > 0):
        raise ConfigError(f"{at}: step must be a number > 0, got {step!r}")
    if step is not None and log:
        raise ConfigError(f"{at}: give log or step, not both (Optuna samples one or the other)")
    resolved = _field_kind(cls, key)
    if resolved is None:
        try:  # an unknown key: the config's own message, with its list of valid keys
            build_config(cls, {key: low}, where=cls.__name__)
        except ConfigError as e:
            if "unknown key" in str(e):
                raise ConfigError(f"{at} = {low!r}: {e}") from None
        raise ConfigError(
            f"{at}: a range needs a number setting, and {key} is not one (or not a key of "
            f"{cls.__name__}); give choices = [...]"
        )
    if resolved == "int" and not all(
        isinstance(v, int) for v in (low, high) + (() if step is None else (step,))
    ):
        raise ConfigError(f"{at}: {key} is an integer setting; give integer low, high and step")
    kind: Literal["int", "float"] = "int" if resolved == "int" else "float"
    return Param(
        key, kind, float(low), float(high), log, None if step is None else float(step),
        when=tuple(when),
    )  # fmt: skip


def _check_against_model(space: SearchSpace, base: Any) -> None:
    """Every key and every bound or choice of the space, built into the model's config."""
    cls = get_model_class(space.model)
    for p in space.params:
        if p.kind == "categorical":
            values = list(p.choices)
        elif p.kind == "int":
            values = [int(p.low or 0), int(p.high or 0)]
        else:
            values = [p.low, p.high]
        for v in values:
            try:
                build_config(cls.config_class, {p.key: v}, base=base, where=cls.name)
            except ConfigError as e:
                raise ConfigError(f"{space.source}: params.{p.key} = {v!r}: {e}") from None


def space_from_mapping(
    values: Mapping[str, Any], *, model: str | None = None, base: Any = None, where: str = "space"
) -> SearchSpace:
    """A :class:`SearchSpace` from a space file's layout, checked against ``model``'s config
    (over ``base``, a config of that model, or its defaults)."""
    unknown = sorted(set(values) - {"model", "params"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"a space file has model = ... and a [params] table"
        )
    named = values.get("model")
    if named is not None and not isinstance(named, str):
        raise ConfigError(f'{where}: model must be a model name such as "mult-vae", got {named!r}')
    if (
        model is not None
        and named is not None
        and get_model_class(named).name != (get_model_class(model).name)
    ):
        raise ConfigError(
            f"{where}: this space is for {named}, not {model}; give the space of {model}"
        )
    name = model or named
    if not name:
        raise ConfigError(f"{where}: name the model (model = ...)")
    cls = get_model_class(name)
    params = values.get("params")
    if not isinstance(params, Mapping) or not params:
        raise ConfigError(f"{where}: no [params] table: list the keys to search")
    parsed: dict[str, Param] = {}
    for key, entry in params.items():
        parsed[key] = _parse_param(key, entry, where, dict(parsed), cls.config_class)
    space = SearchSpace(cls.name, tuple(parsed.values()), where)
    _check_against_model(space, base if base is not None else cls.config_class())
    return space


def load_space(path: str | Path, *, model: str | None = None, base: Any = None) -> SearchSpace:
    """Read and check a space file (see the module docstring)."""
    return space_from_mapping(load_toml(path), model=model, base=base, where=str(path))
