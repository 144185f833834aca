"""``genrec serve``'s refusals: one line, exit 1, before anything is served."""

from __future__ import annotations

import socket
import sys

from genrec.cli import main


def _serve(capsys, *args: str) -> tuple[int, str]:
    code = main(["serve", *args])
    return code, capsys.readouterr().err


def test_a_missing_extra_names_genrec_serve(capsys, run_dirs, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if not installed
    code, err = _serve(capsys, str(run_dirs["ease"]))
    assert code == 1 and "pip install 'genrec[serve]'" in err and "Traceback" not in err


def test_an_unset_api_key_variable_is_refused(capsys, run_dirs, monkeypatch):
    monkeypatch.delenv("GENREC_NO_KEY_HERE", raising=False)
    code, err = _serve(capsys, str(run_dirs["ease"]), "--api-key-env", "GENREC_NO_KEY_HERE")
    assert code == 1 and "GENREC_NO_KEY_HERE is unset or empty" in " ".join(err.split())


def test_a_folder_that_is_not_a_run_is_refused(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, err = _serve(capsys, str(tmp_path / "empty"))
    assert code == 1 and "not a genrec run folder" in err


def test_all_interfaces_warn_and_a_busy_port_is_one_line(capsys, run_dirs):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = _serve(capsys, str(run_dirs["ease"]), "--host", "0.0.0.0", "--port", str(port))
    text = " ".join(err.split())
    assert "warning: --host 0.0.0.0 makes the service reachable from other machines" in text
    assert "WITHOUT an API key" in text
    assert code == 1 and f"--port {port}: cannot listen there" in text
