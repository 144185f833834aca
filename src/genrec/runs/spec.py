"""``RunSpec``: everything one training run needs, typed and checked before any work.

A spec is built from the layout of a run config (TOML or a nested dict): the model's keys
at the top level (its nested tables, such as ``[train]``, as tables), and the ``[protocol]``,
``[data]`` and ``[run]`` tables; ``model`` and ``dataset`` may be given there too::

    model = "recvae"
    dataset = "ml-1m_clean"
    gamma = 0.015
    [train]
    lr = 1e-3
    [protocol]
    name = "diffrec"
    [run]
    seeds = [0, 1, 2]

Every value is converted and range-checked when the spec is built, every configuration of a
grid too, so that a bad value fails before data is loaded or a folder is written.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrec.config import build_config, config_to_dict, load_toml, parse_overrides
from genrec.data import DataOptions
from genrec.errors import ConfigError
from genrec.models import get_model_class
from genrec.models.base import Recommender
from genrec.protocols import ProtocolConfig

__all__ = ["RunSpec", "MAX_GRID", "merge", "parse_grid"]

MAX_GRID = 1000  # configurations a grid may have (each is a full fit)
_RUN_KEYS = ("grid", "select", "seeds", "refit", "keep_checkpoint")


def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """``b`` over ``a``, nested tables merged key by key."""
    out = dict(a)
    for k, v in b.items():
        old = out.get(k)
        out[k] = merge(old, v) if isinstance(v, Mapping) and isinstance(old, Mapping) else v
    return out


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["l2=100,500", "train.lr=0.1,0.01"]`` -> ``{"l2": [100, 500], "train.lr": [...]}``."""
    grid: dict[str, list[Any]] = {}
    for g in items:
        key, eq, vals = g.partition("=")
        values = [parse_overrides([f"v={v.strip()}"])["v"] for v in vals.split(",") if v.strip()]
        if not eq or not key.strip() or not values:
            raise ConfigError(f"grid {g!r}: expected key=v1,v2,..., e.g. l2=100,500")
        grid[key.strip()] = values
    return grid


def _nest(key: str, value: Any) -> dict[str, Any]:
    """``("train.lr", 0.1)`` -> ``{"train": {"lr": 0.1}}``."""
    node: dict[str, Any] = {}
    out = node
    parts = key.split(".")
    for p in parts[:-1]:
        node[p] = {}
        node = node[p]
    node[parts[-1]] = value
    return out


def _config_fields(cls: type[Recommender]) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls.config_class)}


def _train_key(cls: type[Recommender], key: str) -> str | None:
    """Where a trainer setting (device, precision, seed) lives in ``cls``'s config:
    ``"train.KEY"`` in a nested train config, ``"KEY"`` at the top, or None."""
    fields = _config_fields(cls)
    if "train" in fields:
        return f"train.{key}"
    return key if key in fields else None


def _grid_configs(
    cls: type[Recommender], base: Any, grid: Mapping[str, Sequence[Any]]
) -> list[tuple[dict[str, Any], Any]]:
    """Every combination of the grid as (params, config), each built and checked."""
    n = math.prod(len(v) for v in grid.values()) if grid else 1
    if n > MAX_GRID:  # counted before anything is built: 1000 x 1000 would take minutes
        raise ConfigError(
            f"grid: {n} configurations, at most {MAX_GRID} (each is a full fit); narrow it"
        )
    combos: list[dict[str, Any]] = [{}]
    for key, options in grid.items():
        if not options:
            raise ConfigError(f"grid {key}: no values to try")
        combos = [{**c, key: v} for c in combos for v in options]
    out = []
    for combo in combos:
        values: dict[str, Any] = {}
        for k, v in combo.items():
            values = merge(values, _nest(k, v))
        out.append(
            (
                combo,
                build_config(cls.config_class, values, base=base, where=cls.name)
                if combo
                else base,
            )
        )
    return out


@dataclass(frozen=True)
class RunSpec:
    """One training run.

    Attributes
    ----------
    model : registered model name (``genrec.models.MODELS``)
    dataset : a known data set name or a path
    config : the model's config dataclass (the model's defaults when built without values)
    data : how the data set is read
    protocol : the evaluation protocol
    grid : key -> values to try (all combinations); keys as in the config, nested ones
        dotted (``train.lr``)
    select : the validation metric that picks among the grid (and seeds); None = ndcg@20
        for ranking, rmse for rating protocols
    seeds : train each configuration once per seed and select on the mean; () = the config's
    refit : refit the chosen configuration on training + validation data (for its best
        number of epochs) before the test evaluation
    out : the run folder; None = ``runs/MODEL-DATASET``
    force : start over where an unfinished run is kept, or in a folder of other files
    keep_checkpoint : keep the training checkpoint (``checkpoint/``, optimizer state included)
        in the folder of the finished run, so that it can be trained further; by default it
        is removed when the run finishes (an interrupted run always keeps it)
    """

    model: str
    dataset: str
    config: Any = None
    data: DataOptions = field(default_factory=DataOptions)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    select: str | None = None
    seeds: tuple[int, ...] = ()
    refit: bool = False
    out: Path | None = None
    force: bool = False
    keep_checkpoint: bool = False

    def __post_init__(self) -> None:
        cls = get_model_class(self.model)
        object.__setattr__(self, "model", cls.name)
        if self.config is None:
            object.__setattr__(self, "config", cls.config_class())
        elif not isinstance(self.config, cls.config_class):
            raise ConfigError(
                f"RunSpec.config: {cls.name} takes a {cls.config_class.__name__},"
                f" got {type(self.config).__name__}"
            )
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError("RunSpec.dataset: give a data set name or a path")
        seeds = tuple(self.seeds)
        if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
            raise ConfigError(f"run.seeds: expected a list of integers, got {list(seeds)}")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"run.seeds: {list(seeds)} repeats a seed")
        if seeds and _train_key(cls, "seed") is None:
            raise ConfigError(
                f"run.seeds: {cls.name} has no seed (it is deterministic); drop seeds"
            )
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "grid", {k: tuple(v) for k, v in dict(self.grid).items()})
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))
        configs = self.configs()  # every grid configuration is checked now
        from genrec.models.base import resolve_device

        for _, cfg in configs:  # cuda without CUDA: said before any data is loaded
            device = getattr(getattr(cfg, "train", cfg), "device", None)
            if isinstance(device, str):
                resolve_device(device)

    # ------------------------------------------------------------------ derived
    @property
    def model_class(self) -> type[Recommender]:
        return get_model_class(self.model)

    def configs(self) -> list[tuple[dict[str, Any], Any]]:
        """(grid params, config) for every configuration to try (one without a grid)."""
        return _grid_configs(self.model_class, self.config, self.grid)

    def setting_key(self, key: str) -> str | None:
        """Where the trainer setting ``key`` (seed, select_metric, device...) lives in this
        model's config: ``"train.KEY"``, ``"KEY"``, or None when the model has none."""
        return _train_key(self.model_class, key)

    def with_seed(self, config: Any, seed: int) -> Any:
        """``config`` with its seed (the train config's, where nested) set to ``seed``."""
        key = _train_key(self.model_class, "seed")
        assert key is not None
        return build_config(
            self.model_class.config_class, _nest(key, seed), base=config, where=self.model
        )

    def to_dict(self) -> dict[str, Any]:
        """The spec in the layout :meth:`from_mapping` reads (JSON-ready)."""
        return {
            "model": self.model,
            "dataset": self.dataset,
            **config_to_dict(self.config),
            "protocol": config_to_dict(self.protocol),
            "data": config_to_dict(self.data),
            "run": {
                "grid": {k: list(v) for k, v in self.grid.items()},
                "select": self.select,
                "seeds": list(self.seeds),
                "refit": self.refit,
                "keep_checkpoint": self.keep_checkpoint,
            },
        }

    # ------------------------------------------------------------------ building
    @classmethod
    def from_mapping(
        cls,
        values: Mapping[str, Any],
        *,
        model: str | None = None,
        dataset: str | None = None,
        device: str | None = None,
        precision: str | None = None,
        seed: int | None = None,
        out: str | Path | None = None,
        force: bool = False,
        where: str = "config",
    ) -> RunSpec:
        """A spec from a run config's layout (see the module docstring); the keywords win
        over the values (``seed`` seeds the model and the protocol)."""
        values = dict(values)
        named_model, named_data = values.pop("model", None), values.pop("dataset", None)
        model = model or named_model
        dataset = dataset or named_data
        if not model or not dataset:
            raise ConfigError(
                f"{where}: name the model and the data set (model = ..., dataset = ...)"
            )
        tables = {}
        for name in ("protocol", "data", "run"):
            sec = values.pop(name, {})
            if not isinstance(sec, Mapping):
                raise ConfigError(f"{where}: [{name}] must be a table of keys, got {sec!r}")
            tables[name] = dict(sec)
        run = tables["run"]
        unknown = sorted(set(run) - set(_RUN_KEYS))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(unknown)} in [run]; valid keys: "
                f"{', '.join(_RUN_KEYS)}"
            )
        mcls = get_model_class(model)
        for key, v in (("device", device), ("precision", precision), ("seed", seed)):
            if v is None:
                continue
            path = _train_key(mcls, key)
            if path is None:
                if key == "device" and v in ("auto", "cpu"):
                    continue  # closed-form and numpy models run on the CPU
                if key == "seed":
                    continue  # a deterministic model: the seed splits the data only
                raise ConfigError(f"{key} does not apply to {mcls.name}")
            values = merge(values, _nest(path, v))
        if seed is not None:
            tables["protocol"]["seed"] = seed
        config: Any = build_config(mcls.config_class, values, where=mcls.name)
        proto = dict(tables["protocol"])
        if "name" not in proto:  # the protocol the model selects on (FM: by objective)
            proto["name"] = "rating" if mcls(config).selects_on() == "rating" else "diffrec"
        grid = run.get("grid", {})
        if not isinstance(grid, Mapping):
            raise ConfigError(f"{where}: run.grid must be a table of key = [values]")
        grid = {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in grid.items()}
        refit = run.get("refit", False)
        if not isinstance(refit, bool):
            raise ConfigError(f"{where}: run.refit must be true or false, got {refit!r}")
        keep = run.get("keep_checkpoint", False)
        if not isinstance(keep, bool):
            raise ConfigError(f"{where}: run.keep_checkpoint must be true or false, got {keep!r}")
        select = run.get("select")
        if select is not None and not isinstance(select, str):
            raise ConfigError(f"{where}: run.select must be a metric name such as ndcg@20")
        seeds = run.get("seeds", [])
        if not isinstance(seeds, (list, tuple)):
            seeds = [seeds]
        return cls(
            model=mcls.name,
            dataset=str(dataset),
            config=config,
            data=build_config(DataOptions, tables["data"], where="data"),
            protocol=build_config(ProtocolConfig, proto, where="protocol"),
            grid=grid,
            select=select,
            seeds=tuple(seeds),
            refit=refit,
            out=Path(out) if out else None,
            force=force,
            keep_checkpoint=keep,
        )

    @classmethod
    def from_toml(
        cls, path: str | Path, overrides: Mapping[str, Any] | None = None, **keywords: Any
    ) -> RunSpec:
        """A spec from a TOML run config, with ``overrides`` (a nested dict) over it."""
        values = merge(load_toml(path), overrides or {})
        return cls.from_mapping(values, where=str(path), **keywords)
