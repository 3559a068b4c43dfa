"""The rule for new primary passwords, the same for ``zpop account
add/passwd`` and the web settings' password change (DESIGN §1, issue 13):
long enough, free of control characters, not the account's own address or
its local part, and not one of the most common passwords.

The common passwords are package data (``common_passwords.txt``, its
source in its header), read once and kept as a frozen set.
"""

from __future__ import annotations

import functools
from importlib import resources

from zpop.accounts.errors import InvalidInput
from zpop.wire.addresses import CONTROL

#: Passwords shorter than this are refused: people choose these.
MIN_PASSWORD_LENGTH = 8
#: Local parts shorter than this are too short to look for in a password
#: ("a@example.org" would refuse every password with an "a").
MIN_LOCAL_PART = 3


class WeakPassword(InvalidInput):
    """A new password the rule refuses; ``reason`` names the rule broken
    (``control``, ``short``, ``address``, ``common``) for a front end that
    words it in its own language."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list, lower-cased."""
    text = (
        resources.files("zpop.accounts")
        .joinpath("common_passwords.txt")
        .read_text(encoding="utf-8")
    )
    return frozenset(
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def check_new_password(password: str, address: str) -> str:
    """``password`` if it may become ``address``'s primary password, else
    WeakPassword with the precise reason."""
    if CONTROL.search(password):
        raise WeakPassword(
            "control",
            "the password contains a control character: mail clients cannot send it",
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(
            "short",
            f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters",
        )
    folded = password.casefold()
    whole = address.casefold()
    local = whole.rpartition("@")[0]
    if whole in folded or (len(local) >= MIN_LOCAL_PART and local in folded):
        raise WeakPassword(
            "address",
            "the password contains the account's address or its name before"
            " the @: choose one that does not",
        )
    if folded in common_passwords():
        raise WeakPassword(
            "common",
            "the password is one of the most common passwords: choose a less"
            " guessable one",
        )
    return password
