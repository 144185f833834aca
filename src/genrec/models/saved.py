"""What a saved model folder holds, checked before anything in it is used.

``model.json`` is read by :func:`read_model_json`: UTF-8 text, one JSON object, the fields
``format``, ``model``, ``config`` and ``n_items`` of the right types; anything else is a
:class:`genrec.errors.DataError` "not a genrec model folder: field ..." naming the file.

``weights.npz`` is checked against the model's declaration of its state,
:meth:`Recommender.state_arrays` (name -> :class:`ArraySpec`): a shape in sizes computed from
``model.json`` (the item count, the config) or named dimensions that the saved arrays bind
and must agree on (``"n_users"``), and a dtype kind. :func:`load_state` reads only the
file's headers first, so a missing, unexpected, mistyped or mis-sized array, or a
``model.json`` declaring more weights than the file holds, is refused before any array is
inflated or any network allocated; then the arrays are read and every float array is
checked to be finite. Each error is one line naming the file and the array.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from genrec.errors import CorruptFileError, DataError
from genrec.io import INFLATION_SLACK, RECORD_DIGEST, check_npz, load_arrays, record_intact

__all__ = [
    "ArraySpec",
    "read_model_json",
    "check_headers",
    "load_state",
    "csr_from_state",
]

Dim = int | str | None  # a size, a named dimension bound by the arrays, or any size

#: the dtype kinds of :class:`ArraySpec` and the numpy kinds each accepts
KINDS = {
    "f": ("f", "floating point"),
    "i": ("iu", "integer"),
    "U": ("U", "text"),
    "b": ("b", "bool"),
}


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """One saved array: its shape and dtype kind.

    shape : per axis an ``int`` (the size, computed from ``model.json``), a ``str`` (a named
        dimension such as ``"n_users"``: every array naming it must have the same size
        there) or ``None`` (any size; the model checks it in ``_set_state``).
    kind : ``"f"`` floating point, ``"i"`` integer, ``"U"`` text, ``"b"`` bool.
    finite : for floats, NaN and infinite values are refused.
    """

    shape: tuple[Dim, ...]
    kind: str = "f"
    finite: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")


# ----------------------------------------------------------------------------- model.json
def _not_a_folder(path: Path, what: str) -> DataError:
    return DataError(
        f"{path}: not a genrec model folder: {what}; save the model again "
        f"(Recommender.save or genrec train)"
    )


def read_model_json(path: Path, expected_format: str) -> dict[str, Any]:
    """The fields of ``model.json`` at ``path``, checked for presence and type."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise _not_a_folder(path, "the file is not UTF-8 text") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise _not_a_folder(path, f"invalid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise _not_a_folder(path, f"a JSON {type(meta).__name__}, not an object")
    if not record_intact(meta):  # before the fields: a flipped byte is damage, not a format
        raise CorruptFileError(
            f"{path}: corrupt file (its {RECORD_DIGEST} differs from its contents); "
            f"save the model again or restore the file"
        )
    for key in ("format", "model", "config", "n_items"):
        if key not in meta:
            raise _not_a_folder(path, f"field {key!r} is missing")
    if meta["format"] != expected_format:
        raise DataError(
            f"{path}: unsupported format {meta['format']!r}, expected {expected_format}"
        )
    if not isinstance(meta["model"], str):
        raise _not_a_folder(path, f"field 'model' must be a model name, got {meta['model']!r}")
    if not isinstance(meta["config"], dict):
        raise _not_a_folder(path, "field 'config' must be a table of settings")
    n = meta["n_items"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise _not_a_folder(path, f"field 'n_items' must be a positive integer, got {n!r}")
    return meta


# ----------------------------------------------------------------------------- weights.npz
def _show_dim(d: Dim, dims: Mapping[str, int]) -> str:
    if d is None:
        return "any"
    if isinstance(d, str):
        return f"{d}={dims[d]}" if d in dims else d
    return str(d)


def _show(shape: tuple[Dim, ...], dims: Mapping[str, int]) -> str:
    """``(n_users=12, 4)``: a declared shape, with the named dimensions bound so far."""
    parts = [_show_dim(d, dims) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def check_headers(
    spec: Mapping[str, ArraySpec],
    headers: Mapping[str, tuple[tuple[int, ...], np.dtype]],
    where: str,
    dims: dict[str, int] | None = None,
) -> dict[str, int]:
    """A DataError naming ``where`` and the array unless the arrays (name -> (shape, dtype),
    the headers of a ``.npz`` or the arrays themselves) are exactly those of ``spec``;
    returns the named dimensions bound (``dims`` holds those known beforehand)."""
    dims = dict(dims or {})
    missing = [name for name in spec if name not in headers]
    if missing:
        raise DataError(f"{where}: array {missing[0]!r} is missing; save the model again")
    unexpected = [name for name in headers if name not in spec]
    if unexpected:
        raise DataError(
            f"{where}: unexpected array {unexpected[0]!r} (not one this model saves); "
            f"save the model again"
        )
    for name, want in spec.items():
        shape, dtype = headers[name]
        kinds, kind_name = KINDS[want.kind]
        if dtype.kind not in kinds:
            raise DataError(
                f"{where}: array {name!r} has dtype {dtype}, expected {kind_name}; "
                f"save the model again"
            )
        bound = dict(dims)
        ok = len(shape) == len(want.shape)
        for got, d in zip(shape, want.shape):
            if isinstance(d, str):
                d = bound.setdefault(d, got)
            ok = ok and (d is None or got == d)
        if not ok:
            raise DataError(
                f"{where}: array {name!r} has shape {tuple(shape)}, expected "
                f"{_show(want.shape, dims)}: the weights do not match model.json's config "
                f"and sizes; save the model again"
            )
        dims = bound
    return dims


def load_state(
    spec: Mapping[str, ArraySpec] | None,
    path: Path,
    meta_path: Path,
) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` at ``path``, checked against ``spec`` (the declaration
    of the model that ``meta_path`` describes) before they are read, and checked to be
    finite after. ``spec`` None (a model that declares nothing) checks finiteness only."""
    headers = check_npz(path)
    if spec is not None:
        _check_size(spec, headers, path, meta_path)
        check_headers(spec, headers, str(path))
    arrays = load_arrays(path)
    for name, arr in arrays.items():
        want = spec[name] if spec is not None else ArraySpec(arr.shape, "f")
        if arr.dtype.kind == "f" and want.finite:
            bad = int(np.count_nonzero(~np.isfinite(arr)))
            if bad:
                raise DataError(
                    f"{path}: array {name!r} has {bad} NaN or infinite values; the "
                    f"model diverged or the file is damaged, train it again"
                )
    return arrays


def _check_size(
    spec: Mapping[str, ArraySpec],
    headers: Mapping[str, tuple[tuple[int, ...], np.dtype]],
    path: Path,
    meta_path: Path,
) -> None:
    """A DataError naming ``model.json`` when the sizes it implies (the fixed dimensions of
    ``spec``) add up to more bytes than the file at ``path`` can hold."""
    declared = 0
    for name, want in spec.items():
        if name not in headers:
            continue
        shape, dtype = headers[name]
        fixed = [d for d in want.shape if isinstance(d, int)]
        if len(shape) == len(want.shape):
            free = [g for g, d in zip(shape, want.shape) if not isinstance(d, int)]
        else:
            free = []
        declared += math.prod(fixed) * math.prod(free) * dtype.itemsize
    size = os.path.getsize(path)
    if declared > size + INFLATION_SLACK:
        raise DataError(
            f"{meta_path}: declares {declared / 2**20:,.0f} MiB of weights (its item "
            f"count and config) but {path.name} holds {size / 2**20:.1f} MiB; the two "
            f"files were not written together, save the model again"
        )


def csr_from_state(state: Mapping[str, np.ndarray], prefix: str) -> sp.csr_matrix:
    """The CSR matrix saved as ``{prefix}indptr``, ``indices``, ``data`` and ``shape``,
    checked to form one (a DataError naming the arrays otherwise). The arrays' shapes and
    kinds have been checked against the model's :class:`ArraySpec` already."""
    shape_arr = state[f"{prefix}shape"]
    indptr = state[f"{prefix}indptr"].astype(np.int64)
    indices = state[f"{prefix}indices"].astype(np.int64)
    shape = tuple(int(x) for x in shape_arr)
    ok = (
        len(shape) == 2
        and min(shape) >= 0
        and len(indptr) == shape[0] + 1
        and indptr[0] == 0
        and indptr[-1] == len(indices)
        and bool(np.all(np.diff(indptr) >= 0))
        and (len(indices) == 0 or (indices.min() >= 0 and indices.max() < shape[1]))
    )
    if not ok:
        raise DataError(
            f"arrays {prefix}indptr, {prefix}indices and {prefix}shape do not form a "
            f"sparse matrix; save the model again"
        )
    data = state[f"{prefix}data"].astype(np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(shape[0], shape[1]))
