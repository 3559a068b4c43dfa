"""What an SMTP session answers and what it is: the one reply type its
handlers raise, and the roles its listeners play."""

from __future__ import annotations

from dataclasses import dataclass


class Reply(Exception):
    """The one error type handlers raise: a complete SMTP reply."""

    def __init__(self, code: int, status: str, text: str) -> None:
        super().__init__(f"{code} {status} {text}")
        self.code = code
        self.status = status
        self.text = text

    def render(self) -> bytes:
        return f"{self.code} {self.status} {self.text}".encode("utf-8", "replace")


@dataclass(frozen=True)
class Role:
    """What one listener's sessions offer."""

    name: str
    implicit_tls: bool
    starttls: bool
    #: Submission: AUTH offered (after TLS) and required before MAIL.
    submission: bool


ROLES = {
    "smtps": Role("smtps", implicit_tls=True, starttls=False, submission=True),
    "submission": Role(
        "submission", implicit_tls=False, starttls=True, submission=True
    ),
    "mx": Role("mx", implicit_tls=False, starttls=True, submission=False),
}
