"""Build a model whose config nests its training settings under ``train``, from flat keys."""

from __future__ import annotations

import dataclasses
from typing import Any

from genrec.train import TrainConfig

TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)}


def nested(cls: type, **kw: Any) -> Any:
    """``cls(**kw)`` with the TrainConfig keys of ``kw`` set in the model's default ``train``
    config (``valid_metric`` is ``select_metric``)."""
    if "valid_metric" in kw:
        kw["select_metric"] = kw.pop("valid_metric")
    train = {k: kw.pop(k) for k in list(kw) if k in TRAIN_KEYS}
    base = cls.config_class().train
    return cls(**kw, train=dataclasses.replace(base, **train))
