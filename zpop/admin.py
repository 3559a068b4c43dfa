"""The ``zpop`` console script (``zpop.admin:main``, ``python -m zpop.admin``).

The command lives in :mod:`zpop.cli` and its rules in :mod:`zpop.accounts`;
this module keeps the entry point and the names callers import from it.
"""

from __future__ import annotations

import sys

from zpop.cli import main
from zpop.cli.context import CommandError, Context, load_config, result_of
from zpop.cli.render import iso, printable, table
from zpop.wire.addresses import parse_address, parse_domain

__all__ = [
    "CommandError",
    "Context",
    "iso",
    "load_config",
    "main",
    "parse_address",
    "parse_domain",
    "printable",
    "result_of",
    "table",
]

if __name__ == "__main__":
    sys.exit(main())
