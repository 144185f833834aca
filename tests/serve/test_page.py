"""The try-it page in headless Chromium renders the API's recommendations (skipped where no
Chromium is installed; benchmarks/serve_page_check.py is the same check as a script)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_page_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("serve_page_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_page_shows_the_recommendations_with_titles_and_scores(run_dirs, tmp_path):
    check = _script()
    browser = check.chromium()
    if browser is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    service = check.Service([run_dirs["ease"], run_dirs["vae"]])
    try:
        failures = check.check(service.url, browser, tmp_path / "page.png")
    finally:
        code = service.stop()
    assert failures == [] and code == 0
    assert (tmp_path / "page.png").stat().st_size > 0


def test_the_checks_fail_on_a_page_that_renders_nothing():
    check = _script()
    empty = check._Rows()
    empty.feed("<html><body><div id='status'>nope</div></body></html>")
    (failure,) = check._compare("user 1", empty, [{"item": 1, "title": "A", "score": 0.5}])
    assert "did not render" in failure
    shown = check._Rows()
    shown.feed(
        '<html><body data-done="1"><table><tr class="rec" data-item="2"><td class="num">1</td>'
        '<td class="item">2</td><td class="title">B</td><td class="num score">0.5000</td></tr>'
        "</table></body></html>"
    )
    assert check._compare("user 1", shown, [{"item": 2, "title": "B", "score": 0.5}]) == []
    assert check._compare("user 1", shown, [{"item": 1, "title": "A", "score": 0.5}])
