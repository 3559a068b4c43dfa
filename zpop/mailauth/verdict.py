"""What the MX's checks of one message see and decide: the message with
its envelope, and the verdict (refuse, or file, with the header fields
that record why)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InboundMessage:
    """A message the MX received, before its ``250``."""

    #: MAIL FROM, "" for the null sender.
    sender: str
    recipients: tuple[str, ...]
    #: The client's IP address, as text.
    client: str
    #: What the client said in HELO/EHLO ("" if nothing).
    helo: str
    #: The message as received: CRLF line ends, without our Received field.
    body: bytes
    queue_id: str = ""


class Refused(Exception):  # noqa: N818 - a verdict, not a bug
    """The message is refused with this SMTP reply (``451``/``550``)."""

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        super().__init__(f"{code} {enhanced} {text}")
        self.code = code
        self.enhanced = enhanced
        self.text = text


@dataclass(frozen=True)
class Verdict:
    """Where an accepted message goes and what is recorded on it."""

    #: The folder the checks chose ("Spam"), or None: the usual Inbox.
    folder: str | None = None
    #: Header fields to prepend (each ending CRLF), e.g. Authentication-Results.
    fields: bytes = b""
    #: The message with forged fields removed; None: as received.
    body: bytes | None = None
