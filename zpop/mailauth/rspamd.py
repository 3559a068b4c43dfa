"""rspamd as the MX's spam filter (DESIGN §1 "Mail authentication and spam
filtering"): each message goes to rspamd's normal worker over its HTTP
protocol (``POST /checkv2``, the envelope in request headers) before the
``250``, and rspamd's action decides: ``reject`` refuses it (``550
5.7.1``), ``add header``/``rewrite subject`` file it in Spam, ``soft
reject``/``greylist`` defer it (``451 4.7.1``), ``no action`` files it in
the Inbox. The score and symbols are recorded in an ``X-Spam-Status``
field. When rspamd cannot answer (down, slow, an HTTP error, an answer
that is not rspamd's JSON) ``[spam] fail_policy`` decides, with one log
line and no traceback.

The pieces that decide are pure functions (``request_headers``,
``parse_answer``, ``verdict_for``, ``status_field``, ``failed``) so that
they are tested without a socket; ``RspamdClient`` only moves bytes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.error import ConnectError, TimeoutError
from twisted.internet.interfaces import IConsumer, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    ResponseFailed,
    ResponseNeverReceived,
    _HTTP11ClientFactory,
    readBody,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from zpop.config import SpamConfig
from zpop.mailauth.verdict import InboundMessage, Refused, Verdict

log = Logger(namespace="zpop.mailauth.rspamd")

#: The field that records rspamd's verdict on a stored message. An
#: incoming field of this name is a sender's claim, not ours: it is removed
#: (``without_status_fields``) before ours is prepended.
STATUS_FIELD = "X-Spam-Status"

#: Longest line of a folded field, CRLF aside (RFC 5322 §2.1.1 "SHOULD").
FOLD_COLUMNS = 78

#: Symbols recorded in the field at most (the highest scores first); rspamd
#: usually reports a dozen or two.
MAX_SYMBOLS = 40

#: Longest symbol name recorded (longer ones are cut).
MAX_SYMBOL_NAME = 60

#: rspamd's actions (JSON spelling, with "_" read as " ") -> what they do:
#: a folder, or the SMTP refusal.
SPAM_ACTIONS = frozenset({"add header", "rewrite subject", "quarantine", "discard"})
DEFER_ACTIONS = frozenset({"soft reject", "greylist"})

#: A symbol name as recorded: rspamd's are upper-case ASCII words; anything
#: else (a custom rule's odd name) is replaced, so no CR, LF or "(" gets in.
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.:-]")
#: What a request header value may carry (no controls, so no CR or LF).
_UNSAFE_VALUE = re.compile(r"[\x00-\x1f\x7f]")


class RspamdError(Exception):
    """rspamd gave no usable answer; the text says why, for the log."""


@dataclass(frozen=True)
class Answer:
    """What zpop uses of rspamd's ``/checkv2`` JSON answer."""

    #: rspamd's action, lower case, "_" as " " ("no action", "add header").
    action: str
    #: The message's score and the score that makes it spam (None: absent).
    score: float | None = None
    required_score: float | None = None
    #: (symbol, score) pairs, highest score first, names sanitised.
    symbols: tuple[tuple[str, float], ...] = ()

    @property
    def spam(self) -> bool:
        """Whether rspamd said anything but "no action"."""
        return self.action != "no action"


def _header_value(text: str) -> bytes:
    """``text`` as a request header value: UTF-8, controls removed (an
    SMTPUTF8 address stays readable, a CR/LF cannot end the header)."""
    return _UNSAFE_VALUE.sub("", text).encode("utf-8")


def request_headers(
    message: InboundMessage, password: str | None
) -> dict[bytes, list[bytes]]:
    """rspamd's request headers for ``message`` (its protocol documentation,
    "Rspamd HTTP request"): the client's IP, its HELO, the envelope sender
    (``<>`` for the null sender) and one ``Rcpt`` per recipient, the queue
    id for rspamd's log, and the ``Password`` rspamd may demand."""
    headers: dict[bytes, list[bytes]] = {
        b"From": [_header_value(message.sender or "<>")],
        b"Rcpt": [_header_value(r) for r in message.recipients],
    }
    if message.client:
        headers[b"IP"] = [_header_value(message.client)]
    if message.helo:
        headers[b"Helo"] = [_header_value(message.helo)]
    if message.queue_id:
        headers[b"Queue-Id"] = [_header_value(message.queue_id)]
    if password:
        headers[b"Password"] = [_header_value(password)]
    return headers


def _number(value: Any) -> float | None:
    """A finite JSON number, else None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _symbol_name(name: str) -> str:
    return _UNSAFE_NAME.sub("_", name)[:MAX_SYMBOL_NAME] or "_"


def parse_answer(code: int, body: bytes) -> Answer:
    """rspamd's answer to ``/checkv2``: HTTP status ``code`` and ``body``.

    Raises RspamdError for anything but a ``200`` with a JSON object
    naming a string action; the score, required score and symbols are
    taken when they have the expected shape and ignored otherwise.
    """
    if code != 200:
        raise RspamdError(f"HTTP status {code}")
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise RspamdError(f"answer is not JSON ({e.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise RspamdError("answer is not a JSON object")
    action = data.get("action")
    if not isinstance(action, str) or not action.strip():
        raise RspamdError("answer has no action")
    symbols: list[tuple[str, float]] = []
    raw = data.get("symbols")
    if isinstance(raw, dict):
        for name, about in raw.items():
            score = _number(about.get("score")) if isinstance(about, dict) else None
            symbols.append((_symbol_name(name), 0.0 if score is None else score))
    symbols.sort(key=lambda s: (-s[1], s[0]))
    return Answer(
        action=action.strip().lower().replace("_", " "),
        score=_number(data.get("score")),
        required_score=_number(data.get("required_score")),
        symbols=tuple(symbols),
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _fold(name: str, tokens: list[str]) -> bytes:
    """``name: tokens...`` folded between tokens to at most FOLD_COLUMNS
    columns (a token is never split), CRLF-terminated."""
    lines = [f"{name}:"]
    for token in tokens:
        if len(lines[-1]) + 1 + len(token) > FOLD_COLUMNS and lines[-1].strip():
            lines.append("\t" + token)
        else:
            lines[-1] += " " + token
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _score(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def status_field(answer: Answer) -> bytes:
    """The ``X-Spam-Status`` field recording ``answer``, e.g.::

        X-Spam-Status: Yes, score=7.10 required=15.00 action="add header"
            symbols=ZPOP_TEST_SPAM(7.00), MIME_GOOD(-0.10)

    ASCII only, folded to FOLD_COLUMNS (the action, quoted, is one token;
    a name rspamd would never send is replaced character by character)."""
    action = re.sub(r"[^a-z ]", "_", answer.action)
    tokens = [
        "Yes," if answer.spam else "No,",
        f"score={_score(answer.score)}",
        f"required={_score(answer.required_score)}",
        f'action="{action}"',
    ]
    shown = answer.symbols[:MAX_SYMBOLS]
    names = [f"{n}({s:.2f})" for n, s in shown]
    if len(answer.symbols) > len(shown):
        names.append(f"+{len(answer.symbols) - len(shown)}")
    if names:
        names[0] = "symbols=" + names[0]
        tokens += [n + "," for n in names[:-1]] + [names[-1]]
    return _fold(STATUS_FIELD, tokens)


def without_status_fields(body: bytes) -> bytes:
    """``body`` (CRLF) without any ``X-Spam-Status`` field in its header:
    one arriving from outside is the sender's claim, and would sit below
    ours looking like it. Everything else is kept byte for byte."""
    end = body.find(b"\r\n\r\n")
    # No blank line: all header, up to its last CRLF.
    end = end + 2 if end >= 0 else body.rfind(b"\r\n") + 2
    if not re.search(rb"(?im)^x-spam-status[ \t]*:", body[:end]):
        return body
    kept: list[bytes] = []
    dropping = False
    for line in body[:end].split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        dropping = name == STATUS_FIELD.lower().encode("ascii")
        if not dropping:
            kept.append(line)
    return b"".join(line + b"\r\n" for line in kept) + body[end:]


def verdict_for(answer: Answer) -> Verdict:
    """What rspamd's ``answer`` means for the message (DESIGN §1): a
    Verdict with the Inbox or Spam and the status field, or Refused.

    ``quarantine`` and ``discard`` (actions some rspamd setups add) file
    the message in Spam: zpop never drops accepted mail silently. An
    unknown action is an unusable answer (RspamdError)."""
    if answer.action == "reject":
        raise Refused(550, "5.7.1", "message refused as spam")
    if answer.action in DEFER_ACTIONS:
        raise Refused(451, "4.7.1", "message deferred by the spam filter, try later")
    if answer.action in SPAM_ACTIONS:
        return Verdict(folder="Spam", fields=status_field(answer))
    if answer.action == "no action":
        return Verdict(folder="Inbox", fields=status_field(answer))
    raise RspamdError(f"unknown action {answer.action[:40]!r}")


def failed(policy: str, reason: str, message: InboundMessage, url: str) -> Verdict:
    """The verdict when rspamd gave no usable answer: ``accept`` leaves the
    folder to the upstream ``X-Spam-Flag`` rule (Verdict with no folder),
    ``tempfail`` defers the message (``451 4.7.1``); either way one log
    line says why."""
    log.warn(
        "rspamd at {url} failed for {queue_id}: {reason}; fail_policy={policy}",
        url=url,
        queue_id=message.queue_id or "-",
        reason=reason,
        policy=policy,
    )
    if policy == "tempfail":
        raise Refused(451, "4.7.1", "spam filter unavailable, try again later")
    return Verdict()


def read_password(path: str) -> str:
    """The first line of ``path`` (rspamd's password), read once at start.
    Raises OSError, or ValueError for an empty first line."""
    with open(path, encoding="utf-8") as f:
        password = f.readline().strip()
    if not password:
        raise ValueError(f"{path}: the first line (rspamd's password) is empty")
    return password


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body already in memory, written at once (FileBodyProducer
    would need the global cooperator)."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body) if body else UNKNOWN_LENGTH

    def startProducing(self, consumer: IConsumer) -> Deferred:  # noqa: N802
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def resumeProducing(self) -> None:  # noqa: N802
        pass

    def stopProducing(self) -> None:  # noqa: N802
        pass


class _QuietFactory(_HTTP11ClientFactory):
    """Upstream's connection factory logs "Starting/Stopping factory" for
    every connection: two lines per message, as rspamd closes each one."""

    noisy = False


class _QuietPool(HTTPConnectionPool):
    """HTTPConnectionPool whose connections do not log (_QuietFactory)."""

    _factory = _QuietFactory


@implementer(IAgentEndpointFactory)
class _Endpoints:
    """TCP straight to an address literal (rspamd is usually configured by
    address): Agent's HostnameEndpoint would resolve it in a thread for
    every request."""

    def __init__(self, reactor: Any, timeout: float) -> None:
        self._reactor = reactor
        self._timeout = timeout

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:  # noqa: N802
        host = uri.host.decode("ascii").strip("[]")
        if isIPAddress(host):
            return TCP4ClientEndpoint(self._reactor, host, uri.port, self._timeout)
        if isIPv6Address(host):
            return TCP6ClientEndpoint(self._reactor, host, uri.port, self._timeout)
        return HostnameEndpoint(self._reactor, uri.host, uri.port, self._timeout)


def _timed_out(result: object, timeout: float) -> NoReturn:
    """Whatever the cancelled request failed with, it was the timeout."""
    raise TimeoutError(f"{timeout:g} s")


def _reason(failure: BaseException) -> str:
    """A log line's worth of why the exchange failed (no traceback)."""
    if isinstance(failure, RspamdError):
        return str(failure)
    if isinstance(failure, TimeoutError | CancelledError):
        return "no answer in time"
    if isinstance(failure, ConnectError):
        return f"cannot connect ({failure.__class__.__name__})"
    if isinstance(failure, ResponseNeverReceived):
        return "connection closed before an answer"
    if isinstance(failure, ResponseFailed):
        return "connection lost while reading the answer"
    return f"{failure.__class__.__name__}: {str(failure)[:200]}"


class RspamdClient:
    """The MX's spam filter (zpop.mailauth.inbound.SpamFilter): one per
    process, sharing a pool of HTTP connections to rspamd."""

    def __init__(self, reactor: Any, config: SpamConfig, password: str | None) -> None:
        self._reactor = reactor
        self._config = config
        self._password = password
        self._url = config.rspamd.rstrip("/") + "/checkv2"
        self._pool = _QuietPool(reactor, persistent=True)
        # Room for the MX's concurrent messages when rspamd keeps
        # connections open.
        self._pool.maxPersistentPerHost = 16
        self._agent = Agent.usingEndpointFactory(
            reactor, _Endpoints(reactor, config.timeout), pool=self._pool
        )

    async def check(
        self, message: InboundMessage, authentication_results: bytes
    ) -> Verdict:
        """rspamd's verdict on ``message``; raises Refused to refuse it.

        rspamd sees the message as it will be stored: with our
        ``authentication_results`` field on top (its protocol has no request
        header for them), so rules on ``Authentication-Results`` apply."""
        body = authentication_results + message.body
        headers = request_headers(message, self._password)
        try:
            code, answer = await self._exchange(body, headers).addTimeout(
                self._config.timeout, self._reactor, onTimeoutCancel=_timed_out
            )
            parsed = parse_answer(code, answer)
            return verdict_for(parsed)
        except Refused:
            raise
        except Exception as e:  # noqa: BLE001 - every failure is the policy's
            return failed(self._config.fail_policy, _reason(e), message, self._url)

    def _exchange(
        self, body: bytes, headers: Mapping[bytes, list[bytes]]
    ) -> Deferred[tuple[int, bytes]]:
        """Fires with (status code, answer body); cancelling it aborts."""
        return Deferred.fromCoroutine(self._post(body, headers))

    async def _post(
        self, body: bytes, headers: Mapping[bytes, list[bytes]]
    ) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                response = await self._agent.request(
                    b"POST",
                    self._url.encode("ascii"),
                    Headers(dict(headers)),
                    _BytesProducer(body),
                )
                break
            except ResponseNeverReceived as e:
                # A kept-alive connection rspamd closed as we reused it:
                # nothing was scanned, so once more on a new one (not when
                # the timeout cancelled the request).
                if attempt == 2 or any(r.check(CancelledError) for r in e.reasons):
                    raise
        answer: bytes = await readBody(response)
        return response.code, answer

    def close(self) -> Deferred:
        """Close the kept-alive connections (at shutdown)."""
        closed: Deferred = self._pool.closeCachedConnections()
        return closed
