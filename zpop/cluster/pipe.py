"""What the main process and its workers say on their pipes."""

from __future__ import annotations

import json

from twisted.logger import Logger

from zpop.accounts.credentials import CachedLogin, Share

log = Logger()

#: The worker's end of its pipe to the main process: ``wake`` lines (the
#: relay should look at the queue) and ``login`` lines (a verification to
#: share). The main process sends ``login`` lines to the worker's stdin.
TO_MAIN_FD = 3
#: Longest line sent on a pipe: one write of up to PIPE_BUF bytes is atomic,
#: so concurrent writers never interleave and a full pipe never cuts one.
MAX_MESSAGE = 4096
#: The worker's first inherited listening socket; the others follow.
FIRST_LISTENER_FD = 4


def login_line(key: bytes, entry: CachedLogin) -> bytes | None:
    """A ``login`` line for a remembered verification, None if too long."""
    line = (
        b"login " + json.dumps({"key": key.hex(), **entry.as_dict()}).encode() + b"\n"
    )
    return line if len(line) <= MAX_MESSAGE else None


def learn(line: bytes, learn_entry: Share) -> bool:
    """Hand the verification in a ``login`` line to ``learn_entry``; False if
    the line is malformed."""
    try:
        fields = json.loads(line[len(b"login ") :])
        key = bytes.fromhex(fields.pop("key"))
        entry = CachedLogin.from_dict(fields)
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warn("malformed login line {line!r}", line=line[:80])
        return False
    learn_entry(key, entry)
    return True
