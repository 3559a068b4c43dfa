"""Connection limits: per client address and in total, per listener.

A client over the limit is told so in its protocol's words and closed
before any protocol code runs, so one address flooding a listener cannot
take the sessions of everyone else.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory

from zpop import metrics

log = Logger()

#: What each protocol says to a refused connection.
REFUSALS = {
    "POP3": b"-ERR [SYS/TEMP] Too many connections, try again later\r\n",
    "IMAP": b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n",
    "SMTP": b"421 4.7.0 Too many connections, try again later\r\n",
    "HTTP": (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
        b"Connection: close\r\nRetry-After: 30\r\n\r\n"
    ),
}


class _Refuse(Protocol):
    def __init__(self, refusal: bytes) -> None:
        self._refusal = refusal

    def connectionMade(self) -> None:
        self.transport.write(self._refusal)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


def _host(addr: Any) -> str:
    return str(getattr(addr, "host", addr))


class ConnectionLimiter(WrappingFactory):
    """Wraps a listener's protocol factory and counts its live connections.

    Put it inside implicit TLS, so the refusal is readable by the client.
    ``listener`` names the listener in the connection metrics (zpop.metrics).
    """

    noisy = False

    def __init__(
        self,
        wrapped: IProtocolFactory,
        per_client: int,
        total: int,
        refusal: bytes,
        listener: str = "-",
    ) -> None:
        super().__init__(wrapped)
        self.per_client = per_client
        self.total = total
        self._refusal = refusal
        self._by_host: Counter[str] = Counter()
        self.listener = listener
        metrics.current().prepare_listener(listener)

    def buildProtocol(self, addr: Any) -> Any:
        host = _host(addr)
        if len(self.protocols) >= self.total or self._by_host[host] >= self.per_client:
            log.info(
                "connection refused client={client} reason=limit"
                " from_client={from_client} total={total}",
                client=host,
                from_client=self._by_host[host],
                total=len(self.protocols),
            )
            metrics.connection_refused(self.listener)
            return _Refuse(self._refusal)
        return super().buildProtocol(addr)

    def registerProtocol(self, p: Any) -> None:
        super().registerProtocol(p)
        self._by_host[_host(p.transport.getPeer())] += 1
        metrics.connection_opened(self.listener)

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        metrics.connection_closed(self.listener)
        host = _host(p.transport.getPeer())
        self._by_host[host] -= 1
        if self._by_host[host] <= 0:
            del self._by_host[host]
