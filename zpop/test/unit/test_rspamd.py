"""zpop.mailauth.rspamd without rspamd: the request, the reading of its
answer, the mapping of actions to verdicts, the status field, and the
client driven over an in-memory reactor (a Clock for the timeout)."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from zpop.config import SpamConfig
from zpop.mailauth.rspamd import (
    FOLD_COLUMNS,
    MAX_SYMBOLS,
    Answer,
    RspamdClient,
    RspamdError,
    failed,
    parse_answer,
    request_headers,
    status_field,
    verdict_for,
    without_status_fields,
)
from zpop.mailauth.verdict import InboundMessage, Refused, Verdict

MESSAGE = InboundMessage(
    sender="carol@example.org",
    recipients=("bob@example.test", "al@example.test"),
    client="192.0.2.7",
    helo="mail.example.org",
    body=b"Subject: hi\r\n\r\nAt noon?\r\n",
    queue_id="Q1",
)
URL = "http://127.0.0.1:11333"


def answer_json(action: str = "no action", **extra: Any) -> bytes:
    data: dict[str, Any] = {
        "action": action,
        "score": 1.5,
        "required_score": 15.0,
        "symbols": {
            "MIME_GOOD": {"name": "MIME_GOOD", "score": -0.1},
            "DATE_IN_PAST": {"name": "DATE_IN_PAST", "score": 1.0},
        },
    }
    data.update(extra)
    return json.dumps(data).encode()


class RequestTests(SynchronousTestCase):
    """The request headers rspamd's protocol defines."""

    def test_envelope(self) -> None:
        """IP, Helo, From, one Rcpt per recipient, Queue-Id and Password."""
        self.assertEqual(
            request_headers(MESSAGE, "s3cret"),
            {
                b"From": [b"carol@example.org"],
                b"Rcpt": [b"bob@example.test", b"al@example.test"],
                b"IP": [b"192.0.2.7"],
                b"Helo": [b"mail.example.org"],
                b"Queue-Id": [b"Q1"],
                b"Password": [b"s3cret"],
            },
        )

    def test_null_sender_and_absent_values(self) -> None:
        """The null sender is ``<>``; no HELO, queue id or password: no header."""
        message = InboundMessage("", ("bob@example.test",), "192.0.2.7", "", b"")
        self.assertEqual(
            request_headers(message, None),
            {
                b"From": [b"<>"],
                b"Rcpt": [b"bob@example.test"],
                b"IP": [b"192.0.2.7"],
            },
        )

    def test_controls_removed(self) -> None:
        """A CR, LF or other control never reaches a header value; UTF-8
        addresses stay as they are."""
        message = InboundMessage(
            "j\u00f6rg@example.org",
            ("bob@example.test",),
            "192.0.2.7",
            "evil\r\nX-Injected: 1",
            b"",
        )
        headers = request_headers(message, None)
        self.assertEqual(
            (headers[b"Helo"], headers[b"From"]),
            ([b"evilX-Injected: 1"], ["j\u00f6rg@example.org".encode()]),
        )


class ParseTests(SynchronousTestCase):
    """Reading rspamd's JSON answer, defensively."""

    def test_answer(self) -> None:
        """Action, scores and symbols (highest score first) are taken."""
        self.assertEqual(
            parse_answer(200, answer_json()),
            Answer(
                "no action",
                1.5,
                15.0,
                (("DATE_IN_PAST", 1.0), ("MIME_GOOD", -0.1)),
            ),
        )

    def test_underscore_action(self) -> None:
        """``add_header`` (the config spelling) reads as ``add header``."""
        self.assertEqual(
            parse_answer(200, answer_json("Add_Header")).action, "add header"
        )

    def test_http_error(self) -> None:
        """Any status but 200 is an error, whatever the body says."""
        with self.assertRaises(RspamdError) as raised:
            parse_answer(500, answer_json())
        self.assertEqual(str(raised.exception), "HTTP status 500")

    def test_not_json(self) -> None:
        """Junk, non-objects, NaN and a missing or odd action are errors."""
        for body, reason in [
            (b"<html>oops", "answer is not JSON (JSONDecodeError)"),
            (b"\xc3\x28", "answer is not JSON (UnicodeDecodeError)"),
            (b"[1, 2]", "answer is not a JSON object"),
            (
                b'{"action": "no action", "score": NaN}',
                "answer is not JSON (ValueError)",
            ),
            (b'{"score": 1}', "answer has no action"),
            (b'{"action": 5}', "answer has no action"),
            (b'{"action": "  "}', "answer has no action"),
            (b"[" * 100000 + b"]" * 100000, "answer is not JSON (RecursionError)"),
        ]:
            with self.assertRaises(RspamdError) as raised:
                parse_answer(200, body)
            self.assertEqual(str(raised.exception), reason)

    def test_missing_and_odd_fields(self) -> None:
        """Scores that are absent or not numbers are None; symbols of the
        wrong shape are ignored or scored 0."""
        body = json.dumps(
            {
                "action": "reject",
                "score": "lots",
                "required_score": True,
                "symbols": {"A": "x", "B": {"score": None}, "C": {"score": 2}},
            }
        ).encode()
        self.assertEqual(
            parse_answer(200, body),
            Answer("reject", None, None, (("C", 2.0), ("A", 0.0), ("B", 0.0))),
        )
        self.assertEqual(
            parse_answer(200, b'{"action": "reject", "symbols": []}'),
            Answer("reject"),
        )

    def test_symbol_names_sanitised(self) -> None:
        """A symbol name is ASCII letters, digits and ``_.:-``; anything
        else (CR, LF, spaces, parentheses) becomes ``_``; long ones are cut."""
        body = json.dumps(
            {
                "action": "no action",
                "symbols": {"EVIL\r\nX-Bad: 1": {"score": 1}, "B" * 100: {"score": 0}},
            }
        ).encode()
        self.assertEqual(
            parse_answer(200, body).symbols,
            (("EVIL__X-Bad:_1", 1.0), ("B" * 60, 0.0)),
        )


class VerdictTests(SynchronousTestCase):
    """rspamd's actions mapped as DESIGN §1 says."""

    def test_reject(self) -> None:
        """``reject`` refuses with 550 5.7.1."""
        with self.assertRaises(Refused) as raised:
            verdict_for(Answer("reject", 16.0, 15.0))
        self.assertEqual(
            (raised.exception.code, raised.exception.enhanced, raised.exception.text),
            (550, "5.7.1", "message refused as spam"),
        )

    def test_deferred(self) -> None:
        """``soft reject`` and ``greylist`` defer with 451 4.7.1."""
        for action in ("soft reject", "greylist"):
            with self.assertRaises(Refused) as raised:
                verdict_for(Answer(action, 5.0, 15.0))
            self.assertEqual(
                (raised.exception.code, raised.exception.enhanced),
                (451, "4.7.1"),
            )

    def test_spam(self) -> None:
        """``add header``, ``rewrite subject`` (and the ``quarantine`` and
        ``discard`` of some setups) file in Spam with the status field."""
        for action in ("add header", "rewrite subject", "quarantine", "discard"):
            answer = Answer(action, 7.0, 15.0, (("X", 7.0),))
            self.assertEqual(
                verdict_for(answer), Verdict(folder="Spam", fields=status_field(answer))
            )

    def test_ham(self) -> None:
        """``no action`` files in the Inbox with the status field."""
        answer = Answer("no action", 0.5, 15.0)
        self.assertEqual(
            verdict_for(answer),
            Verdict(
                folder="Inbox",
                fields=b"X-Spam-Status: No, score=0.50 required=15.00"
                b' action="no action"\r\n',
            ),
        )

    def test_unknown_action(self) -> None:
        """An action rspamd does not have is an unusable answer."""
        with self.assertRaises(RspamdError) as raised:
            verdict_for(Answer("make coffee"))
        self.assertEqual(str(raised.exception), "unknown action 'make coffee'")


class StatusFieldTests(SynchronousTestCase):
    """The X-Spam-Status field: ASCII, folded, never a stray CR or LF."""

    def test_folded(self) -> None:
        """Symbols follow the scores, folded between tokens to 78 columns."""
        symbols = tuple((f"SYMBOL_NUMBER_{i}", float(i)) for i in range(12))
        field = status_field(Answer("add header", 7.25, 15.0, symbols))
        lines = field.split(b"\r\n")
        self.assertEqual(lines[-1], b"")
        self.assertEqual(
            lines[0],
            b'X-Spam-Status: Yes, score=7.25 required=15.00 action="add header"',
        )
        self.assertTrue(all(line.startswith(b"\t") for line in lines[1:-1]))
        self.assertTrue(all(len(line) <= FOLD_COLUMNS for line in lines))
        unfolded = field.replace(b"\r\n\t", b" ").rstrip(b"\r\n")
        self.assertIn(
            b" symbols=SYMBOL_NUMBER_0(0.00), SYMBOL_NUMBER_1(1.00), ", unfolded
        )
        self.assertTrue(unfolded.endswith(b"SYMBOL_NUMBER_11(11.00)"))

    def test_many_symbols(self) -> None:
        """At most MAX_SYMBOLS are listed, then how many more there were."""
        symbols = tuple((f"S{i}", 0.0) for i in range(MAX_SYMBOLS + 5))
        field = status_field(Answer("no action", 0.0, 15.0, symbols))
        self.assertTrue(field.endswith(b"S39(0.00), +5\r\n"))

    def test_unknown_scores(self) -> None:
        """Absent scores show as ``?``."""
        self.assertEqual(
            status_field(Answer("add header")),
            b'X-Spam-Status: Yes, score=? required=? action="add header"\r\n',
        )

    def test_no_controls(self) -> None:
        """Only printable ASCII, CRLF only at line ends, whatever came in."""
        answer = parse_answer(
            200,
            json.dumps(
                {"action": "no action", "symbols": {"\u00e9\r\n\x00(x)": {"score": 1}}}
            ).encode(),
        )
        field = status_field(answer)
        field.decode("ascii")
        self.assertEqual(field.count(b"\r"), field.count(b"\r\n"))
        self.assertEqual(field.count(b"\n"), field.count(b"\r\n"))
        self.assertIn(b"symbols=_____x_(1.00)", field)


class StripTests(SynchronousTestCase):
    """An incoming X-Spam-Status is the sender's, and is removed."""

    def test_removed(self) -> None:
        """Every such field (any case, folded) goes; the body's text stays."""
        body = (
            b"Subject: a\r\nX-Spam-Status: No, score=-99\r\n\tsymbols=NICE\r\n"
            b"x-spam-status : No\r\nTo: b\r\n c\r\n\r\nX-Spam-Status: text\r\n"
        )
        self.assertEqual(
            without_status_fields(body),
            b"Subject: a\r\nTo: b\r\n c\r\n\r\nX-Spam-Status: text\r\n",
        )

    def test_untouched(self) -> None:
        """A message without one is returned as it is."""
        body = b"Subject: a\r\nX-Spam-Flag: YES\r\n\r\nhi\r\n"
        self.assertIs(without_status_fields(body), body)

    def test_header_only(self) -> None:
        """A message with no blank line is all header."""
        self.assertEqual(
            without_status_fields(b"Subject: a\r\nX-Spam-Status: Yes\r\n"),
            b"Subject: a\r\n",
        )


class FailureTests(SynchronousTestCase):
    """The fail policy, with its one log line."""

    def test_accept(self) -> None:
        """``accept``: no opinion (the X-Spam-Flag rule), one warning."""
        with capturedLogs() as events:
            verdict = failed("accept", "HTTP status 500", MESSAGE, URL)
        self.assertEqual(verdict, Verdict())
        [event] = events
        self.assertEqual(
            (event["log_format"].format(**event), event.get("log_failure")),
            (
                f"rspamd at {URL} failed for Q1: HTTP status 500; fail_policy=accept",
                None,
            ),
        )

    def test_tempfail(self) -> None:
        """``tempfail``: 451 4.7.1."""
        with capturedLogs(), self.assertRaises(Refused) as raised:
            failed("tempfail", "no answer in time", MESSAGE, URL)
        self.assertEqual(
            (raised.exception.code, raised.exception.enhanced, raised.exception.text),
            (451, "4.7.1", "spam filter unavailable, try again later"),
        )


class ClientTests(SynchronousTestCase):
    """RspamdClient over twisted.web's Agent on an in-memory reactor."""

    def client(
        self, policy: str = "accept", password: str | None = "pw"
    ) -> tuple[RspamdClient, MemoryReactorClock]:
        reactor = MemoryReactorClock()
        config = SpamConfig(rspamd=URL + "/", timeout=5.0, fail_policy=policy)
        return RspamdClient(reactor, config, password), reactor

    def start(
        self, client: RspamdClient, authentication_results: bytes = b""
    ) -> Deferred:
        return Deferred.fromCoroutine(client.check(MESSAGE, authentication_results))

    def connect(self, reactor: MemoryReactorClock) -> tuple[Any, StringTransport]:
        """Complete the connection the Agent asked for; (protocol, transport)."""
        host, port, factory, timeout, _ = reactor.tcpClients[-1]
        self.assertEqual((host, port, timeout), ("127.0.0.1", 11333, 5.0))
        factory.doStart()  # as a real connector does
        protocol = factory.buildProtocol(None)
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def respond(self, protocol: Any, status: bytes, body: bytes) -> None:
        protocol.dataReceived(
            b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % len(body) + body
        )

    def test_request(self) -> None:
        """POST /checkv2 with the envelope headers; the body is our
        Authentication-Results field on top of the message."""
        client, reactor = self.client()
        results = b"Authentication-Results: example.test; spf=pass\r\n"
        d = self.start(client, results)
        _, transport = self.connect(reactor)
        head, _, body = transport.value().partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0], b"POST /checkv2 HTTP/1.1")
        self.assertEqual(
            sorted(lines[1:]),
            [
                b"Content-Length: %d" % len(results + MESSAGE.body),
                b"From: carol@example.org",
                b"Helo: mail.example.org",
                b"Host: 127.0.0.1:11333",
                b"Ip: 192.0.2.7",
                b"Password: pw",
                b"Queue-Id: Q1",
                b"Rcpt: al@example.test",
                b"Rcpt: bob@example.test",
            ],
        )
        self.assertEqual(body, results + MESSAGE.body)
        self.assertNoResult(d)

    def test_ham(self) -> None:
        """A ``no action`` answer: the Inbox, with the status field; the
        exchange logs nothing (no "Starting factory" per connection)."""
        client, reactor = self.client()
        with capturedLogs() as events:
            d = self.start(client)
            protocol, _ = self.connect(reactor)
            self.respond(protocol, b"200 OK", answer_json())
        self.assertEqual(list(events), [])
        self.assertEqual(
            self.successResultOf(d),
            Verdict(
                folder="Inbox",
                fields=b"X-Spam-Status: No, score=1.50 required=15.00"
                b' action="no action"\r\n'
                b"\tsymbols=DATE_IN_PAST(1.00), MIME_GOOD(-0.10)\r\n",
            ),
        )

    def test_reject(self) -> None:
        """A ``reject`` answer refuses the message."""
        client, reactor = self.client()
        d = self.start(client)
        protocol, _ = self.connect(reactor)
        self.respond(protocol, b"200 OK", answer_json("reject"))
        self.assertEqual(self.failureResultOf(d, Refused).value.code, 550)

    def test_http_500(self) -> None:
        """HTTP 500, policy accept: no opinion, logged."""
        client, reactor = self.client()
        d = self.start(client)
        protocol, _ = self.connect(reactor)
        with capturedLogs() as events:
            self.respond(protocol, b"500 Internal Server Error", b'{"error": "x"}')
        self.assertEqual(self.successResultOf(d), Verdict())
        self.assertEqual(
            [e["reason"] for e in events if "reason" in e], ["HTTP status 500"]
        )

    def test_junk_tempfail(self) -> None:
        """Junk in a 200, policy tempfail: 451 4.7.1."""
        client, reactor = self.client("tempfail")
        d = self.start(client)
        protocol, _ = self.connect(reactor)
        with capturedLogs() as events:
            self.respond(protocol, b"200 OK", b"I am not rspamd")
        self.assertEqual(self.failureResultOf(d, Refused).value.code, 451)
        self.assertEqual(
            [e["reason"] for e in events if "reason" in e],
            ["answer is not JSON (JSONDecodeError)"],
        )

    def test_refused_connection(self) -> None:
        """rspamd not listening: the policy decides, no traceback logged."""
        client, reactor = self.client()
        d = self.start(client)
        _, _, factory, _, _ = reactor.tcpClients[-1]
        with capturedLogs() as events:
            connector = reactor.connectors[-1]
            factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
            reactor.advance(1)
        self.assertEqual(self.successResultOf(d), Verdict())
        self.assertEqual(
            [(e["reason"], e.get("log_failure")) for e in events if "reason" in e],
            [("cannot connect (ConnectionRefusedError)", None)],
        )

    def test_timeout(self) -> None:
        """No answer within ``timeout``: the request is cancelled (the
        connection aborted) and the policy decides."""
        client, reactor = self.client("tempfail")
        d = self.start(client)
        _, transport = self.connect(reactor)
        reactor.advance(4.9)
        self.assertNoResult(d)
        with capturedLogs() as events:
            reactor.advance(0.2)
        self.assertEqual(self.failureResultOf(d, Refused).value.code, 451)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(
            [e["reason"] for e in events if "reason" in e], ["no answer in time"]
        )
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_connection_lost(self) -> None:
        """rspamd closing the connection mid-answer is a failure like any."""
        client, reactor = self.client()
        d = self.start(client)
        protocol, _ = self.connect(reactor)
        with capturedLogs() as events:
            protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
            protocol.connectionLost(Failure(ConnectionRefusedError()))
        self.assertEqual(self.successResultOf(d), Verdict())
        self.assertEqual(
            [e["reason"] for e in events if "reason" in e],
            ["connection lost while reading the answer"],
        )

    def test_closed_before_answer_retried_once(self) -> None:
        """A connection closed before any answer (a kept-alive one rspamd
        had just closed) is retried once on a new connection; a second
        such close is a failure."""
        client, reactor = self.client()
        d = self.start(client)
        protocol, _ = self.connect(reactor)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(reactor.tcpClients), 2)
        protocol, _ = self.connect(reactor)
        self.respond(protocol, b"200 OK", answer_json())
        self.assertEqual(self.successResultOf(d).folder, "Inbox")

        d = self.start(client)
        for _ in range(2):
            protocol, _ = self.connect(reactor)
            with capturedLogs() as events:
                protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.successResultOf(d), Verdict())
        self.assertEqual(len(reactor.tcpClients), 4)
        self.assertEqual(
            [e["reason"] for e in events if "reason" in e],
            ["connection closed before an answer"],
        )
