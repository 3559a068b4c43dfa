"""The ``zpop`` command: administration through the account services and
the same Store API as the server.

It runs the store with ``run_synchronously``, so every Deferred has fired by
the time a store method returns and no reactor is needed; SQLite (WAL, busy
timeout) lets it run while the server does. Streams and the clock are
parameters of :func:`main` so tests drive it in-process.

Exit status: 0 on success, 1 on an operational error (one line
``zpop: error: ...`` on stderr), 2 on misuse (usage, then ``zpop: error:``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from typing import IO

from zpop.accounts.errors import AccountError
from zpop.cli.commands import COMMANDS
from zpop.cli.context import CommandError, Context, load_config
from zpop.cli.parser import ParserExitError, build_parser
from zpop.cli.render import error_text
from zpop.config import ConfigError
from zpop.store import StoreError

__all__ = ["main"]


def main(
    argv: Sequence[str] | None = None,
    stdin: IO[bytes] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Run one ``zpop`` command; returns the exit status (the console script
    passes it to ``sys.exit``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    stdin = sys.stdin.buffer if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            parser = build_parser()
            args = parser.parse_args(argv)
    except ParserExitError as e:
        return e.status
    ctx: Context | None = None
    try:
        config = load_config(args.config, args.data)
        ctx = Context(config, stdin, stdout, stderr, clock)
        COMMANDS[(args.command, getattr(args, "action", None))](ctx, args)
        stdout.flush()
    except AccountError as e:
        stderr.write(f"zpop: error: {error_text(e)}\n")
        return 1
    except (CommandError, ConfigError, StoreError) as e:
        stderr.write(f"zpop: error: {e}\n")
        return 1
    except BrokenPipeError:
        # stdout went away (``zpop messages ... | head``): not an error.
        _silence(stdout)
        return 0
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        stderr.write(f"zpop: error:{where} {e.strerror or e}\n")
        return 1
    except KeyboardInterrupt:
        stderr.write("zpop: error: interrupted\n")
        return 130
    except Exception as e:
        # Never a traceback at an operator; the type name helps a bug report.
        stderr.write(f"zpop: error: internal error ({type(e).__name__}): {e}\n")
        return 1
    finally:
        if ctx is not None:
            ctx.close()
    return 0


def _silence(stdout: IO[str]) -> None:
    """Point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
    except (OSError, ValueError):
        pass
