"""Nothing below ``genrec/cli/`` names a command-line flag: library messages name settings
(``data.format``, ``data.user_col``, ``protocol.binarize_threshold``), which a Python user
and a command-line user both understand.

Every string literal of every module under ``src/genrec`` outside ``cli/`` is read from the
syntax tree (f-string parts included; comments are not strings); docstrings, which may
document the command line, are left out.
"""

import ast
import re
from pathlib import Path

import genrec

FLAG = re.compile(r"--[A-Za-z]")
SRC = Path(genrec.__file__).parent


def flag_strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of the string literals of ``source`` that hold a flag, docstrings left
    out."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and FLAG.search(node.value)
    )


def test_the_scan_finds_flags_in_messages_and_not_in_docstrings_or_comments():
    source = (
        '"""Run it with --set data.header=false."""\n'
        "def f(x):\n"
        '    """Also --force here."""\n'
        "    # a comment naming --format\n"
        '    raise ValueError(f"{x}: pass --set data.sep={x!r}")\n'
        'LOG = "see --map none"\n'
        'OK = "a - b, x--1, --, data.sep"\n'
    )
    assert flag_strings(source) == [(5, ": pass --set data.sep="), (6, "see --map none")]


def test_no_message_below_cli_names_a_command_line_flag():
    files = [p for p in sorted(SRC.rglob("*.py")) if "cli" not in p.relative_to(SRC).parts]
    assert len(files) > 50 and SRC / "data" / "__init__.py" in files
    found = [
        f"{p.relative_to(SRC)}:{line}: {text!r}"
        for p in files
        for line, text in flag_strings(p.read_text(encoding="utf-8"))
    ]
    assert found == []
