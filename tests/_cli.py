"""The command line as tests call it: ``main(args)`` with the captured output."""

from __future__ import annotations

from genrec.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``genrec ARGS``."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err
