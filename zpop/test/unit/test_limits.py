"""Connection limits per client address and in total."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from zpop.limits import REFUSALS, ConnectionLimiter


class Echo(Protocol):
    pass


def connect(limiter: ConnectionLimiter, host: str) -> tuple[Protocol, StringTransport]:
    address = IPv4Address("TCP", host, 40000)
    proto = limiter.buildProtocol(address)
    transport = StringTransport(peerAddress=address)
    proto.makeConnection(transport)
    return proto, transport


class LimiterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.limiter = ConnectionLimiter(
            Factory.forProtocol(Echo), per_client=2, total=3, refusal=REFUSALS["POP3"]
        )

    def test_per_client(self) -> None:
        """A third connection from one address is refused; others still get in."""
        for _ in range(2):
            _, transport = connect(self.limiter, "192.0.2.1")
            self.assertEqual(transport.value(), b"")
        _, refused = connect(self.limiter, "192.0.2.1")
        self.assertEqual(
            (refused.value(), refused.disconnecting),
            (b"-ERR [SYS/TEMP] Too many connections, try again later\r\n", True),
        )
        _, other = connect(self.limiter, "192.0.2.2")
        self.assertEqual((other.value(), other.disconnecting), (b"", False))

    def test_total(self) -> None:
        """Past the total, every new connection is refused."""
        for host in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
            connect(self.limiter, host)
        _, refused = connect(self.limiter, "192.0.2.4")
        self.assertTrue(refused.disconnecting)

    def test_closed_connections_free_their_place(self) -> None:
        """A closed connection no longer counts against its address."""
        first, _ = connect(self.limiter, "192.0.2.1")
        connect(self.limiter, "192.0.2.1")
        first.connectionLost(None)  # type: ignore[arg-type]
        _, transport = connect(self.limiter, "192.0.2.1")
        self.assertFalse(transport.disconnecting)
        self.assertEqual(dict(self.limiter._by_host), {"192.0.2.1": 2})
