"""Optional packages, imported where a feature needs them.

The core install (numpy, scipy, pandas, torch, click, rich) trains and evaluates every model
but L-DiffRec; the extras add the rest::

    pip install 'genrec[analysis]'   # matplotlib, openTSNE, scikit-learn, umap-learn
    pip install 'genrec[parquet]'    # pyarrow
    pip install 'genrec[serve]'      # fastapi, uvicorn, httpx (genrec serve)
    pip install 'genrec[tensorboard]'  # --log tensorboard
    pip install 'genrec[mlflow]'     # --log mlflow (mlflow-skinny)
    pip install 'genrec[tune]'       # genrec tune (optuna)

Code that needs one of these packages imports it inside the function that uses it, through
:func:`require`, so that ``import genrec`` and its subpackages work without them and a missing
package is reported as one line naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from genrec.errors import MissingExtraError

__all__ = ["EXTRAS", "require"]

# top-level module -> (distribution on PyPI, the extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "matplotlib": ("matplotlib", "analysis"),
    "openTSNE": ("openTSNE", "analysis"),
    "sklearn": ("scikit-learn", "analysis"),
    "umap": ("umap-learn", "analysis"),
    "pyarrow": ("pyarrow", "parquet"),
    "fastapi": ("fastapi", "serve"),
    "uvicorn": ("uvicorn", "serve"),
    "httpx": ("httpx", "serve"),
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow-skinny", "mlflow"),
    "optuna": ("optuna", "tune"),
}


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import and return ``module`` (``"sklearn.cluster"``), or raise MissingExtraError.

    ``purpose`` names what needs it, as the start of the message: ``require("pyarrow",
    "parquet", "Reading a Parquet log")`` raises "Reading a Parquet log needs the optional
    package pyarrow: pip install 'genrec[parquet]'" when pyarrow is not installed. A package
    that is installed but fails to import for another reason (one of its own dependencies
    missing) raises that error unchanged.
    """
    top = module.partition(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.partition(".")[0] != top:
            raise
        dist = EXTRAS.get(top, (top, extra))[0]
        raise MissingExtraError(
            f"{purpose} needs the optional package {dist}: pip install 'genrec[{extra}]'"
        ) from None
