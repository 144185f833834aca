"""Distributed runs: rank 0 carries out the run, the other ranks take part in its fits.

Under ``torchrun`` (or ``genrec train --nproc N``) every process parses the same command.
Rank 0 runs :func:`genrec.runs.train_run` (or ``resume_run``) as a single process would: it
checks the run folder, loads the data, writes the run folder and, at the end, evaluates test
and saves the model. Before each fit (every configuration, seed and refit) it sends the
others a fit command (:func:`announce_fit`, JSON over the process group, no pickling); they
load the same data set under the same protocol (once, then cached), build the same model
and join the trainer's collectives (:mod:`genrec.train.distributed`), reading the
checkpoint of a resumed run from rank 0's staging folder (one machine, or a shared file
system) and writing nothing. :func:`serve` is their loop; :func:`announce_stop` ends it.

The evaluations of the runner after a fit (validation for the selection, test) run on rank 0
alone; the per-epoch validation inside the trainer is sharded.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from genrec.config import build_config, config_to_dict
from genrec.data import DataOptions, load_dataset
from genrec.protocols import ProtocolConfig, build_protocol
from genrec.runs.fitting import fingerprint, fit_model, refit_data, refit_sequences
from genrec.runs.spec import RunSpec

__all__ = ["announce_fit", "announce_stop", "serve"]

log = logging.getLogger("genrec.runs")


def announce_fit(
    group: Any, spec: RunSpec, config: Any, part: str, run_dir: Path | None, resume: bool
) -> None:
    """Rank 0: tell the other ranks to fit ``config`` on ``part`` ("train": the training
    part, validated; "refit": training + validation, not validated)."""
    group.broadcast_json(
        {
            "op": "fit",
            "model": spec.model,
            "config": config_to_dict(config),
            "dataset": str(spec.dataset),
            "data": dataclasses.asdict(spec.data),
            "protocol": dataclasses.asdict(spec.protocol),
            "part": part,
            "run_dir": None if run_dir is None else str(run_dir),
            "resume": resume,
        },
        "announcing a fit",
    )
    group.wait_all("waiting for the other processes to load the data")


def announce_stop(group: Any) -> None:
    """Rank 0: the run is over (done or failed); the other ranks return from :func:`serve`."""
    group.broadcast_json({"op": "stop"}, "ending the run")


def serve(group: Any) -> int:
    """Ranks > 0: take part in rank 0's fits until it ends the run; the number of fits."""
    from genrec.models import get_model_class

    loaded: dict[str, Any] = {}
    fits = 0
    while True:
        cmd = group.broadcast_json(None, "waiting for rank 0")
        if cmd.get("op") == "stop":
            return fits
        cls = get_model_class(cmd["model"])
        # written by rank 0's config_to_dict of this version: no upgrade of old keys
        config: Any = build_config(cls.config_class, cmd["config"], where=cls.name)
        data = build_config(DataOptions, cmd["data"], where="data")
        protocol = build_config(ProtocolConfig, cmd["protocol"], where="protocol")
        key = repr((cmd["dataset"], cmd["data"], cmd["protocol"]))
        if key not in loaded:
            loaded.clear()
            ds = load_dataset(cmd["dataset"], data)
            loaded[key] = (ds, build_protocol(ds, protocol))
        ds, pdata = loaded[key]
        model = cls(config)
        group.wait_all("waiting for the other processes to load the data")
        run_dir = None if cmd["run_dir"] is None else Path(cmd["run_dir"])
        if cmd["part"] == "refit":
            fit_model(model, refit_data(pdata), None, ds, sequences=refit_sequences(pdata))
        else:
            fp = fingerprint(cls.name, config, protocol, pdata.train.matrix, pdata)
            fit_model(
                model,
                pdata.train.matrix,
                pdata.valid,
                ds,
                run_dir,
                bool(cmd["resume"]),
                fp,
                sequences=pdata.train_sequences,
            )
        fits += 1
        log.debug("rank %d: fit %d done", group.rank, fits)
