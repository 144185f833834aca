"""What the checks share: the model factory type, the error and score helpers, and
the runner that names the check that failed."""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from genrec.models.base import Recommender

ModelFactory = Callable[..., Recommender]  # make_model(seed=...) -> an unfitted model


# ----------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _raises(exc: type[BaseException], match: str | None = None) -> Iterator[None]:
    """Assert that the block raises ``exc`` whose message contains ``match`` (re.search)."""
    try:
        yield
    except exc as e:
        if match is not None and not re.search(match, str(e)):
            raise AssertionError(
                f"{type(e).__name__} raised, but its message {str(e)!r} does not match {match!r}"
            ) from e
        return
    raise AssertionError(f"{exc.__name__} was not raised")


def _scores(model: Recommender, users: np.ndarray | None, X: Any) -> np.ndarray:
    """``model.score(users, X)`` as a NumPy array (torch tensors moved to the CPU)."""
    s = model.score(users, X)
    if hasattr(s, "detach"):  # a torch tensor
        s = s.detach().cpu().numpy()
    return np.asarray(s)


def check_scores_are_the_callers(fitted: Any, users: np.ndarray | None, X: Any) -> None:
    """``score`` returns new, writable memory: the evaluator masks seen items in it, so
    writing into one result must change neither the model nor a later result."""
    import torch

    first = fitted.score(users, X)
    if isinstance(first, np.ndarray):
        assert first.flags.writeable, "score returned a read-only array; return a copy"
    want = _scores(fitted, users, X).copy()
    with torch.inference_mode():  # in place, as the evaluator writes
        torch.as_tensor(first).fill_(float("nan"))
    again = _scores(fitted, users, X)
    assert np.array_equal(again, want, equal_nan=True), (
        "writing into one score result changed the next: score must return new memory "
        "(a copy of any array the model keeps)"
    )


@contextlib.contextmanager
def _folder(path: str | Path | None) -> Iterator[Path]:
    """``path``, or a temporary folder removed afterwards."""
    if path is not None:
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="genrec-conformance-") as tmp:
        yield Path(tmp)


def _run(checks: list[tuple[str, Callable[[], None]]], model: Recommender) -> None:
    for name, check in checks:
        try:
            check()
        except AssertionError as e:
            raise AssertionError(f"{type(model).__name__} fails check_{name}: {e}") from e
