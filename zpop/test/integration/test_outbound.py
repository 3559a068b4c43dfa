"""The outbound relay against loopback SMTP servers the tests start: a
scriptable Twisted sink (byte-exact capture, STARTTLS, AUTH, hostile
injection) and Postfix's smtp-sink with its fault options. Time for the
retry schedule is a Clock; sockets are real but only on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.names import dns, error
from twisted.protocols.basic import LineReceiver
from twisted.trial.unittest import SynchronousTestCase, TestCase

from zpop.config import OutboundConfig, TLSCertificate
from zpop.outbound import (
    DeliveryError,
    Hop,
    OutboundService,
    Router,
    retry_delay,
)
from zpop.store import DATABASE_NAME, SQLiteStore
from zpop.store.records import QueuedMessage
from zpop.test.harness import ZpopServer, start_server
from zpop.test.stores import add_account, make_store, result
from zpop.test.tools import require_tool
from zpop.threads import run_synchronously
from zpop.tls import ServerTLS, generate_self_signed
from zpop.wire.dotstuff import DotStuffer, dot_stuff

NOW = 1_700_000_000.0

BODY = (
    b"From: bob@example.com\r\nTo: a@remote.example\r\nSubject: out\r\n"
    b"Message-ID: <1@example.com>\r\n\r\n"
    b".leading dot\r\n.\r\n..two\r\nend \xc3\xa9 8bit\r\n"
)


# -- a scriptable Twisted SMTP sink --------------------------------------------


class Sink(LineReceiver):
    """A small ESMTP server that records everything a client does."""

    delimiter = b"\r\n"
    MAX_LENGTH = 1 << 20

    def connectionMade(self) -> None:  # noqa: N802
        self.factory.connections += 1
        self.data: list[bytes] | None = None
        self.tls = False
        self.transport.write(b"220 sink ESMTP\r\n")

    def reply(self, key: tuple[str, str], default: bytes) -> bool:
        """Answer by the first matching rule, else ``default``; True if
        the default (a success) was sent."""
        for (verb, needle), answer in self.factory.rules.items():
            if verb == key[0] and needle in key[1]:
                if answer == b"DROP":
                    self.transport.abortConnection()
                else:
                    self.transport.write(answer + b"\r\n")
                return False
        self.transport.write(default + b"\r\n")
        return True

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        if self.data is not None:
            if line == b".":
                self.factory.messages.append(
                    (self.mail, list(self.rcpts), b"".join(self.data))
                )
                self.data = None
                self.reply(("END", ""), b"250 2.0.0 queued")
                return
            if b"\r" in line or b"\n" in line:
                self.factory.bare.append(line)
            self.data.append((line[1:] if line.startswith(b".") else line) + b"\r\n")
            return
        self.factory.commands.append(line)
        verb = line.split(b" ", 1)[0].upper().decode()
        arg = line.decode("utf-8", "replace")
        if verb == "EHLO":
            ext = [b"250-sink", b"250-PIPELINING", b"250-SIZE 1000000", b"250-8BITMIME"]
            if self.factory.tls is not None and not self.tls:
                ext.append(b"250-STARTTLS")
            if self.factory.auth:
                ext.append(b"250-AUTH PLAIN LOGIN")
            ext.append(b"250 ENHANCEDSTATUSCODES")
            self.transport.write(b"\r\n".join(ext) + b"\r\n")
        elif verb == "STARTTLS":
            self.transport.write(b"220 2.0.0 go ahead\r\n" + self.factory.inject)
            self.transport.startTLS(self.factory.tls)
            self.tls = True
            self.factory.tls_sessions += 1
        elif verb == "AUTH":
            self.factory.auth_lines.append((self.tls, line))
            self.transport.write(b"235 2.7.0 ok\r\n")
        elif verb == "MAIL":
            self.mail, self.rcpts = line[10:], []
            self.reply(("MAIL", arg), b"250 2.1.0 ok")
        elif verb == "RCPT":
            if self.reply(("RCPT", arg), b"250 2.1.5 ok"):
                self.rcpts.append(line[8:])
        elif verb == "DATA":
            if self.reply(("DATA", arg), b"354 go on"):
                self.data = []
        elif verb == "RSET":
            self.transport.write(b"250 2.0.0 ok\r\n")
        elif verb == "QUIT":
            self.transport.write(b"221 2.0.0 bye\r\n")
            self.transport.loseConnection()
        else:
            self.transport.write(b"502 5.5.2 what\r\n")


class SinkFactory(Factory):
    protocol = Sink

    def __init__(self) -> None:
        self.rules: dict[tuple[str, str], bytes] = {}
        self.messages: list[tuple[bytes, list[bytes], bytes]] = []
        self.commands: list[bytes] = []
        self.bare: list[bytes] = []
        self.auth_lines: list[tuple[bool, bytes]] = []
        self.connections = 0
        self.tls_sessions = 0
        self.tls: Any = None
        self.auth = False
        self.inject = b""


class BrokenTLS:
    """A server TLS context no client can agree with: no certificate, and at
    most TLS 1.1."""

    def getContext(self) -> SSL.Context:  # noqa: N802
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_max_proto_version(SSL.TLS1_1_VERSION)
        return context


def tls_files(directory: str) -> tuple[str, ServerTLS]:
    """A self-signed certificate for 127.0.0.1; its path and a ServerTLS."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "sink.pem")
    with open(path, "wb") as f:
        f.write(generate_self_signed(["localhost"], ["127.0.0.1"]))
    return path, ServerTLS.from_files(TLSCertificate(path, path), {})


class RelayTestCase(TestCase):
    """A store, a sink on 127.0.0.1 routed for remote.example, a Clock."""

    def setUp(self) -> None:
        self.store = make_store()
        self.addCleanup(self.store.close)
        self.bob = add_account(self.store, "bob@example.com", password=None)
        self.clock = Clock()
        self.clock.advance(NOW)
        self.sink = SinkFactory()
        port = reactor.listenTCP(0, self.sink, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.port = port.getHost().port
        self.service = self.make_service()

    def make_service(self, **changes: Any) -> OutboundService:
        settings: dict[str, Any] = {
            "routes": {
                "remote.example": ("127.0.0.1", self.port),
                "other.example": ("127.0.0.1", self.port),
            },
            "timeout": 10.0,
        }
        settings.update(changes)
        return OutboundService(
            self.store,
            OutboundConfig(**settings),
            "smtp.example.com",
            reactor,
            clock=self.clock,
            owner="test",
        )

    def queue(
        self,
        recipients: tuple[str, ...] = ("a@remote.example",),
        sender: str = "bob@example.com",
        body: bytes = BODY,
    ) -> int:
        accepted = result(
            self.store.accept_message(
                [],
                QueuedMessage(
                    sender, recipients, body, NOW, NOW + 5 * 86400.0, self.bob.id
                ),
            )
        )
        return int(accepted.queue_id)

    def queued(self) -> list[tuple[str, str, int, float]]:
        return [
            (r.recipient, r.state, r.attempts, r.next_attempt)
            for m in result(self.store.list_outbound())
            for r in m.recipients
        ]

    def inbox(self) -> list[bytes]:
        messages = result(self.store.list_messages(self.bob.id, "Inbox"))
        return [result(self.store.read_body(m.id, 0, 10**6)) for m in messages]


def parse_dsn(raw: bytes) -> tuple[Any, list[Any], bytes]:
    """(the DSN, its delivery-status recipient blocks, the attached headers)."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    parts = message.get_payload()
    status = parts[1].get_payload()
    return message, status[1:], parts[2].get_payload().encode()


# -- delivery ------------------------------------------------------------------


class DeliveryTests(RelayTestCase):
    @defer.inlineCallbacks
    def test_delivers_intact(self) -> Any:
        """A queued message arrives byte for byte, with its envelope, SIZE
        and BODY=8BITMIME, and leaves the queue."""
        self.queue(("a@remote.example", "b@remote.example"))
        yield self.service.run_once()
        self.assertEqual(
            self.sink.messages,
            [
                (
                    b"<bob@example.com> SIZE=%d BODY=8BITMIME" % len(BODY),
                    [b"<a@remote.example>", b"<b@remote.example>"],
                    BODY,
                )
            ],
        )
        self.assertEqual(self.sink.bare, [])
        self.assertEqual(self.queued(), [])
        self.assertEqual(self.inbox(), [])

    @defer.inlineCallbacks
    def test_one_connection_many_messages(self) -> Any:
        """Messages for one domain share one connection, ending with QUIT."""
        self.service = self.make_service(max_connections_per_domain=1)
        for _ in range(3):
            self.queue()
        yield self.service.run_once()
        self.assertEqual(self.sink.connections, 1)
        self.assertEqual(len(self.sink.messages), 3)
        self.assertEqual(self.sink.commands[-1], b"QUIT")
        self.assertEqual([c for c in self.sink.commands if c == b"QUIT"], [b"QUIT"])

    @defer.inlineCallbacks
    def test_connection_limit_per_domain(self) -> Any:
        """With max_connections_per_domain 1 and one message per connection,
        the messages go one connection after another, all delivered."""
        self.service = self.make_service(
            max_connections_per_domain=1, messages_per_connection=1
        )
        for _ in range(3):
            self.queue()
        yield self.service.run_once()
        self.assertEqual((self.sink.connections, len(self.sink.messages)), (3, 3))
        self.assertEqual(self.queued(), [])

    @defer.inlineCallbacks
    def test_chunk_boundaries(self) -> Any:
        """A body whose dots and line ends fall on 64 KiB read boundaries
        arrives intact (dot-stuffed on the wire, never cut short)."""
        filler = b"x" * (65536 - len(BODY) - 2) + b"\r\n"
        body = BODY + filler + b".\r\n" + b"y" * 65533 + b"\r\n" + b".z\r\n"
        self.queue(body=body)
        yield self.service.run_once()
        self.assertEqual([m[2] for m in self.sink.messages], [body])

    @defer.inlineCallbacks
    def test_retry_after_4xx_with_backoff(self) -> Any:
        """A 4xx is retried 5 minutes later, then 10; then delivered."""
        self.sink.rules[("RCPT", "a@")] = b"451 4.3.0 try later"
        self.queue()
        yield self.service.run_once()
        self.assertEqual(self.queued(), [("a@remote.example", "queued", 1, NOW + 300)])
        (message,) = result(self.store.list_outbound())
        self.assertEqual(
            message.recipients[0].last_error,
            "host 127.0.0.1 said: 451 4.3.0 try later",
        )
        self.clock.advance(299)
        yield self.service.run_once()
        self.assertEqual(self.sink.connections, 1)
        self.clock.advance(1)
        yield self.service.run_once()
        self.assertEqual(
            self.queued(), [("a@remote.example", "queued", 2, NOW + 300 + 600)]
        )
        del self.sink.rules[("RCPT", "a@")]
        self.clock.advance(600)
        yield self.service.run_once()
        self.assertEqual(self.queued(), [])
        self.assertEqual(len(self.sink.messages), 1)
        self.assertEqual(self.inbox(), [])

    @defer.inlineCallbacks
    def test_bounce_after_5xx(self) -> Any:
        """A 5xx fails the recipient at once; the local sender gets one DSN
        (RFC 3464) with the status, the remote reply and original headers."""
        self.sink.rules[("RCPT", "a@")] = b"550 5.1.1 no such user"
        self.queue()
        yield self.service.run_once()
        self.assertEqual(self.queued(), [])
        (raw,) = self.inbox()
        dsn, blocks, headers = parse_dsn(raw)
        self.assertEqual(
            (dsn["From"], dsn["To"], dsn["Auto-Submitted"], dsn.get_content_type()),
            (
                "Mail Delivery System <MAILER-DAEMON@smtp.example.com>",
                "<bob@example.com>",
                "auto-replied",
                "multipart/report",
            ),
        )
        self.assertEqual(dsn.get_param("report-type"), "delivery-status")
        self.assertEqual(
            [
                (b["Final-Recipient"], b["Action"], b["Status"], b["Diagnostic-Code"])
                for b in blocks
            ],
            [
                (
                    "rfc822; a@remote.example",
                    "failed",
                    "5.1.1",
                    "smtp; 550 5.1.1 no such user",
                )
            ],
        )
        self.assertEqual(headers, BODY[: BODY.index(b"\r\n\r\n") + 2])

    @defer.inlineCallbacks
    def test_bounce_for_unknown_hosted_sender_dropped(self) -> Any:
        """A DSN for an address of a hosted domain that has no account (it
        was deleted) goes nowhere: there is no one to tell, and queueing it
        would only bounce it back."""
        self.sink.rules[("RCPT", "a@")] = b"550 5.1.1 no such user"
        self.queue(sender="gone@example.com")
        yield self.service.run_once()
        self.assertEqual((self.queued(), self.inbox()), ([], []))

    @defer.inlineCallbacks
    def test_partial_success(self) -> Any:
        """Of three recipients one fails: two get the message, the DSN
        names only the failed one."""
        self.sink.rules[("RCPT", "b@")] = b"550 5.1.1 no such user"
        self.queue(("a@remote.example", "b@remote.example", "c@remote.example"))
        yield self.service.run_once()
        self.assertEqual(
            [m[1] for m in self.sink.messages],
            [[b"<a@remote.example>", b"<c@remote.example>"]],
        )
        (raw,) = self.inbox()
        _, blocks, _ = parse_dsn(raw)
        self.assertEqual(
            [b["Final-Recipient"] for b in blocks], ["rfc822; b@remote.example"]
        )

    @defer.inlineCallbacks
    def test_bounce_after_expiry(self) -> Any:
        """A recipient deferred until its lifetime ends fails with 4.4.7,
        after back-off that never exceeds an hour."""
        self.sink.rules[("RCPT", "a@")] = b"451 4.3.0 try later"
        self.queue()
        delays = []
        for _ in range(200):  # 5 days at most hourly: ~125 attempts
            yield self.service.run_once()
            rows = self.queued()
            if not rows:
                break
            delays.append(rows[0][3] - self.clock.seconds())
            self.clock.advance(rows[0][3] - self.clock.seconds())
        self.assertEqual(self.queued(), [])
        self.assertEqual(delays[:6], [300, 600, 1200, 2400, 3600, 3600])
        self.assertTrue(max(delays) <= 3600)
        (raw,) = self.inbox()
        _, blocks, _ = parse_dsn(raw)
        self.assertEqual([b["Status"] for b in blocks], ["4.4.7"])
        self.assertEqual(self.clock.seconds(), NOW + 5 * 86400)

    @defer.inlineCallbacks
    def test_null_sender_never_bounced(self) -> Any:
        """A failed message from the null sender leaves without a bounce."""
        self.sink.rules[("RCPT", "a@")] = b"550 5.1.1 no such user"
        self.queue(sender="")
        yield self.service.run_once()
        self.assertEqual((self.queued(), self.inbox()), ([], []))

    @defer.inlineCallbacks
    def test_remote_sender_bounce_is_queued_and_sent(self) -> Any:
        """The bounce for a remote sender is queued from the null sender and
        delivered like any message."""
        self.sink.rules[("RCPT", "a@")] = b"550 5.1.1 no such user"
        self.queue(sender="carol@other.example")
        yield self.service.run_once()
        self.assertEqual(self.queued(), [("carol@other.example", "queued", 0, NOW)])
        yield self.service.run_once()
        self.assertEqual(self.queued(), [])
        ((mail, rcpts, raw),) = self.sink.messages
        self.assertEqual(
            (mail.split(b" ")[0], rcpts), (b"<>", [b"<carol@other.example>"])
        )
        _, blocks, _ = parse_dsn(raw)
        self.assertEqual([b["Status"] for b in blocks], ["5.1.1"])

    @defer.inlineCallbacks
    def test_failure_at_data(self) -> Any:
        """A 4xx or 5xx to DATA or to the final dot applies to every
        accepted recipient."""
        self.sink.rules[("END", "")] = b"554 5.6.0 content rejected"
        self.queue(("a@remote.example", "b@remote.example"))
        yield self.service.run_once()
        (raw,) = self.inbox()
        _, blocks, _ = parse_dsn(raw)
        self.assertEqual(
            [(b["Final-Recipient"], b["Status"]) for b in blocks],
            [
                ("rfc822; a@remote.example", "5.6.0"),
                ("rfc822; b@remote.example", "5.6.0"),
            ],
        )

    @defer.inlineCallbacks
    def test_lost_final_reply_is_retried(self) -> Any:
        """A connection dropped instead of the reply to the final dot is a
        temporary failure: the message is sent again (a duplicate at worst)."""
        self.sink.rules[("END", "")] = b"DROP"
        self.queue()
        yield self.service.run_once()
        self.assertEqual(self.queued(), [("a@remote.example", "queued", 1, NOW + 300)])
        del self.sink.rules[("END", "")]
        self.clock.advance(300)
        yield self.service.run_once()
        self.assertEqual(self.queued(), [])
        self.assertEqual([m[2] for m in self.sink.messages], [BODY, BODY])

    @defer.inlineCallbacks
    def test_connection_refused_is_retried(self) -> Any:
        """A refused connection defers every recipient, naming the host."""
        closed = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        port = closed.getHost().port
        yield closed.stopListening()
        self.service = self.make_service(routes={"remote.example": ("127.0.0.1", port)})
        self.queue(("a@remote.example", "b@remote.example"))
        yield self.service.run_once()
        self.assertEqual(
            self.queued(),
            [
                ("a@remote.example", "queued", 1, NOW + 300),
                ("b@remote.example", "queued", 1, NOW + 300),
            ],
        )
        (message,) = result(self.store.list_outbound())
        self.assertTrue(
            message.recipients[0].last_error.startswith(
                f"connect to 127.0.0.1:{port}: "
            ),
            message.recipients[0].last_error,
        )


class TLSTests(RelayTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.ca, self.sink.tls = tls_files(self.mktemp())

    @defer.inlineCallbacks
    def test_starttls_opportunistic(self) -> Any:
        """STARTTLS offered is used, and EHLO is sent again over TLS."""
        self.queue()
        yield self.service.run_once()
        self.assertEqual(self.sink.tls_sessions, 1)
        self.assertEqual(
            [c.split(b" ")[0] for c in self.sink.commands[:4]],
            [b"EHLO", b"STARTTLS", b"EHLO", b"MAIL"],
        )
        self.assertEqual([m[2] for m in self.sink.messages], [BODY])

    @defer.inlineCallbacks
    def test_starttls_injection_discarded(self) -> Any:
        """Replies a hostile server sends in plaintext after its 220 to
        STARTTLS are discarded, not read as answers to commands over TLS."""
        self.sink.inject = b"250 2.0.0 injected\r\n550 5.0.0 injected\r\n"
        self.queue()
        yield self.service.run_once()
        self.assertEqual([m[2] for m in self.sink.messages], [BODY])
        self.assertEqual(self.queued(), [])

    @defer.inlineCallbacks
    def test_smarthost_verified_with_auth(self) -> Any:
        """The smart host's certificate is verified and AUTH PLAIN is sent
        only over TLS."""
        secret = os.path.abspath(self.mktemp())
        with open(secret, "w") as f:
            f.write("s3cret\n")
        self.sink.auth = True
        self.service = self.make_service(
            routes={},
            smarthost=("127.0.0.1", self.port),
            smarthost_user="zpop",
            smarthost_password_file=secret,
            smarthost_ca=self.ca,
        )
        self.queue(("x@anywhere.example",))
        yield self.service.run_once()
        self.assertEqual(self.sink.auth_lines, [(True, b"AUTH PLAIN AHpwb3AAczNjcmV0")])
        self.assertEqual(
            [m[1] for m in self.sink.messages], [[b"<x@anywhere.example>"]]
        )

    @defer.inlineCallbacks
    def test_smarthost_unverified_certificate_deferred(self) -> Any:
        """A smart host whose certificate does not verify gets nothing: the
        message is deferred."""
        other, _ = tls_files(self.mktemp())
        self.service = self.make_service(
            routes={},
            smarthost=("127.0.0.1", self.port),
            smarthost_ca=other,
        )
        self.queue(("x@anywhere.example",))
        yield self.service.run_once()
        self.assertEqual(self.sink.messages, [])
        self.assertEqual(
            self.queued(), [("x@anywhere.example", "queued", 1, NOW + 300)]
        )

    @defer.inlineCallbacks
    def test_broken_tls_falls_back_to_plaintext(self) -> Any:
        """A failed STARTTLS handshake with an MX is retried at once without
        TLS (opportunistic TLS, RFC 7435, as Postfix does)."""
        self.sink.tls = BrokenTLS()
        self.queue()
        yield self.service.run_once()
        self.assertEqual(self.sink.tls_sessions, 1)
        self.assertEqual([m[2] for m in self.sink.messages], [BODY])
        self.assertEqual(self.queued(), [])

    @defer.inlineCallbacks
    def test_broken_tls_required(self) -> Any:
        """With require_tls, a failed handshake defers instead of falling back."""
        self.sink.tls = BrokenTLS()
        self.service = self.make_service(
            require_tls=True,
            routes={"remote.example": ("127.0.0.1", self.port)},
        )
        self.queue()
        yield self.service.run_once()
        self.assertEqual(self.sink.messages, [])
        self.assertEqual(self.queued(), [("a@remote.example", "queued", 1, NOW + 300)])

    @defer.inlineCallbacks
    def test_require_tls_without_starttls(self) -> Any:
        """With require_tls, a server without STARTTLS gets nothing and the
        recipient is deferred with 4.7.4."""
        self.sink.tls = None
        self.service = self.make_service(
            require_tls=True,
            routes={"remote.example": ("127.0.0.1", self.port)},
        )
        self.queue()
        yield self.service.run_once()
        self.assertEqual(self.sink.messages, [])
        (message,) = result(self.store.list_outbound())
        r = message.recipients[0]
        self.assertEqual((r.state, r.status), ("queued", "4.7.4"))


# -- pure pieces ---------------------------------------------------------------


class DotStufferTests(SynchronousTestCase):
    TRICKY = b".a\r\nb\n.c\r.\r\n\r\n..d\r\n.\rx\n"
    EXPECTED = b"..a\r\nb\r\n..c\r\n..\r\n\r\n...d\r\n..\r\nx\r\n.\r\n"

    def test_every_split(self) -> None:
        """Cut anywhere (also between CR and LF, or before a dot), the
        encoding is the same: CRLF only, every leading dot doubled."""
        for cut in range(len(self.TRICKY) + 1):
            stuffer = DotStuffer()
            out = stuffer.feed(self.TRICKY[:cut]) + stuffer.feed(self.TRICKY[cut:])
            self.assertEqual(out + stuffer.finish(), self.EXPECTED, cut)

    def test_byte_by_byte(self) -> None:
        """Fed one byte at a time, the encoding is still the same."""
        self.assertEqual(dot_stuff(self.TRICKY, chunk=1), self.EXPECTED)

    def test_unterminated_last_line(self) -> None:
        """A body without a final line end gets one before the dot."""
        self.assertEqual(dot_stuff(b"a\r\n.b"), b"a\r\n..b\r\n.\r\n")
        self.assertEqual(dot_stuff(b""), b".\r\n")


class RetryDelayTests(SynchronousTestCase):
    def test_schedule(self) -> None:
        """Back-off doubles from 5 minutes and stays at an hour."""
        self.assertEqual(
            [retry_delay(n, 300, 3600) for n in range(1, 8)],
            [300, 600, 1200, 2400, 3600, 3600, 3600],
        )


class FakeResolver:
    """Answers lookupMailExchange from a table; never touches the network."""

    def __init__(self, table: dict[str, Callable[[], Any]]) -> None:
        self.table = table

    def lookupMailExchange(self, name: str) -> defer.Deferred:  # noqa: N802
        return defer.maybeDeferred(self.table[name])


def mx(*records: tuple[int, str]) -> Callable[[], Any]:
    answers = [
        dns.RRHeader(b"d", dns.MX, payload=dns.Record_MX(pref, name.encode()))
        for pref, name in records
    ]
    return lambda: (answers, [], [])


class RouterTests(SynchronousTestCase):
    def route(self, domain: str, **changes: Any) -> Any:
        def nxdomain() -> Any:
            raise error.DNSNameError("no")

        def servfail() -> Any:
            raise error.DNSServerError("fail")

        resolver = FakeResolver(
            {
                "mx.example": mx((20, "b.mx.example"), (10, "a.mx.example")),
                "bare.example": mx(),
                "null.example": mx((0, "")),
                "gone.example": nxdomain,
                "broken.example": servfail,
            }
        )
        return Router(OutboundConfig(**changes), resolver).route(domain)

    def test_mx_by_preference(self) -> None:
        """MX hosts are tried lowest preference first, port 25."""
        self.assertEqual(
            self.successResultOf(self.route("mx.example")),
            [Hop("a.mx.example", 25, "may"), Hop("b.mx.example", 25, "may")],
        )

    def test_no_mx_falls_back_to_domain(self) -> None:
        """Without MX records the domain's own address is used (RFC 5321)."""
        self.assertEqual(
            self.successResultOf(self.route("bare.example", require_tls=True)),
            [Hop("bare.example", 25, "encrypt")],
        )

    def test_null_mx_and_nxdomain_are_permanent(self) -> None:
        """A null MX (RFC 7505) or a domain that does not exist fails for
        good; a DNS server failure is temporary."""
        null = self.failureResultOf(self.route("null.example"), DeliveryError).value
        gone = self.failureResultOf(self.route("gone.example"), DeliveryError).value
        broken = self.failureResultOf(self.route("broken.example"), DeliveryError).value
        self.assertEqual(
            [(e.permanent, e.status) for e in (null, gone, broken)],
            [(True, "5.1.10"), (True, "5.1.2"), (False, "4.4.3")],
        )

    def test_routes_and_smarthost_before_mx(self) -> None:
        """A [routes] entry wins over the smart host, which wins over MX."""
        config = {
            "routes": {"mx.example": ("127.0.0.1", 2525)},
            "smarthost": ("relay.example", 587),
        }
        self.assertEqual(
            self.successResultOf(self.route("mx.example", **config)),
            [Hop("127.0.0.1", 2525, "may")],
        )
        self.assertEqual(
            self.successResultOf(self.route("bare.example", **config)),
            [Hop("relay.example", 587, "verify")],
        )


# -- Postfix's smtp-sink, and the real server ----------------------------------


def free_port() -> int:
    """A loopback port that was free a moment ago (for smtp-sink)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_smtp_sink(case: TestCase, *options: str) -> tuple[int, str]:
    """Run smtp-sink on 127.0.0.1 with ``options``, dumping each message
    into a directory; returns (port, directory). Stopped at cleanup."""
    path = require_tool("smtp-sink")
    # Not under trial's temp dir: smtp-sink drops root for nobody, who may
    # not enter it.
    dump = tempfile.mkdtemp(prefix="zpop-smtp-sink-")
    case.addCleanup(shutil.rmtree, dump, True)
    os.chmod(dump, 0o777)
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen(
        [path, *user, "-d", f"{dump}/%M.", *options, f"127.0.0.1:{port}", "10"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def stop() -> None:
        process.kill()
        process.wait()

    case.addCleanup(stop)
    deadline = time.monotonic() + 10
    while True:  # bounded: smtp-sink listens within milliseconds
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError("smtp-sink did not start") from None
            time.sleep(0.02)
    return port, dump


def sink_dumps(directory: str) -> list[bytes]:
    """The message part of each smtp-sink dump file (LF line ends)."""
    found = []
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        # smtp-sink's own headers end with its three-line Received: field.
        start = data.find(b"\n", data.find(b"\tby smtp-sink"))
        start = data.find(b"\n", start + 1) + 1
        found.append(data[start:])
    return found


class RawSink:
    """A minimal SMTP server on a thread that keeps the exact DATA bytes.

    For byte-for-byte checks against the real server, which runs in another
    process (smtp-sink rewrites line ends in its dumps). One connection at a
    time, bounded by a socket timeout; stopped at cleanup.
    """

    def __init__(self, case: TestCase) -> None:
        self.messages: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        case.addCleanup(self.stop)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(30)
                self._session(conn.makefile("rwb", buffering=0))

    def _session(self, f: Any) -> None:
        f.write(b"220 sink.test ESMTP\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                f.write(b"250-sink.test\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                f.write(b"354 go on\r\n")
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    chunk = f.readline()
                    if not chunk:
                        return
                    data += chunk
                self.messages.append(data[: -len(b".\r\n")])
                f.write(b"250 2.0.0 kept\r\n")
            elif verb == b"QUIT":
                f.write(b"221 2.0.0 bye\r\n")
                return
            else:
                f.write(b"250 2.0.0 ok\r\n")


class StallingSink(RawSink):
    """A RawSink whose first session never answers the end of its DATA
    (a next hop that stalls); later sessions, each on its own thread, are
    answered normally."""

    def __init__(self, case: TestCase) -> None:
        self.stalled = threading.Event()
        super().__init__(case)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                self._session(conn.makefile("rwb", buffering=0))
            except OSError:
                pass

    def _session(self, f: Any) -> None:
        if self.stalled.is_set():
            super()._session(f)
            return
        f.write(b"220 sink.test ESMTP\r\n")
        while not self.stalled.is_set():
            line = f.readline()
            if not line:
                return
            if line[:4].upper() == b"EHLO":
                f.write(b"250 sink.test\r\n")
            elif line[:4].upper() == b"DATA":
                f.write(b"354 go on\r\n")
                while line not in (b".\r\n", b""):
                    line = f.readline()
                self.stalled.set()
            else:
                f.write(b"250 2.0.0 ok\r\n")
        self._stop.wait(30)


class SMTPSinkTests(RelayTestCase):
    """Postfix's smtp-sink and its fault options as the remote server."""

    def use_sink(self, *options: str) -> str:
        port, dump = start_smtp_sink(self, *options)
        self.service = self.make_service(routes={"remote.example": ("127.0.0.1", port)})
        return dump

    def states(self) -> list[tuple[str, str, int, str | None]]:
        return [
            (r.recipient, r.state, r.attempts, r.last_error and r.last_error[-40:])
            for m in result(self.store.list_outbound())
            for r in m.recipients
        ]

    @defer.inlineCallbacks
    def test_delivery(self) -> Any:
        """smtp-sink receives the message intact (its dump has LF ends)."""
        dump = self.use_sink()
        self.queue(("a@remote.example", "b@remote.example"))
        yield self.service.run_once()
        self.assertEqual(self.queued(), [])
        self.assertEqual(sink_dumps(dump), [BODY.replace(b"\r\n", b"\n") + b"\n"])

    @defer.inlineCallbacks
    def test_temporary_rcpt_failure(self) -> Any:
        """-r RCPT (450 to every RCPT) defers each recipient for 5 minutes."""
        self.use_sink("-r", "RCPT")
        self.queue()
        yield self.service.run_once()
        self.assertEqual(self.queued(), [("a@remote.example", "queued", 1, NOW + 300)])
        self.assertTrue(self.states()[0][3].endswith("450 4.3.0 Error: command failed"))

    @defer.inlineCallbacks
    def test_permanent_rcpt_failure(self) -> Any:
        """-f RCPT (500 to every RCPT) bounces with the sink's status."""
        self.use_sink("-f", "RCPT")
        self.queue()
        yield self.service.run_once()
        (raw,) = self.inbox()
        _, blocks, _ = parse_dsn(raw)
        self.assertEqual(
            [(b["Status"], b["Diagnostic-Code"]) for b in blocks],
            [("5.3.0", "smtp; 500 5.3.0 Error: command failed")],
        )

    @defer.inlineCallbacks
    def test_temporary_failure_after_data(self) -> Any:
        """-r . (450 after the message) defers: nothing was delivered."""
        self.use_sink("-r", ".")
        self.queue()
        yield self.service.run_once()
        self.assertEqual(self.queued(), [("a@remote.example", "queued", 1, NOW + 300)])

    @defer.inlineCallbacks
    def test_permanent_failure_at_data(self) -> Any:
        """-f DATA bounces every accepted recipient once."""
        self.use_sink("-f", "DATA")
        self.queue(("a@remote.example", "b@remote.example"))
        yield self.service.run_once()
        self.assertEqual(self.queued(), [])
        (raw,) = self.inbox()
        _, blocks, _ = parse_dsn(raw)
        self.assertEqual(len(blocks), 2)

    @defer.inlineCallbacks
    def test_disconnect_and_421(self) -> Any:
        """A silent disconnect after the dot (-q .) and a 421 to MAIL
        (-Q MAIL) are temporary failures."""
        self.use_sink("-q", ".")
        self.queue()
        yield self.service.run_once()
        self.assertEqual(self.states()[0][:3], ("a@remote.example", "queued", 1))
        self.use_sink("-Q", "MAIL")
        self.clock.advance(300)
        yield self.service.run_once()
        self.assertEqual(self.states()[0][:3], ("a@remote.example", "queued", 2))
        self.assertIn("421", self.states()[0][3])


class ServerTests(SynchronousTestCase):
    """The relay inside the real server (twistd), with smtp-sink."""

    def settings(self, port: int) -> dict[str, dict[str, str]]:
        return {
            "outbound": {"scan_interval": "0.2", "lease": "2", "retry_min": "1"},
            "routes": {"remote.example": f"127.0.0.1:{port}"},
        }

    def wait_empty(self, server: ZpopServer, timeout: float = 30.0) -> None:
        """Poll ``zpop queue list`` until the queue is empty (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            out = server.cli("queue", "list").stdout
            if out == b"the outbound queue is empty\n":
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"queue not empty: {out!r}\n{server.log_text()}")
            time.sleep(0.2)

    def test_kill_9_during_delivery(self) -> None:
        """A server killed (SIGKILL) while sending a message loses nothing:
        after a restart the message is delivered (again)."""
        port, dump = start_smtp_sink(self, "-W", ".:3")
        server = start_server(self, settings=self.settings(port))
        store = SQLiteStore(os.path.join(server.data, DATABASE_NAME), run_synchronously)
        self.addCleanup(store.close)
        result(
            store.accept_message(
                [],
                QueuedMessage(
                    "bob@example.test",
                    ("a@remote.example",),
                    BODY,
                    time.time(),
                    time.time() + 3600,
                ),
            )
        )
        deadline = time.monotonic() + 15
        while not os.listdir(dump):  # the transaction has started
            self.assertLess(time.monotonic(), deadline, server.log_text())
            time.sleep(0.05)
        time.sleep(0.5)  # the body is sent; the sink sits on its reply
        self.assertEqual(server.kill(), -9)
        (message,) = result(store.list_outbound())
        self.assertEqual(message.recipients[0].state, "queued")
        server.start()
        self.wait_empty(server)
        self.assertIn(BODY.replace(b"\r\n", b"\n") + b"\n", sink_dumps(dump))

    def stalled(self, sink: StallingSink) -> tuple[ZpopServer, SQLiteStore]:
        """A server (default 300 s lease) whose delivery of one queued
        message waits for the stalled next hop's reply; and its store."""
        settings = self.settings(sink.port)
        del settings["outbound"]["lease"]
        server = start_server(self, settings=settings)
        store = SQLiteStore(os.path.join(server.data, DATABASE_NAME), run_synchronously)
        self.addCleanup(store.close)
        result(
            store.accept_message(
                [],
                QueuedMessage(
                    "bob@example.test",
                    ("a@remote.example",),
                    BODY,
                    time.time(),
                    time.time() + 3600,
                ),
            )
        )
        self.assertTrue(sink.stalled.wait(15), server.log_text())
        return server, store

    def test_kill_9_lease_released_at_restart(self) -> None:
        """After kill -9 during DATA to a stalled next hop, the restarted
        server takes back the dead process's lease at once: the message is
        delivered within 30 s, not when the 300 s lease runs out."""
        sink = StallingSink(self)
        server, _ = self.stalled(sink)
        self.assertEqual(server.kill(), -9)
        restarted = time.monotonic()
        server.start()
        self.wait_empty(server, timeout=30)
        self.assertLess(time.monotonic() - restarted, 30)
        stuffed = (b"\r\n" + BODY).replace(b"\r\n.", b"\r\n..")[2:]
        self.assertEqual(sink.messages, [stuffed])
        self.assertRegex(
            server.log_text(current=True),
            r"outbound: released 1 deliveries of dead process \S+:\d+:",
        )

    def test_stop_during_delivery(self) -> None:
        """SIGTERM while a delivery waits on a stalled next hop: the relay
        releases its lease before the database pool stops (no traceback in
        the log, which the harness checks), and the next start delivers it
        without having to take a dead process's lease back."""
        sink = StallingSink(self)
        server, store = self.stalled(sink)
        server.stop()  # SIGTERM: twistd stops cleanly, then re-raises it
        self.assertEqual(result(store.outbound_lease_owners()), [])
        server.start()
        self.wait_empty(server, timeout=30)
        self.assertEqual(len(sink.messages), 1)
        self.assertNotIn("of dead process", server.log_text())

    def test_queue_retry_releases_dead_lease(self) -> None:
        """``zpop queue retry`` says "due now" truthfully: it also releases
        the claim of a server process that was killed."""
        server, _ = self.stalled(StallingSink(self))
        self.assertEqual(server.kill(), -9)
        self.assertEqual(
            server.zpop("queue", "retry", "--all"),
            "1 recipient in the queue due now; the server tries them at its"
            " next scan\n1 interrupted delivery of a process that is gone"
            " released\n",
        )
        self.assertEqual(server.zpop("queue", "retry", "--all").count("\n"), 1)

    def test_submission_to_remote(self) -> None:
        """A message submitted on 587 to a remote address arrives at the
        routed server byte for byte: the client's bytes, dot-stuffed on the
        wire, under one added Received: field. The scan interval is long:
        submission wakes the relay itself."""
        sink = RawSink(self)
        settings = self.settings(sink.port)
        settings["outbound"]["scan_interval"] = "600"
        server = start_server(self, settings=settings)
        server.zpop("domain", "add", "example.test")
        server.add_account("bob@example.test", "a long passphrase")
        body = (
            b"From: bob@example.test\r\nTo: a@remote.example\r\nSubject: hi\r\n"
            b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
            b"Message-ID: <e2e@example.test>\r\n\r\n.dot\r\nbody\r\n..two\r\n"
        )
        with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as smtp:
            smtp._host = "smtp.example.test"  # the name TLS checks (smtplib API)
            smtp.starttls(context=server.ssl_context())
            smtp.login("bob@example.test", "a long passphrase")
            smtp.sendmail("bob@example.test", ["a@remote.example"], body)
        self.wait_empty(server)
        (wire,) = sink.messages
        stuffed = body.replace(b"\r\n.", b"\r\n..")
        self.assertTrue(wire.endswith(b"\r\n" + stuffed), wire)
        received = wire[: -len(stuffed)]
        self.assertTrue(received.startswith(b"Received: from "), wire)
        self.assertEqual(received.count(b"\r\n"), 3, wire)
        self.assertNotIn(b"\n", received.replace(b"\r\n", b""))
