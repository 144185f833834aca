"""Golden scores: every entry of benchmarks/golden.py gives bitwise the numbers recorded on 0.1.0.

The file tests/golden/v0.1.0.json was written by ``benchmarks/golden.py --write`` on the 0.1.0
code. A failure names the entry and says what moved and by how much (metrics old -> new, the
score matrix's summary, how many users' top lists changed); ``python benchmarks/golden.py
--check tests/golden/v0.1.0.json`` prints the same report for every entry at once.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from benchmarks import golden

RECORDED = Path(__file__).parent / "golden" / "v0.1.0.json"


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(RECORDED.read_text())


def test_recorded_file_covers_the_table_and_every_registered_model(recorded):
    assert recorded["format"] == golden.FORMAT
    assert list(recorded["entries"]) == list(golden.GOLDEN_CONFIGS)
    from genrec.models import MODELS

    missing = sorted(set(MODELS) - {golden.model_name(e) for e in golden.GOLDEN_CONFIGS})
    assert not missing, f"registered models without a golden entry: {', '.join(missing)}"


@pytest.mark.parametrize("entry", list(golden.GOLDEN_CONFIGS))
def test_entry_matches_the_recorded_numbers(entry, recorded):
    expected = recorded["entries"][entry]
    actual = golden.run_entry(entry)
    diffs = golden.compare_entry(entry, expected, actual)
    if diffs and recorded["environment"] != golden.environment():
        diffs.append(f"note: recorded under {recorded['environment']}, run under "
                     f"{golden.environment()}")
    assert not diffs, "\n".join(diffs)


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
