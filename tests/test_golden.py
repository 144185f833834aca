"""Golden scores: every entry of benchmarks/golden.py gives bitwise the numbers recorded
(on another machine, where float sums round differently, the same numbers to a relative
1e-4 and nearly the same top lists: ``golden.CROSS_*``).

tests/golden/v0.1.0.json was written by ``benchmarks/golden.py --write`` on the 0.1.0 code,
tests/golden/v0.2.0.json on this one. Every entry equals the 0.2.0 file; every entry not in
:data:`MOVED` or :data:`ADDED` also equals the 0.1.0 file (the redesign left its arithmetic
unchanged). The entries in MOVED changed on purpose, for the reason given there. A failure
names the entry and says what moved and by how much (metrics old -> new, the score matrix's
summary, how many users' top lists changed); ``python benchmarks/golden.py --check
tests/golden/v0.1.0.json`` prints the same report for every entry at once.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from benchmarks import golden

RECORDED = Path(__file__).parent / "golden" / "v0.1.0.json"
CURRENT = Path(__file__).parent / "golden" / "v0.2.0.json"

#: entries whose numbers changed since 0.1.0, and why
MOVED = {
    entry: (
        "trains on the shared Trainer since 0.2.0: the batches are drawn by the trainer's "
        "torch generator (NumPy's before), Adam is the fused kernel, and the loss and its "
        "penalty are summed in another order; the update rule is the same"
    )
    for entry in ("biased-mf", "bpr-mf", "fm", "fm/bpr")
}

#: entries new since 0.1.0 (models it did not have): compared with the 0.2.0 file only
ADDED = {"transition", "gru4rec", "bert4rec", "hstu", "sasrec", "vq-vae", "tiger", "p5"}


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(RECORDED.read_text())


@pytest.fixture(scope="module")
def current() -> dict:
    return json.loads(CURRENT.read_text())


def test_recorded_file_covers_the_table_and_every_registered_model(recorded, current):
    assert recorded["format"] == golden.FORMAT
    assert list(recorded["entries"]) == [e for e in golden.GOLDEN_CONFIGS if e not in ADDED]
    assert list(current["entries"]) == list(golden.GOLDEN_CONFIGS)
    from genrec.models import MODELS

    missing = sorted(set(MODELS) - {golden.model_name(e) for e in golden.GOLDEN_CONFIGS})
    assert not missing, f"registered models without a golden entry: {', '.join(missing)}"


@pytest.mark.parametrize("entry", list(golden.GOLDEN_CONFIGS))
def test_entry_matches_the_recorded_numbers(entry, recorded, current):
    actual = golden.run_entry(entry)
    for file, reference in ((CURRENT, current), (RECORDED, recorded)):
        if reference is recorded and (entry in MOVED or entry in ADDED):
            continue
        recorded_under = reference["entries"][entry].get("environment", reference["environment"])
        exact = golden.same_environment(recorded_under, golden.environment())  # or its own
        diffs = golden.compare_entry(entry, reference["entries"][entry], actual, exact)
        if diffs and not exact:
            diffs.append(
                golden.environment_note(
                    {"environment": recorded_under}, {"environment": golden.environment()}
                )
            )
        assert not diffs, f"against {file.name}:\n" + "\n".join(diffs)


def _perturbed(rec: dict, rel: float, swap_top: int = 0) -> dict:
    out = copy.deepcopy(rec)
    out["scores_sha256"] = "0" * 64
    out["metrics"] = {k: v * (1 + rel) for k, v in rec["metrics"].items()}
    out["scores_summary"] = {k: v * (1 + rel) for k, v in rec["scores_summary"].items()}
    for row in out["top"][:swap_top]:
        row[0], row[1] = row[1], row[0]
    return out


def test_another_machine_is_compared_to_tolerances_not_bitwise(current):
    rec = current["entries"]["mult-vae"]
    n = len(rec["top"])
    rounding = _perturbed(rec, 1e-6, swap_top=1)  # what another CPU's sums look like
    assert golden.compare_entry("mult-vae", rec, rounding, exact=False) == []
    assert golden.compare_entry("mult-vae", rec, rounding, exact=True)  # bitwise: differs
    for changed in (_perturbed(rec, 1e-3), _perturbed(rec, 0, swap_top=n // 4)):
        assert golden.compare_entry("mult-vae", rec, changed, exact=False)


def test_moved_entries_really_moved(recorded, current):
    """MOVED lists exactly the entries whose recorded numbers differ between the files."""
    differ = {
        e
        for e in golden.GOLDEN_CONFIGS
        if e not in ADDED and golden.compare_entry(e, recorded["entries"][e], current["entries"][e])
    }
    assert differ == set(MOVED)


def test_compare_reports_what_moved_and_by_how_much(recorded):
    expected = recorded["entries"]["ease"]
    assert golden.compare_entry("ease", expected, copy.deepcopy(expected)) == []
    moved = copy.deepcopy(expected)
    moved["metrics"]["ndcg@10"] = expected["metrics"]["ndcg@10"] + 0.01
    moved["scores_sha256"] = "0" * 64
    moved["top"][3] = moved["top"][3][::-1]
    lines = golden.compare_entry("ease", expected, moved)
    assert len(lines) == 2
    assert lines[0].startswith("ease: ndcg@10 ") and "+0.01" in lines[0]
    assert "hash differs" in lines[1] and "changed for 1/60 users" in lines[1]
    moved["config"] = {"l2": 2.0}
    lines = golden.compare_entry("ease", expected, moved)
    assert len(lines) == 3 and "note: the table's config {'l2': 2.0}" in lines[2]
    renamed = copy.deepcopy(expected)
    renamed["config"] = {"train": {}, **expected["config"]}
    assert golden.compare_entry("ease", expected, renamed) == []  # same numbers: no difference
