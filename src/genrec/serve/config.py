"""The service's settings: which run folders, the request limits, the API key's variable.

A :class:`ServeConfig` is all an app needs (:func:`genrec.serve.create_app`). Worker processes
started by uvicorn (``--workers N``) rebuild the app from an import string, so the config
travels to them as JSON in one environment variable, :data:`CONFIG_ENV`, that the parent
sets; the API key itself never does (each worker reads the variable ``api_key_env`` names).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from genrec.errors import ConfigError

__all__ = ["ServeConfig", "Limits", "CONFIG_ENV", "DEFAULT_BATCH_USERS", "model_names"]

#: the environment variable through which ``genrec serve --workers N`` hands its config to
#: the worker processes (set by the parent for its children only)
CONFIG_ENV = "GENREC_SERVE_CONFIG"

#: the most users one model call scores for requests waiting together (genrec.serve.batching)
DEFAULT_BATCH_USERS = 256

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Limits:
    """Request limits; a request above one is answered 413."""

    max_k: int = 1000  # the largest k (items per list) a request may ask for
    max_history: int = 2000  # the most item ids in one posted history
    max_batch: int = 1000  # the most users or histories in one batch request
    max_body_bytes: int = 2 * 1024 * 1024  # the largest request body, in bytes

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"serve limit {f.name} must be a positive integer, got {v!r}")


@dataclass(frozen=True)
class ServeConfig:
    """What to serve and how.

    runs : the run folders, each served under its folder name (``/v1/models/{name}``).
    limits : the request limits.
    api_key_env : the environment variable holding the API key; None serves without one.
    batch_users : the most users one model call scores for the requests waiting together
        (1 scores each request alone; see :mod:`genrec.serve.batching`).
    """

    runs: tuple[Path, ...]
    limits: Limits = field(default_factory=Limits)
    api_key_env: str | None = None
    batch_users: int = DEFAULT_BATCH_USERS

    def __post_init__(self) -> None:
        if not self.runs:
            raise ConfigError("serve: give at least one run folder")
        b = self.batch_users
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ConfigError(f"serve: batch_users must be a positive integer, got {b!r}")
        object.__setattr__(self, "runs", tuple(Path(p) for p in self.runs))
        model_names(self.runs)  # names checked before anything loads

    def api_key(self) -> str | None:
        """The API key from the environment (None when no variable is named)."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env, "")
        if not key.strip():
            raise ConfigError(
                f"api_key_env: the environment variable {self.api_key_env} is unset or "
                f"empty; export the key in it, or serve without an API key"
            )
        return key.strip()

    def to_json(self) -> str:
        return json.dumps(
            {
                "runs": [str(p) for p in self.runs],
                "limits": dataclasses.asdict(self.limits),
                "api_key_env": self.api_key_env,
                "batch_users": self.batch_users,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        try:
            d = json.loads(text)
            return cls(tuple(d["runs"]), Limits(**d["limits"]), d["api_key_env"], d["batch_users"])
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{CONFIG_ENV}: not a serve config ({e})") from None


def model_names(runs: tuple[Path, ...]) -> list[str]:
    """The name each run folder is served under (its folder name), checked: URL-safe and
    unique."""
    names = []
    for p in runs:
        name = p.resolve().name
        if not _NAME.match(name):
            raise ConfigError(
                f"{p}: the folder name {name!r} cannot be a model name in a URL (letters, "
                f"digits, '.', '_' and '-', starting with a letter or digit); rename the folder"
            )
        if name in names:
            raise ConfigError(
                f"{p}: two run folders are both named {name!r}; each is served under its "
                f"folder name, so rename one"
            )
        names.append(name)
    return names
