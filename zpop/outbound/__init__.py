"""The outbound relay: queued mail for other domains, delivered over SMTP.

One module per concept, each importing only from those listed before it
(``client`` names ``routing.Hop`` in annotations only):

- ``tls``: opportunistic and verified TLS for the client, trust loading;
- ``client``: the SMTP client (``RelayClient``), the dialogue of one
  connection carrying many messages (``ClientSession``), replies and
  ``DeliveryError`` (the body's wire encoding is ``zpop.wire.dotstuff``);
- ``routing``: the next hop of a domain (``Router``, ``Hop``): routes, the
  smart host, MX/A/AAAA, null MX;
- ``retry``: what a reply or an error means for a recipient, and the
  back-off (``outcome``, ``retry_delay``);
- ``dsn``: the bounce of a failed message (RFC 3464);
- ``service``: the scheduler (``OutboundService``): leases, per-domain
  grouping, connection limits, finishing messages.

The names other parts of zpop use are re-exported here.
"""

from zpop.outbound.client import (
    MAX_REPLY_LINE,
    MAX_REPLY_LINES,
    ClientSession,
    Deliverer,
    DeliveryError,
    RelayClient,
    RemoteReply,
)
from zpop.outbound.retry import outcome, retry_delay
from zpop.outbound.routing import Hop, Router
from zpop.outbound.service import OutboundService

__all__ = [
    "MAX_REPLY_LINE",
    "MAX_REPLY_LINES",
    "ClientSession",
    "Deliverer",
    "DeliveryError",
    "Hop",
    "OutboundService",
    "RelayClient",
    "RemoteReply",
    "Router",
    "outcome",
    "retry_delay",
]
