"""The ``genrec`` command line: the only package that reads argv.

Each command parses its options, builds a spec or a config, calls one library function
(:mod:`genrec.runs`, :mod:`genrec.analysis`, :mod:`genrec.foundations`) and renders the
result. Errors in the user's input are printed as one line (``Error: ...``) with exit
status 1, no traceback.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

import click
from rich.logging import RichHandler
from rich.markup import escape

from genrec import __version__
from genrec.cli.render import err_console
from genrec.errors import GenrecError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genrec")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """genrec: generative recommender systems, from matrix factorization to diffusion.

    Data sets are found by name in $GENREC_DATA_DIR, then ~/.cache/genrec, and downloaded
    from GroupLens when missing; a path to a MovieLens folder, a folder of pair lists or a
    CSV/TSV/Parquet log works too.
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = RichHandler(console=err_console(), show_path=False, show_time=False, markup=False)
    root = logging.getLogger("genrec")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _register() -> None:
    from genrec.cli import clusters, data, foundations, serve, train, tune, use

    for module in (data, train, tune, use, serve, clusters, foundations):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # handled like Ctrl-C: a message, a resumable run


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit status 1."""
    previous = signal.getsignal(signal.SIGTERM)
    sigterm = {"seen": False}

    def handler(signum: int, frame: Any) -> None:
        sigterm["seen"] = True
        _on_sigterm(signum, frame)

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        code = cli.main(args=argv, prog_name="genrec", standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool):  # click returns an Exit's code
            return 143 if sigterm["seen"] and code == 130 else code
    except click.exceptions.Abort:
        err_console().print("aborted")
        return 143 if sigterm["seen"] else 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return 143 if sigterm["seen"] and e.exit_code == 130 else e.exit_code
    except GenrecError as e:
        # the library says "start over (force)" (RunSpec.force); here that is --force
        message = str(e).replace("(force)", "with --force")
        err_console().print(f"[red]Error:[/red] {escape(message)}", markup=True, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        err_console().print("interrupted")
        return 143 if sigterm["seen"] else 130
    except OSError as e:  # a path that cannot be read or written, a full disk, ...
        if e.errno == 28:  # ENOSPC
            what = "No space left on device" + (f" writing {e.filename}" if e.filename else "")
        else:
            what = (f"{e.filename}: " if e.filename else "") + (e.strerror or str(e))
        err_console().print(f"[red]Error:[/red] {escape(what)}", markup=True, soft_wrap=True)
        return 1
    finally:
        try:
            signal.signal(signal.SIGTERM, previous)
        except (ValueError, TypeError):
            pass
    return 0
