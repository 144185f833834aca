"""Doctests: the examples in the docstrings of genrec.models and genrec.foundations run with
the test suite (``python -m pytest`` collects them through ``testpaths``). Only these two
packages: their examples are small and fast; the rest of src/ is not collected.
"""

from pathlib import Path

import pytest
from _pytest.doctest import DoctestModule

_DOCTESTED = [Path(__file__).parent / "src" / "genrec" / p for p in ("models", "foundations")]


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if file_path.suffix == ".py" and any(d in file_path.parents for d in _DOCTESTED):
        return DoctestModule.from_parent(parent, path=file_path)
    return None
