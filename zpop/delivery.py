"""Local delivery: turn raw message bytes into a stored message.

Every path that stores mail (``zpop deliver``, ``zpop import``, SMTP) comes
through here, so every stored body has CRLF line ends and a final CRLF: its
size is then exactly the octets a POP client receives.
"""

from __future__ import annotations

import email.errors
import email.header
import email.parser
import email.policy
import re
import time

from twisted.internet.defer import Deferred

from zpop.store import FOLDERS, IStore, Message, NewMessage, NotFound

_LINE_END = re.compile(rb"\r\n|\r|\n")
_HEADER_NAME = re.compile(rb"^[\x21-\x39\x3b-\x7e]+:")
# The first Subject field with its folded continuation lines.
_SUBJECT = re.compile(rb"(?:^|\r\n)subject:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", re.I)


class MalformedMessage(ValueError):  # noqa: N818 - public name, used widely
    """The bytes are not an Internet message; the text says why."""


def normalize(raw: bytes) -> bytes:
    """``raw`` with every line ending (CR, LF, CRLF) made CRLF, ending in CRLF."""
    body = _LINE_END.sub(b"\r\n", raw)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body


def check(body: bytes, size_limit: int | None = None) -> None:
    """Raise MalformedMessage unless ``body`` (normalised) is a message."""
    if not body.strip():
        raise MalformedMessage("the message is empty")
    if size_limit is not None and len(body) > size_limit:
        raise MalformedMessage(
            f"the message is {len(body)} bytes, over the limit of {size_limit}"
        )
    if b"\0" in body:
        raise MalformedMessage("the message contains a NUL byte")
    end = body.find(b"\r\n\r\n")
    header = body if end < 0 else body[: end + 2]
    for number, line in enumerate(header.split(b"\r\n")[:-1], start=1):
        if line[:1] in (b" ", b"\t") and number > 1:
            continue
        if not _HEADER_NAME.match(line):
            raise MalformedMessage(
                f"header line {number} is not a header field: {line[:40]!r}"
            )


def subject_of(body: bytes) -> str:
    """The decoded Subject header, for listings; empty if there is none."""
    end = body.find(b"\r\n\r\n")
    header = body if end < 0 else body[: end + 2]
    # Fast path, with the parser's answer for any header that check()
    # accepts: a plain ASCII subject without encoded words needs no parser,
    # and ``zpop import`` spent half its time in it.
    match = _SUBJECT.search(header)
    if match is None:
        return ""
    value = match.group(1)
    if value.isascii() and b"=?" not in value:
        return " ".join(value.decode("ascii").split())
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        header
    )
    raw = parsed.get("Subject")
    if raw is None:
        return ""
    try:
        text = str(email.header.make_header(email.header.decode_header(str(raw))))
    except (email.errors.HeaderParseError, LookupError, UnicodeDecodeError):
        text = str(raw)
    return " ".join(text.split())


def prepare(
    raw: bytes,
    folder: str = "Inbox",
    received: float | None = None,
    seen: bool = False,
    size_limit: int | None = None,
) -> NewMessage:
    """Normalise and check raw bytes; raises MalformedMessage."""
    if folder not in FOLDERS:
        raise ValueError(f"unknown folder {folder!r}")
    body = normalize(raw)
    check(body, size_limit)
    return NewMessage(
        folder=folder,
        body=body,
        subject=subject_of(body),
        received=time.time() if received is None else received,
        seen=seen,
    )


def deliver(store: IStore, address: str, message: NewMessage) -> Deferred:
    """Store ``message`` for the account ``address`` (or its alias).

    Fires with the stored Message once it is durable; fails NotFound.
    """

    def stored(account: object) -> Deferred:
        if account is None:
            raise NotFound(f"no account {address.lower()}")
        return store.store_messages(account.id, [message])  # type: ignore[attr-defined]

    def first(messages: list[Message]) -> Message:
        return messages[0]

    d = store.get_account_for_recipient(address)
    d.addCallback(stored)
    d.addCallback(first)
    return d
