"""The benchmark configs under configs/: each one builds a RunSpec (no data is read), and
every config the README's results table and configs/README.md name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from genrec.config import load_toml
from genrec.errors import ConfigError
from genrec.models import MODELS
from genrec.runs import RunSpec

ROOT = Path(__file__).resolve().parent.parent
SPACES = ROOT / "configs" / "spaces"  # search spaces of genrec tune (tests/test_tune_space.py)
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.toml") if SPACES not in p.parents)
LINK = re.compile(r"\]\(([^)\s]+\.toml)\)")  # markdown links to .toml files


def _spec(path: Path) -> RunSpec:
    """The spec of ``path`` (no data is loaded)."""
    return RunSpec.from_toml(path)


def test_there_are_configs():
    assert len(CONFIGS) >= 20


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT)) for p in CONFIGS])
def test_config_builds_a_spec(path):
    spec = _spec(path)
    assert spec.model in MODELS
    text = path.read_text()
    assert text.startswith("# BENCHMARKS.md"), "header: the BENCHMARKS.md section and row"
    assert f"genrec train --config {path.relative_to(ROOT)}" in text, "header: the command"
    for _, cfg in spec.configs():  # every grid point is a valid config
        assert isinstance(cfg, spec.model_class.config_class)


def test_a_config_with_an_unknown_key_fails(tmp_path):
    good = load_toml(ROOT / "configs/ml-1m/mult-vae.toml")
    text = (ROOT / "configs/ml-1m/mult-vae.toml").read_text()
    (tmp_path / "ok.toml").write_text(text)
    assert _spec(tmp_path / "ok.toml").config.dropout == good["dropout"]
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("dropout = 0.6", "dropout = 0.6\ndrop_out = 0.6"))
    with pytest.raises(ConfigError, match="drop_out"):
        _spec(bad)
    bad.write_text(text.replace("[train]", "[train]\nlearning_rate = 0.1"))
    with pytest.raises(ConfigError, match="learning_rate"):
        RunSpec.from_toml(bad)


def _linked(doc: Path) -> list[Path]:
    """The .toml files ``doc`` links to (links are relative to its folder)."""
    return [(doc.parent / link).resolve() for link in LINK.findall(doc.read_text())]


def test_readme_results_table_links_existing_configs():
    text = (ROOT / "README.md").read_text()
    table = text.split("<!-- results-table -->")[1].split("<!-- /results-table -->")[0]
    rows = [r for r in table.strip().splitlines()[2:] if r.startswith("|")]
    assert rows
    for row in rows:
        links = LINK.findall(row)
        assert links, f"README results row without a config: {row[:60]}"
        for link in links:
            assert (ROOT / link).is_file(), link


def test_configs_readme_names_every_config_and_only_existing_ones():
    links = _linked(ROOT / "configs" / "README.md")
    for link in links:
        assert link.is_file(), link
    named = set(links)
    present = {p.resolve() for p in CONFIGS}
    assert present <= named, f"not in configs/README.md: {sorted(map(str, present - named))}"
