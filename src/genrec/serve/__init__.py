"""The HTTP recommendation service (``genrec serve``): a thin layer over
:func:`genrec.runs.load_run` and ``Recommender.recommend``.

>>> from genrec.serve import ServeConfig, create_app          # doctest: +SKIP
>>> app = create_app(ServeConfig(runs=("runs/ease-ml-1m",)))  # doctest: +SKIP

FastAPI and uvicorn are the optional extra ``genrec[serve]``; importing this package needs
neither (:func:`create_app` imports them), so a missing one is reported as one line naming
the extra. The endpoints and their JSON are described in ``docs/serving.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from genrec._optional import require
from genrec.serve.config import CONFIG_ENV, Limits, ServeConfig
from genrec.serve.errors import ServeError

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ServeConfig", "Limits", "ServeError", "CONFIG_ENV", "create_app", "require_serve"]


def require_serve() -> None:
    """A MissingExtraError naming ``genrec[serve]`` unless FastAPI and uvicorn import."""
    for module in ("fastapi", "uvicorn"):
        require(module, "serve", "genrec serve")


def create_app(config: ServeConfig | None = None, **kwargs: Any) -> FastAPI:
    """The FastAPI app serving ``config``'s run folders (see :mod:`genrec.serve.app`)."""
    require_serve()
    from genrec.serve.app import create_app as build

    return build(config, **kwargs)
