"""The try-it page in headless Chromium: start ``genrec serve`` on a free loopback port, load
the page for a known user and for a typed history (an id and a title), and check that the
rendered table holds the recommendations the JSON API gives, with titles and scores.

    python benchmarks/serve_page_check.py RUN_DIR [RUN_DIR ...] [--screenshot out.png]

Without RUN_DIR it trains EASE on ML-100K ($GENREC_DATA_DIR) into a temporary folder. Needs
Chromium (``apt-get install chromium``); exits 0 when every check passes, 1 otherwise.
tests/serve/test_page.py runs the same checks on the test suite's tiny runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import httpx

SRC = Path(__file__).resolve().parents[1] / "src"


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _Rows(HTMLParser):
    """The rows (item, title, score) of the page's results table, after its script ran."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.done: str | None = None
        self._cell: str | None = None
        self._row: dict[str, str] | None = None
        self.status = ""
        self._in_status = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.done = a.get("data-done")
        if tag == "tr" and a.get("class") == "rec":
            self._row = {"item": a.get("data-item") or ""}
            self.rows.append(self._row)
        if tag == "td" and self._row is not None:
            cls = (a.get("class") or "").split()
            self._cell = "title" if "title" in cls else "score" if "score" in cls else None
        if a.get("id") == "status":
            self._in_status = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        if tag == "tr":
            self._row = None
        if tag == "div":
            self._in_status = False

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cell:
            self._row[self._cell] = self._row.get(self._cell, "") + data
        if self._in_status:
            self.status += data


def render(browser: str, url: str, screenshot: Path | None = None) -> _Rows:
    """The page at ``url`` after its script ran (Chromium's virtual time lets the fetches
    finish before the DOM is dumped)."""
    common = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--virtual-time-budget=20000",
        "--window-size=1200,900",
    ]
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            [*common, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if screenshot is not None:
            subprocess.run(
                [*common, f"--user-data-dir={profile}", f"--screenshot={screenshot}", url],
                capture_output=True,
                timeout=120,
            )
    parser = _Rows()
    parser.feed(out.stdout)
    return parser


class Service:
    """``genrec serve`` on a free loopback port, stopped by SIGTERM."""

    def __init__(self, runs: list[Path]):
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "genrec",
                "serve",
                *map(str, runs),
                "--port",
                "0",
                "--no-access-log",
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            m = re.search(r"serving .* on (http://127\.0\.0\.1:\d+)", line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise RuntimeError("genrec serve did not start")
        for _ in range(600):
            try:
                if httpx.get(self.url + "/ready", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("genrec serve never became ready")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def check(base: str, browser: str, screenshot: Path | None = None) -> list[str]:
    """The failed checks (empty when the page renders what the API answers)."""
    failures: list[str] = []
    models = httpx.get(base + "/v1/models").json()["models"]
    m = models[0]
    user = m["example_users"][0]
    k = 5
    api = httpx.get(f"{base}/v1/models/{m['name']}/users/{user}/recommendations", params={"k": k})
    want = api.json()["recommendations"]
    page = render(
        browser, f"{base}/?" + urlencode({"model": m["name"], "user": user, "k": k}), screenshot
    )
    failures += _compare(f"user {user}", page, want)
    if m["capabilities"]["fold_in"] and m["capabilities"]["titles"]:
        first = httpx.get(
            f"{base}/v1/models/{m['name']}/items", params={"q": "a", "limit": 2}
        ).json()
        hits = first["items"]
        if len(hits) == 2:
            typed = [str(hits[0]["item"]), hits[1]["title"]]  # an id and a title
            api = httpx.post(
                f"{base}/v1/models/{m['name']}/recommendations",
                json={"items": [hits[0]["item"], hits[1]["item"]], "k": k},
            )
            page = render(
                browser,
                f"{base}/?" + urlencode({"model": m["name"], "items": ",".join(typed), "k": k}),
            )
            failures += _compare(f"history {typed}", page, api.json()["recommendations"])
    return failures


def _compare(what: str, page: _Rows, want: list[dict]) -> list[str]:
    if page.done != "1":
        return [f"{what}: the page did not render recommendations (status {page.status.strip()!r})"]
    got = [(r["item"], r.get("title", ""), float(r.get("score") or "nan")) for r in page.rows]
    exp = [(str(r["item"]), r.get("title") or "", round(r["score"], 4)) for r in want]
    if [g[:2] for g in got] != [e[:2] for e in exp]:
        return [f"{what}: the page shows {got}, the API {exp}"]
    if any(abs(g[2] - e[2]) > 1e-4 for g, e in zip(got, exp)):
        return [f"{what}: scores differ: page {got}, API {exp}"]
    return []


def _train_default(folder: Path) -> list[Path]:
    from genrec.runs import RunSpec, train_run

    out = folder / "ease-ml-100k"
    train_run(RunSpec.from_mapping({"model": "ease", "dataset": "ml-100k"}, out=out))
    return [out]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--screenshot", type=Path, default=None, help="Write a PNG of the page.")
    args = ap.parse_args(argv)
    browser = chromium()
    if browser is None:
        print("no Chromium found: apt-get install chromium", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or _train_default(Path(tmp))
        service = Service(runs)
        try:
            failures = check(service.url, browser, args.screenshot)
        finally:
            code = service.stop()
    if code != 0:
        failures.append(f"genrec serve exited {code} on SIGTERM")
    for f in failures:
        print("FAIL", f)
    if not failures:
        shot = f"; screenshot {args.screenshot}" if args.screenshot else ""
        print(f"ok: the page renders the API's recommendations{shot}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
