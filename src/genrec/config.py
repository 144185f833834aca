"""Typed configuration: frozen dataclasses filled from TOML files and ``key=value`` overrides.

Unknown keys are errors (with the list of valid ones), values are converted to the field's
declared type, and each config's ``__post_init__`` checks ranges. Nothing here reads argv or
the environment; the CLI passes in what the user gave.

Configs compose: a field whose type is itself a config dataclass (``train: TrainConfig``) is
filled from a table (``[train]`` in TOML, ``--set train.epochs=50``, ``train={"epochs": 50}``)
over its current value, so the other nested values keep the model's defaults.

Range checks are declared once per field, beside its type, and run by one helper::

    latent_dim: Annotated[int, Range(ge=1)] = 200  # K

    def __post_init__(self) -> None:
        check_ranges(self)  # every Range of the class, then any cross-field checks
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import sys
import types
import typing
from numbers import Integral, Real
from pathlib import Path
from typing import Annotated, Any, TypeVar

from genrec.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

C = TypeVar("C")

__all__ = [
    "build_config",
    "parse_overrides",
    "load_toml",
    "config_to_dict",
    "convert_value",
    "valid_device_name",
    "Range",
    "check_ranges",
    "nested_config_fields",
]


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a syntax error names the file and line.

    TOML is UTF-8: a leading byte-order mark (some Windows editors write one) is dropped, and
    other bytes that are not UTF-8 are an error naming the line and byte offset."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    raw = p.read_bytes()
    data = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        offset = e.start + len(raw) - len(data)  # in the file, the mark counted
        raise ConfigError(
            f"{p}, line {line}: not UTF-8 text ({e.reason} at byte {offset}); save the "
            f"config as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None


def _parse_scalar(text: str) -> Any:
    """Parse an override value with TOML's rules (numbers, booleans, lists, strings)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Turn ``["lr=0.01", "dims=[200, 600]", "protocol.seed=3"]`` into a nested dict."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.lr=0.001")
        key, _, value = item.partition("=")
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r}: empty key")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_scalar(value.strip())
    return out


def convert_value(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise a ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return convert_value(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [_parse_scalar(v.strip()) for v in value.strip("[]()").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        inner = args[0] if args else Any
        conv = [convert_value(v, inner, where) for v in value]
        return tuple(conv) if origin is tuple else conv
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _is_config(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@functools.cache
def nested_config_fields(cls: type) -> dict[str, type]:
    """The fields of the config dataclass ``cls`` that are config dataclasses themselves
    (name -> their class), e.g. ``{"train": TrainConfig}``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if _is_config(hints[f.name])}


def _toml_value(v: Any) -> str:
    """``v`` as one would write it after ``--set key=``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def _unflatten(values: dict[str, Any]) -> dict[str, Any]:
    """``{"train.epochs": 5}`` -> ``{"train": {"epochs": 5}}`` (dotted keys, as --grid gives),
    tables given both ways merged; a new dict (the caller's nested dicts are not changed)."""
    out: dict[str, Any] = {}

    def put(node: dict[str, Any], k: str, v: Any, key: str) -> None:
        if isinstance(node.get(k), dict) and isinstance(v, dict):
            for k2, v2 in v.items():
                put(node[k], k2, v2, key)
        elif k in node and (isinstance(node[k], dict) or isinstance(v, dict)):
            raise ConfigError(f"{key}: {k!r} is given both as a value and as a table")
        else:
            node[k] = v

    for key, v in values.items():
        if isinstance(v, dict):
            v = _unflatten(v)
        parts = key.split(".")
        for part in reversed(parts[1:]):
            v = {part: v}
        put(out, parts[0], v, key)
    return out


def _moved_keys_error(
    cls: type, keys: list[str], values: dict[str, Any], where: str
) -> tuple[str, dict[str, str]] | None:
    """The "epochs is now train.epochs" message for old flat keys of a nested config, and
    those keys (old -> new); None when ``keys`` has none."""
    nested = nested_config_fields(cls)
    moved = {}
    for k in keys:
        homes = [
            name for name, sub in nested.items() if k in {f.name for f in dataclasses.fields(sub)}
        ]
        if homes:
            moved[k] = f"{homes[0]}.{k}"
    if not moved:
        return None
    olds, news = ", ".join(moved), ", ".join(moved.values())
    sets = " ".join(f"{new}={_toml_value(values[old])}" for old, new in moved.items())
    tables = sorted({new.split(".")[0] for new in moved.values()})
    verb = "is" if len(moved) == 1 else "are"
    return (
        f"{where}: {olds} {verb} now {news} ({sets}, or a "
        f"{' and a '.join(f'[{t}]' for t in tables)} table in TOML)",
        moved,
    )


def build_config(
    cls: type[C],
    values: dict[str, Any] | None = None,
    *,
    base: C | None = None,
    where: str = "config",
) -> C:
    """Build the dataclass ``cls`` from ``values`` (over ``base`` or the defaults).

    Unknown keys raise :class:`ConfigError` listing the valid ones (a key that now lives in
    a nested config names its new spelling); the dataclass's own ``__post_init__`` range
    checks raise ``ValueError``, re-raised as ConfigError. A dict given for a field that is a
    config dataclass is built into it, over ``base``'s value of that field (or the field's
    default), recursively; an instance is taken as it is. Dotted keys (``"train.lr"``) are
    the same as nested dicts.
    """
    values = _unflatten(dict(values or {}))
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        moved = _moved_keys_error(cls, unknown, values, where)
        rest = [k for k in unknown if moved is None or k not in moved[1]]
        text = (
            (
                f"unknown key{'s' if len(rest) > 1 else ''} {', '.join(rest)} for "
                f"{cls.__name__}; valid keys: {', '.join(fields)}"
            )
            if rest
            else ""
        )
        if moved is not None:
            raise ConfigError(moved[0] + (f"; {text}" if text else ""))
        raise ConfigError(f"{where}: {text}")
    hints = typing.get_type_hints(cls)
    converted = {}
    for k, v in values.items():
        sub = hints[k]
        if _is_config(sub) and isinstance(v, dict):
            current = getattr(base, k) if base is not None else _field_default(fields[k])
            converted[k] = build_config(sub, v, base=current, where=f"{where}.{k}")
        elif _is_config(sub) and not isinstance(v, sub):
            raise ConfigError(
                f"{where}.{k}: expected a table of {sub.__name__} keys (e.g. "
                f"{k}.KEY=VALUE or a [{k}] table), got {v!r}"
            )
        else:
            converted[k] = convert_value(v, sub, f"{where}.{k}")
    try:
        if base is not None:
            return dataclasses.replace(base, **converted)  # type: ignore[type-var]
        return cls(**converted)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (nested configs as dicts, tuples as lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return [plain(x) for x in v] if isinstance(v, (tuple, list)) else v

    return plain(dataclasses.asdict(cfg))


# ---------------------------------------------------------------------------- range checks


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric field (or each entry of a tuple field) may take.

    ``ge``/``le`` are inclusive bounds, ``gt``/``lt`` strict ones; a float must also be
    finite; ``None`` passes where the type allows it; ``min_len`` is the least number of
    entries of a tuple. Used as ``Annotated[float, Range(ge=0, lt=1)]`` and checked by
    :func:`check_ranges`.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_len: int = 0

    def describe(self, real: bool) -> str:
        """``"in [0, 1)"``, ``">= 1"``, ``"> 0 and finite"``..."""

        def num(b: float) -> str:  # integers exactly (seed bounds), floats short
            return str(b) if isinstance(b, int) else f"{b:g}"

        lo = (
            f"[{num(self.ge)}"
            if self.ge is not None
            else f"({num(self.gt)}"
            if self.gt is not None
            else None
        )
        hi = (
            f"{num(self.le)}]"
            if self.le is not None
            else f"{num(self.lt)})"
            if self.lt is not None
            else None
        )
        if lo and hi:
            return f"in {lo}, {hi}"
        text = " and ".join(
            f"{op} {num(b)}"
            for op, b in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if b is not None
        )
        if not text:
            return "finite"
        return f"{text} and finite" if real and not hi else text

    def contains(self, v: float) -> bool:
        return (
            (self.ge is None or v >= self.ge)
            and (self.gt is None or v > self.gt)
            and (self.le is None or v <= self.le)
            and (self.lt is None or v < self.lt)
        )


@functools.cache
def _choices(cls: type) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """(name, allowed values) of each ``Literal`` field of ``cls``."""
    return tuple(
        (name, typing.get_args(tp))
        for name, tp in typing.get_type_hints(cls).items()
        if typing.get_origin(tp) is typing.Literal
    )


@functools.cache
def _ranges(cls: type) -> tuple[tuple[str, Range, Any, bool, bool], ...]:
    """(name, Range, number type, optional, tuple) of each ranged field of ``cls``."""
    out = []
    for name, tp in typing.get_type_hints(cls, include_extras=True).items():
        if typing.get_origin(tp) is not Annotated:
            continue
        rng = next((m for m in tp.__metadata__ if isinstance(m, Range)), None)
        if rng is None:
            continue
        inner = typing.get_args(tp)[0]
        args = typing.get_args(inner)
        optional = typing.get_origin(inner) in (typing.Union, types.UnionType) and (
            type(None) in args
        )
        if optional:
            inner = next(a for a in args if a is not type(None))
        is_tuple = typing.get_origin(inner) is tuple
        if is_tuple:
            inner = typing.get_args(inner)[0]
        out.append((name, rng, Integral if inner is int else Real, optional, is_tuple))
    return tuple(out)


def check_ranges(cfg: Any) -> None:
    """Check every field of the config dataclass ``cfg`` declared with a :class:`Range`, that
    ``Literal`` fields hold one of their values and nested config fields their config class;
    a ValueError naming the field otherwise. Call it first in the config's ``__post_init__``."""
    cls: type = type(cfg)
    for name, sub in nested_config_fields(cls).items():
        v = getattr(cfg, name)
        if not isinstance(v, sub):
            raise ValueError(
                f"{name} must be a {sub.__name__}, got {type(v).__name__} (pass a "
                f"dict through the model, Model({name}={{...}}), or "
                f"{sub.__name__}(...))"
            )
    for name, allowed in _choices(cls):
        if getattr(cfg, name) not in allowed:
            raise ValueError(
                f"{name} must be one of {', '.join(map(str, allowed))}, got {getattr(cfg, name)!r}"
            )
    for name, rng, kind, optional, is_tuple in _ranges(cls):
        v = getattr(cfg, name)
        if v is None and optional:
            continue
        noun = "integer" if kind is Integral else "number"
        what = f"a tuple of {noun}s" if is_tuple else f"a{'n' if kind is Integral else ''} {noun}"
        none = " or None" if optional else ""
        if is_tuple and not isinstance(v, (tuple, list)):
            raise ValueError(f"{name} must be {what}, got {v!r}")
        for x in v if is_tuple else (v,):
            if isinstance(x, bool) or not isinstance(x, kind):
                raise ValueError(f"{name} must be {what}{none}, got {v!r}")
            if not (rng.contains(x) and (kind is Integral or math.isfinite(x))):
                each = " entries" if is_tuple else ""
                raise ValueError(
                    f"{name}{each} must be {rng.describe(kind is Real)}{none}, got {v!r}"
                )
        if is_tuple and len(v) < rng.min_len:
            raise ValueError(
                f"{name} needs at least {rng.min_len} "
                f"entr{'y' if rng.min_len == 1 else 'ies'}, got {v!r}"
            )


def valid_device_name(name: Any) -> bool:
    """Whether ``name`` is a device setting: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    return isinstance(name, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", name) is not None
