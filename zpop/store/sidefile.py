"""Files the store keeps beside its database: the change counter and the
maildrop locks."""

from __future__ import annotations

import os


def open_beside(path: str, owner_of: str | None) -> int:
    """Open ``path`` read-write (created with mode 0600, close-on-exec).

    Created by root (the ``zpop`` command run by an operator), it is given
    to the owner of ``owner_of``, the database, so the server running as
    that owner can still open it. Raises OSError.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if owner_of is not None and os.geteuid() == 0:
            owner = os.stat(owner_of)
            os.fchown(fd, owner.st_uid, owner.st_gid)
    except BaseException:
        os.close(fd)
        raise
    return fd
