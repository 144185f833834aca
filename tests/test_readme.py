"""The README's library examples run as written (on ML-100K from ../shared/data)."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _library_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## The library", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_has_the_runner_example():
    blocks = _library_blocks()
    assert blocks and "train_run(spec)" in blocks[0] and "load_run(" in blocks[0]


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "ml-100k" / "u.data").is_file(), reason="no ML-100K here")
def test_readme_library_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENREC_DATA_DIR", str(DATA))
    for block in _library_blocks():
        exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - the project's own docs
    out = capsys.readouterr().out
    assert "'rank': 1" in out and "ndcg@20" in out
    assert (tmp_path / "runs" / "ease-ml-100k-py" / "run.json").is_file()
    assert os.environ["GENREC_DATA_DIR"] == str(DATA)
