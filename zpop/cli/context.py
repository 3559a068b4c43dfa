"""What every ``zpop`` command runs with: configuration, streams, clock
and the store, opened synchronously so every Deferred has fired by the
time a store method (or a service over it) returns."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from zpop import config as configmod
from zpop.config import Config
from zpop.store import DATABASE_NAME, SQLiteStore, schema
from zpop.threads import run_synchronously

#: Longer than any sane password; bounds the read from stdin.
MAX_PASSWORD_BYTES = 1024


class CommandError(Exception):
    """An operational failure; the text is the one line the operator sees."""


def result_of(d: Deferred) -> Any:
    """The result of an already-fired Deferred, or raise its failure.

    The CLI's store runs synchronously, so nothing is ever pending; if
    something is, that is a programming error and says so.
    """
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    if not outcome:
        raise RuntimeError("the store answered asynchronously in the zpop command")
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


@dataclass
class Context:
    """What every command gets: configuration, streams, clock, and the store."""

    config: Config
    stdin: IO[bytes]
    stdout: IO[str]
    stderr: IO[str]
    clock: Callable[[], float]
    _store: SQLiteStore | None = None

    @property
    def data_dir(self) -> str:
        return self.config.server.data

    @property
    def database(self) -> str:
        return os.path.join(self.config.server.data, DATABASE_NAME)

    def out(self, *lines: str) -> None:
        for line in lines:
            self.stdout.write(line + "\n")

    def warn(self, line: str) -> None:
        self.stderr.write(f"zpop: warning: {line}\n")

    @property
    def store(self) -> SQLiteStore:
        """The store, opened (and migrated) on first use."""
        if self._store is None:
            if not os.path.exists(self.database):
                raise CommandError(
                    f"no zpop database in {self.data_dir}: run 'zpop init' first"
                )
            # Only init and upgrade migrate: a newer zpop must not upgrade
            # the database under an older running server.
            schema.check(self.database)
            self._store = SQLiteStore(self.database, run_synchronously)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def seconds(self) -> float:
        """Now, by the command's clock: Context is the services' Clock."""
        return self.clock()


def load_config(config_file: str | None, data: str | None) -> Config:
    """DESIGN §3's precedence (``zpop.config.resolve``)."""
    return configmod.resolve(config_file, data)[0]


def read_password(stdin: IO[bytes]) -> str:
    """The first line of stdin (trailing CR/LF removed) as text; what a
    password must be is checked by the service that sets it."""
    line = stdin.readline(MAX_PASSWORD_BYTES + 1)
    if len(line) > MAX_PASSWORD_BYTES:
        raise CommandError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    line = line.rstrip(b"\r\n")
    if not line:
        raise CommandError("no password on standard input")
    try:
        password = line.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("the password on standard input is not UTF-8")
    return password
