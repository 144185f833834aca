"""The study folder: the chosen configuration as a runnable config file, the trials table,
a summary, a report and plots, every file written atomically.

``OUT/best.toml``      the chosen configuration (``genrec train --config OUT/best.toml``)
``OUT/trials.csv``     one row per trial: state, objective, spread, seeds' scores, values
``OUT/study.json``     the summary (best trial, counts, the final test numbers)
``OUT/report.md``      the same for people, with the trials table
``OUT/history.png``    the objective per trial and the best so far (with matplotlib)
``OUT/importance.png`` Optuna's parameter importances (with matplotlib, >= 2 complete trials)
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import TYPE_CHECKING, Any

from genrec.config import config_to_dict
from genrec.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from genrec.tune.space import SearchSpace

if TYPE_CHECKING:
    from genrec.tune.study import TuneSpec

__all__ = ["trial_rows", "best_row", "write_study", "to_toml"]


def trial_rows(study: Any, space: SearchSpace) -> list[dict[str, Any]]:
    """Every trial of the study (queued ones left out) as a plain dict."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "WAITING":
            continue
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "sd": t.user_attrs.get("sd"),
                "scores": t.user_attrs.get("scores"),
                "best_epochs": t.user_attrs.get("best_epochs"),
                "seconds": t.user_attrs.get("seconds"),
                "pruned_at": max(t.intermediate_values) if t.state.name == "PRUNED" else None,
                "error": t.user_attrs.get("error"),
                "values": space.values_of(t.params),
            }
        )
    return rows


def best_row(study: Any, space: SearchSpace) -> dict[str, Any]:
    t = study.best_trial
    return {
        "number": t.number,
        "value": t.value,
        "sd": t.user_attrs.get("sd"),
        "scores": t.user_attrs.get("scores"),
        "values": space.values_of(t.params),
    }


# ----------------------------------------------------------------------------- TOML
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if v is None:
        return '"none"'  # what the configs read as None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(str(v))


def to_toml(values: dict[str, Any], header: str = "") -> str:
    """A run config's layout as TOML: top-level keys first, then one table per nested dict."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    flat = {k: v for k, v in values.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in values.items() if isinstance(v, dict)}
    lines += [f"{_key(k)} = {_value(v)}" for k, v in flat.items()]

    def table(name: str, body: dict[str, Any]) -> None:
        lines.append("")
        lines.append(f"[{name}]")
        inner = {k: v for k, v in body.items() if isinstance(v, dict)}
        lines.extend(f"{_key(k)} = {_value(v)}" for k, v in body.items() if k not in inner)
        for k, v in inner.items():
            table(f"{name}.{_key(k)}", v)

    for name, body in tables.items():
        table(_key(name), body)
    return "\n".join(lines) + "\n"


def best_config(spec: TuneSpec, best: dict[str, Any]) -> dict[str, Any]:
    """The chosen configuration in a run config's layout."""
    from genrec.tune.study import chosen_config

    base = spec.base
    cfg = chosen_config(spec, best["values"])
    return {
        "model": base.model,
        "dataset": base.dataset,
        **config_to_dict(cfg),
        "protocol": config_to_dict(base.protocol),
        "data": config_to_dict(base.data),
    }


# ----------------------------------------------------------------------------- files
def _csv(rows: list[dict[str, Any]], keys: list[str]) -> str:
    buf = io.StringIO()
    fields = ["number", "state", "value", "sd", "scores", "best_epochs", "seconds", "pruned_at"]
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields + keys + ["error"])
    for r in rows:
        cells = [r[f] if not isinstance(r[f], list) else json.dumps(r[f]) for f in fields]
        vals = [json.dumps(r["values"][k]) if k in r["values"] else "" for k in keys]
        writer.writerow(["" if c is None else c for c in cells] + vals + [r["error"] or ""])
    return buf.getvalue()


def spread(spec: TuneSpec, best: dict[str, Any]) -> str:
    """`` ± sd`` of the best trial over its seeds ("" with one seed)."""
    return f" ± {best['sd']:.4f}" if best.get("sd") is not None and len(spec.seeds) > 1 else ""


def state_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Trials per state (COMPLETE, PRUNED, FAIL), in that name order."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return dict(sorted(counts.items()))


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


_SHOWN = ("recall", "ndcg", "rmse", "mae")


def _test_text(test: dict[str, Any] | None, metric: str) -> str:
    if test is None:
        return "Test was not read (final training skipped)."
    parts = []
    for k, v in test["test"].items():
        if not isinstance(v, (dict, int, float)) or k.split("@")[0] not in _SHOWN:
            continue
        if isinstance(v, dict):
            parts.append(f"{k} {v['mean']:.4f} ± {v['sd']:.4f}")
        else:
            parts.append(f"{k} {v:.4f}")
    seeds = ", ".join(map(str, test["seeds"])) or "none (deterministic)"
    return (
        f"Test, read once for the chosen configuration, trained again with seeds {seeds} "
        f"(`{test['run']}`): " + "; ".join(parts) + "."
    )


def _report(spec: TuneSpec, rows: list[dict[str, Any]], best: dict[str, Any], test: Any) -> str:
    keys = [p.key for p in spec.space.params]
    metric = spec.metric_name
    lines = [
        f"# Study {spec.study_name}: {spec.base.model} on {spec.base.dataset}",
        "",
        f"- protocol {spec.base.protocol.name}; objective: mean validation {metric} over seeds "
        f"{', '.join(map(str, spec.seeds))}",
        f"- storage `{spec.storage_url}`; trials: "
        + ", ".join(f"{n} {s.lower()}" for s, n in state_counts(rows).items()),
        f"- best: trial {best['number']}, valid {metric} {best['value']:.4f}{spread(spec, best)}",
        f"- chosen values: {json.dumps(best['values'])}",
        f"- {_test_text(test, metric)}",
        "",
        "| trial | state | valid mean | sd | seconds | " + " | ".join(keys) + " |",
        "|---" * (5 + len(keys)) + "|",
    ]
    for r in rows:
        vals = [json.dumps(r["values"][k]) if k in r["values"] else "" for k in keys]
        state = r["state"].lower() + (f" at epoch {r['pruned_at']}" if r["pruned_at"] else "")
        lines.append(
            f"| {r['number']} | {state} | {_fmt(r['value'])} | {_fmt(r['sd'])} | "
            f"{_fmt(r['seconds'] and round(r['seconds'], 1))} | " + " | ".join(vals) + " |"
        )
    return "\n".join(lines) + "\n"


def _plots(study: Any) -> dict[str, bytes | str]:
    """PNG bytes per file name, or a reason string when a plot cannot be drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization.matplotlib import (
            plot_optimization_history,
            plot_param_importances,
        )
    except ImportError:
        return {"plots": "not drawn: pip install 'genrec[analysis]' for matplotlib"}
    import warnings

    out: dict[str, bytes | str] = {}
    for name, draw in (("history.png", plot_optimization_history), ("importance.png", None)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                if draw is None:
                    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
                    if len(complete) < 2:
                        out[name] = "not drawn: fewer than 2 complete trials"
                        continue
                    ax = plot_param_importances(study)
                else:
                    ax = draw(study)
            fig: Any = ax.figure
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
            plt.close(fig)
            out[name] = buf.getvalue()
        except (ValueError, RuntimeError) as e:
            out[name] = f"not drawn: {e}"
    return out


def _writer(raw: bytes) -> Any:
    return lambda f: f.write(raw)


def write_study(
    spec: TuneSpec,
    study: Any,
    rows: list[dict[str, Any]],
    best: dict[str, Any],
    test: dict[str, Any] | None,
) -> list[str]:
    """Write the study folder's files (atomically, each); their names."""
    out = spec.out
    keys = [p.key for p in spec.space.params]
    header = (
        f"The configuration study {spec.study_name} chose (trial {best['number']}): mean "
        f"validation {spec.metric_name} {best['value']:.4f}{spread(spec, best)} over seeds "
        f"{', '.join(map(str, spec.seeds))}.\n"
        "Train it with genrec train, this file as its config.\n"
    )
    if test is not None:
        header += "\n" + _test_text(test, spec.metric_name) + "\n"
    atomic_write_text(out / "best.toml", to_toml(best_config(spec, best), header))
    atomic_write_text(out / "trials.csv", _csv(rows, keys))
    atomic_write_text(out / "report.md", _report(spec, rows, best, test))
    files = ["best.toml", "trials.csv", "report.md", "study.json"]
    notes = {}
    for name, content in _plots(study).items():
        if isinstance(content, bytes):
            atomic_write_bytes(out / name, _writer(content))
            files.append(name)
        else:
            notes[name] = content
    summary = {
        "study": spec.study_name,
        "storage": spec.storage_url,
        "model": spec.base.model,
        "dataset": spec.base.dataset,
        "metric": spec.metric_name,
        "seeds": list(spec.seeds),
        "best": best,
        "trials": state_counts(rows),
        "test": test,
        "plots": notes or None,
    }
    atomic_write_json(out / "study.json", summary)
    return files
