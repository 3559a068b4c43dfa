"""SMTP load generator: submission (587 STARTTLS + AUTH, 465 implicit TLS +
AUTH) and MX intake (25, STARTTLS, no AUTH), asyncio streams."""

from __future__ import annotations

import asyncio
import base64
import ssl

from pop3load import HOST, STREAM_LIMIT

SNI = "smtp.bench.test"


class NotAvailable(Exception):
    """The server refuses SMTP service (``554`` greeting)."""


class SMTPError(Exception):
    """An unexpected reply."""


def message(size: int, sender: str, rcpt: str) -> bytes:
    """A CRLF message of about ``size`` octets, dot-stuffed, ending in
    ``CRLF.CRLF`` (ready to send after DATA)."""
    head = (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: bench\r\n"
        "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\n"
    ).encode()
    line = b"x" * 70 + b"\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body + b".\r\n"


class Conn:
    """One SMTP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.r, self.w = reader, writer

    async def reply(self, expect: bytes) -> bytes:
        lines = []
        while True:
            line = await self.r.readline()
            if not line:
                raise SMTPError("connection closed")
            lines.append(line)
            if line[3:4] != b"-":
                break
        if not lines[-1].startswith(expect):
            text = b"".join(lines)[:200].decode(errors="replace")
            if lines[0].startswith(b"554"):
                raise NotAvailable(text.strip())
            raise SMTPError(text.strip())
        return b"".join(lines)

    async def cmd(self, text: bytes, expect: bytes) -> bytes:
        self.w.write(text + b"\r\n")
        return await self.reply(expect)


async def connection(
    port: int,
    mode: str,
    ctx: ssl.SSLContext,
    user: str,
    password: str,
    rcpt: str,
    count: int,
    data: bytes,
) -> None:
    """One connection sending ``count`` messages; ``mode`` is "mx",
    "submission" (STARTTLS + AUTH) or "smtps" (implicit TLS + AUTH)."""
    implicit = mode == "smtps"
    reader, writer = await asyncio.open_connection(
        HOST,
        port,
        ssl=ctx if implicit else None,
        server_hostname=SNI if implicit else None,
        limit=STREAM_LIMIT,
    )
    c = Conn(reader, writer)
    try:
        await c.reply(b"220")
        await c.cmd(b"EHLO client.bench.test", b"250")
        if not implicit:
            await c.cmd(b"STARTTLS", b"220")
            await writer.start_tls(ctx, server_hostname=SNI)
            await c.cmd(b"EHLO client.bench.test", b"250")
        sender = user
        if mode != "mx":
            token = base64.b64encode(f"\0{user}\0{password}".encode())
            await c.cmd(b"AUTH PLAIN " + token, b"235")
        else:
            sender = "someone@example.org"
        for _ in range(count):
            await c.cmd(f"MAIL FROM:<{sender}>".encode(), b"250")
            await c.cmd(f"RCPT TO:<{rcpt}>".encode(), b"250")
            await c.cmd(b"DATA", b"354")
            writer.write(data)
            await c.reply(b"250")
        await c.cmd(b"QUIT", b"221")
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


async def probe(port: int, mode: str, ctx: ssl.SSLContext) -> str | None:
    """None if the server offers SMTP here, else its refusal text."""
    implicit = mode == "smtps"
    try:
        reader, writer = await asyncio.open_connection(
            HOST,
            port,
            ssl=ctx if implicit else None,
            server_hostname=SNI if implicit else None,
        )
    except (OSError, ssl.SSLError) as e:
        return f"cannot connect: {e}"
    try:
        await Conn(reader, writer).reply(b"220")
        return None
    except (NotAvailable, SMTPError) as e:
        return str(e)
    finally:
        writer.close()
