"""Shared fixtures of the foundations tests."""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_blas():
    """Run BLAS (and OpenMP) single-threaded: the tests use tiny matrices, and on a shared machine
    multi-threaded BLAS calls (e.g. scikit-learn's triangular solves) wait for busy cores."""
    with threadpool_limits(limits=1):
        yield
