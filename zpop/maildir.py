"""Reading a Maildir (with Maildir++ subfolders) for ``zpop import``.

Only the listing lives here: which files, in which zpop folder, in which
order, seen or not. Reading and checking each file's bytes is the importer's
business, so one bad file costs one warning, not the whole import.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

#: Maildir++ subfolder names (lower-cased, without the leading dot) that map
#: onto a zpop folder. Besides the names of DESIGN §3, the ones Apple Mail,
#: Outlook and Thunderbird leave behind, so a migrated mailbox keeps them.
SUBFOLDERS: dict[str, str] = {
    "spam": "Spam",
    "junk": "Spam",
    "junk e-mail": "Spam",
    "junk email": "Spam",
    "sent": "Sent",
    "sent messages": "Sent",
    "sent items": "Sent",
    "sent mail": "Sent",
    "trash": "Trash",
    "deleted messages": "Trash",
    "deleted items": "Trash",
    "drafts": "Drafts",
}

# "1700000000.M123456P45.host,S=123:2,FS": delivery time in seconds, then
# (in the modern naming) the microseconds after "M". Older names use
# "1700000000.45_2.host" and have no microseconds.
_SECONDS = re.compile(r"^(\d{1,12})(?:\.|$)")
_MICROSECONDS = re.compile(r"^\d+\.(?:[^.]*?)M(\d{1,6})")
# The info part: ":2," on Unix; ";2," or "!2," where ":" is not allowed.
_INFO = re.compile(r"[:;!]2,([A-Za-z]*)$")


class NotAMaildirError(ValueError):
    """The directory has neither ``cur/`` nor ``new/``."""


@dataclass(frozen=True)
class Folder:
    """One Maildir folder: its name as found and the zpop folder (or None)."""

    name: str
    path: str
    target: str | None


@dataclass(frozen=True)
class Entry:
    """One message file, with what its name says about it."""

    path: str
    folder: str
    received: float
    #: Sub-second part of the delivery time, for ordering only.
    microseconds: int
    name: str
    seen: bool

    @property
    def order(self) -> tuple[float, int, str]:
        """Arrival order: delivery time, then name."""
        return (self.received, self.microseconds, self.name)


def is_maildir(path: str) -> bool:
    """Whether ``path`` holds a Maildir (``cur/`` or ``new/``; ``tmp/`` optional)."""
    return os.path.isdir(os.path.join(path, "cur")) or os.path.isdir(
        os.path.join(path, "new")
    )


def folders(root: str) -> list[Folder]:
    """The root (Inbox) and its Maildir++ subfolders, by name.

    Subfolders with no zpop counterpart come back with ``target`` None so
    the caller can say it skipped them.
    """
    if not is_maildir(root):
        raise NotAMaildirError(
            f"{root} is not a Maildir: it has no cur/ or new/ subdirectory"
        )
    found = [Folder(name="(top level)", path=root, target="Inbox")]
    with os.scandir(root) as it:
        names = sorted(
            e.name
            for e in it
            if e.name.startswith(".")
            and e.name not in (".", "..")
            and e.is_dir()
            and is_maildir(e.path)
        )
    for name in names:
        target = SUBFOLDERS.get(name[1:].lower())
        found.append(Folder(name=name, path=os.path.join(root, name), target=target))
    return found


def parse_name(name: str) -> tuple[int | None, int, bool]:
    """(delivery seconds or None, microseconds, seen flag) from a file name."""
    match = _SECONDS.match(name)
    seconds = int(match.group(1)) if match else None
    micro = _MICROSECONDS.match(name)
    microseconds = int(micro.group(1)) if micro else 0
    info = _INFO.search(name)
    seen = info is not None and "S" in info.group(1)
    return seconds, microseconds, seen


def entries(folder: Folder) -> list[Entry]:
    """The message files of one folder (``new/`` then ``cur/``), unsorted.

    Files whose name carries no delivery time fall back to their mtime.
    ``tmp/`` holds deliveries in progress and is never read.
    """
    assert folder.target is not None
    found = []
    for sub in ("new", "cur"):
        directory = os.path.join(folder.path, sub)
        try:
            scanner = os.scandir(directory)
        except FileNotFoundError:
            continue
        with scanner as it:
            for e in it:
                if e.name.startswith(".") or not e.is_file():
                    continue
                seconds, microseconds, seen = parse_name(e.name)
                if seconds is None:
                    received = e.stat().st_mtime
                else:
                    received = float(seconds)
                found.append(
                    Entry(
                        path=e.path,
                        folder=folder.target,
                        received=received,
                        microseconds=microseconds,
                        name=e.name,
                        # new/ is mail no client has seen, whatever its name.
                        seen=seen and sub == "cur",
                    )
                )
    return found


def arrival_order(root: str) -> tuple[list[Entry], list[Folder]]:
    """Every message file under ``root`` in arrival order, and skipped folders.

    All folders are merged, so UIDs follow arrival across folders as they
    would have had the mail been delivered to zpop in the first place.
    """
    found: list[Entry] = []
    skipped = []
    for folder in folders(root):
        if folder.target is None:
            skipped.append(folder)
            continue
        found.extend(entries(folder))
    found.sort(key=lambda e: e.order)
    return found, skipped
