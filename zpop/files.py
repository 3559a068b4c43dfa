"""Files written so that a crash leaves the old one or the new one whole,
never half of either: a temporary file beside it, fsync'd, with its final
mode from the start, then renamed (or linked) into place and the directory
fsync'd."""

from __future__ import annotations

import os


def write_atomically(
    path: str, data: bytes, mode: int = 0o600, replace: bool = True
) -> bool:
    """Put ``data`` at ``path``; False, writing nothing, if ``replace`` is
    off and the file exists (another process made it first)."""
    tmp = f"{path}.new-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_directory(os.path.dirname(path) or ".")
    return True


def fsync_directory(path: str) -> None:
    """Make a rename or new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
