"""Exporters of the trainer's per-epoch log to experiment trackers: TensorBoard and MLflow.

Both are trainer :class:`~genrec.train.callbacks.Callback` objects: every number of an epoch's
record (the one ``train_log.jsonl`` holds, which stays the source of truth) becomes a scalar at
step ``epoch``; nested records are flattened with ``/`` (``valid/ndcg@20``). The packages are
optional extras, imported when an exporter is built::

    pip install 'genrec[tensorboard]'   # event files for `tensorboard --logdir DIR`
    pip install 'genrec[mlflow]'        # runs in an MLflow tracking store

MLflow refuses ``@`` in metric names, so there ``ndcg@20`` is written ``ndcg_at_20``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from genrec._optional import require
from genrec.errors import ConfigError
from genrec.train.callbacks import Callback

__all__ = ["TRACKERS", "TensorBoardLogger", "MLflowLogger", "flat_numbers", "make_trackers"]

TRACKERS = ("tensorboard", "mlflow")

log = logging.getLogger("genrec.train")


def flat_numbers(record: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a (nested) record, keys joined by ``/``; booleans and the epoch
    counter itself are left out."""
    out: dict[str, float] = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_numbers(v, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
            if math.isfinite(v):
                out[key] = float(v)
    return out


def _flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in params.items():
        if isinstance(v, Mapping):
            out.update(_flat_params(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
    return out


class TensorBoardLogger(Callback):
    """Writes each epoch's numbers as TensorBoard scalars into ``log_dir`` (TensorBoard shows
    every folder under ``--logdir`` as a run); a second fit of the same logger (a grid, more
    seeds) writes into ``log_dir-2``, and so on."""

    def __init__(self, log_dir: str | Path, params: Mapping[str, Any] | None = None):
        require("tensorboard", "tensorboard", "Exporting to TensorBoard")
        self.log_dir = Path(log_dir)
        self.params = dict(params or {})
        self._writer: Any = None
        self._fits = 0

    def on_train_begin(self, *, epochs: int, start_epoch: int, select: str | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._fits += 1  # a grid or several seeds: one folder per fit (name, name-2, ...)
        where = self.log_dir
        if self._fits > 1:
            where = where.with_name(f"{where.name}-{self._fits}")
        where.mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(str(where))
        if self.params and start_epoch == 0:
            text = "\n".join(f"    {k} = {v}" for k, v in _flat_params(self.params).items())
            self._writer.add_text("config", text, 0)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            return
        for key, value in flat_numbers(record).items():
            self._writer.add_scalar(key, value, int(record["epoch"]))
        self._writer.flush()

    def on_train_end(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MLflowLogger(Callback):
    """Logs each epoch's numbers as MLflow metrics (step = epoch) of one MLflow run in
    ``experiment``, the config as its parameters and ``tags`` as its tags; the run ends
    FINISHED, FAILED (training stopped with an error) or KILLED (interrupted).

    ``tracking_uri`` None: MLflow's own setting (``MLFLOW_TRACKING_URI``). The client is
    MLflow's explicit one (no active-run state is left behind in the process). The store is
    reached when the logger is built, so an unreachable one is an error before any training;
    a store that fails later, between epochs, is warned about once and exporting stops (the
    training goes on: train_log.jsonl is the record)."""

    def __init__(
        self,
        experiment: str,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        tracking_uri: str | None = None,
    ):
        require("mlflow", "mlflow", "Exporting to MLflow")
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri
        self.experiment, self.run_name = experiment, run_name
        self.params, self.tags = dict(params or {}), dict(tags or {})
        self.run_id: str | None = None
        self._status = "FINISHED"
        with _store_errors(self.uri, "cannot be used"):
            self.client = MlflowClient(tracking_uri=tracking_uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                found.experiment_id
                if found is not None
                else self.client.create_experiment(experiment)
            )

    def on_train_begin(self, *, epochs: int, start_epoch: int, select: str | None) -> None:
        with _store_errors(self.uri, "refused a new run"):
            run = self.client.create_run(self.experiment_id, run_name=self.run_name, tags=self.tags)
            self.run_id = run.info.run_id
            for key, value in _flat_params(self.params).items():
                self.client.log_param(self.run_id, key, value[:6000])
        self._status = "FINISHED"

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        epoch, stamp = int(record["epoch"]), _now_ms()
        metrics = [
            Metric(key.replace("@", "_at_"), value, stamp, epoch)
            for key, value in flat_numbers(record).items()
        ]
        try:
            if metrics:
                self.client.log_batch(self.run_id, metrics=metrics)
        except Exception as e:  # the store went away: the run goes on without the export
            log.warning("MLflow export stopped at epoch %d: %s", epoch, str(e).splitlines()[0])
            self.run_id = None

    def on_train_error(self, error: BaseException) -> None:
        self._status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"

    def on_train_end(self) -> None:
        if self.run_id is not None:
            try:
                self.client.set_terminated(self.run_id, status=self._status)
            except Exception as e:  # already said nothing: the record is train_log.jsonl
                log.warning("MLflow run %s not closed: %s", self.run_id, str(e).splitlines()[0])
            self.run_id = None


@contextlib.contextmanager
def _store_errors(uri: str | None, what: str) -> Iterator[None]:
    """MLflow's errors (any kind: HTTP, SQL, its own) as one line naming the store."""
    try:
        yield
    except Exception as e:  # MLflow raises many kinds, each a store problem here
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        where = uri or "the MLFLOW_TRACKING_URI store"
        raise ConfigError(f"MLflow tracking store {where} {what}: {first}") from None


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def make_trackers(
    kinds: tuple[str, ...] | list[str],
    *,
    folder: str | Path,
    name: str,
    params: Mapping[str, Any] | None = None,
    experiment: str = "genrec",
    tags: Mapping[str, str] | None = None,
    mlflow_uri: str | None = None,
) -> list[Callback]:
    """The exporters named in ``kinds``: TensorBoard event files in ``folder/tensorboard/
    name``; MLflow runs named ``name`` in ``experiment`` (``mlflow_uri`` None: the
    ``MLFLOW_TRACKING_URI`` setting, else ``sqlite:///folder/mlflow.db``)."""
    import os

    out: list[Callback] = []
    for kind in kinds:
        if kind == "tensorboard":
            out.append(TensorBoardLogger(Path(folder) / "tensorboard" / name, params))
        elif kind == "mlflow":
            uri = mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
            if uri is None:
                Path(folder).mkdir(parents=True, exist_ok=True)
                uri = f"sqlite:///{Path(folder).resolve() / 'mlflow.db'}"
            out.append(MLflowLogger(experiment, name, params, tags, uri))
        else:
            raise ValueError(f"unknown tracker {kind!r}; known: {', '.join(TRACKERS)}")
    return out
