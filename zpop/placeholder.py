"""Honest refusals for listeners whose protocol is not built yet.

A client that connects is told plainly that the service is not available,
with a response code that makes it give up rather than retry in a loop, and
is never shown a half-working protocol.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.basic import LineOnlyReceiver
from twisted.protocols.policies import TimeoutMixin

SMTP_REFUSAL = b"554 5.3.2 zpop: SMTP service not available yet\r\n"


class SMTPRefusal(LineOnlyReceiver, TimeoutMixin):
    """A ``554`` greeting, as RFC 5321 section 3.1 allows.

    The RFC says the server must then wait for QUIT, answer anything else
    with 503, and close after QUIT; an idle or over-long client is dropped.
    """

    transport: Any
    MAX_LENGTH = 1000
    timeout = 300.0

    def connectionMade(self) -> None:
        self.setTimeout(self.timeout)
        self.transport.write(SMTP_REFUSAL)

    def lineReceived(self, line: bytes) -> None:
        self.resetTimeout()
        if line.strip().upper() == b"QUIT":
            self.sendLine(b"221 2.0.0 zpop: closing connection")
            self.setTimeout(None)
            self.transport.loseConnection()
        else:
            self.sendLine(b"503 5.5.1 zpop: SMTP service not available yet")

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802 - Twisted API
        self.sendLine(b"500 5.5.2 zpop: line too long")
        self.transport.loseConnection()

    def timeoutConnection(self) -> None:
        self.sendLine(b"421 4.4.2 zpop: timeout, closing connection")
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.setTimeout(None)


class RefusalFactory(Factory):
    """Builds refusal protocols; ``reactor`` drives the SMTP idle timeout."""

    noisy = False

    protocol: Any

    def __init__(self, protocol: type[Protocol], reactor: Any, timeout: float) -> None:
        self.protocol = protocol
        self._reactor = reactor
        self._timeout = timeout

    def buildProtocol(self, addr: Any) -> Any:
        proto = self.protocol()
        proto.factory = self
        if isinstance(proto, SMTPRefusal):
            proto.callLater = self._reactor.callLater  # type: ignore[method-assign]
            proto.timeout = self._timeout
        return proto


def smtp_refusal_factory(reactor: Any, timeout: float = 300.0) -> RefusalFactory:
    """A factory for the SMTP placeholder; ``timeout`` is the idle limit."""
    return RefusalFactory(SMTPRefusal, reactor, timeout)
