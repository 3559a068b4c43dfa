"""Stock ``twistd mail`` with TCP_NODELAY on its POP3 connections.

Run: ZBENCH_MAIL_ARGS='["--pop3", "ssl:...", ...]' twistd -n -y THIS_FILE

Without TCP_NODELAY, twisted.mail's POP3 writes a RETR as several small
segments and Nagle waits for the client's delayed ACK (~40 ms on Linux,
up to ~880 ms measured per small RETR), which would measure the TCP stack,
not the server. Only ``connectionMade`` is changed; everything else is the
``twistd mail`` plugin's own code (twisted.mail.tap).
"""

import json
import os

from twisted.application import service
from twisted.mail import protocols, tap


class NoDelayPOP3(protocols.VirtualPOP3):
    """VirtualPOP3 with Nagle's algorithm off on the TCP socket."""

    def connectionMade(self):  # noqa: N802 - Twisted API
        # Through TLS, ``transport`` is a TLSMemoryBIOProtocol, which passes
        # unknown attributes on to the TCP transport below it.
        self.transport.setTcpNoDelay(True)
        super().connectionMade()


protocols.POP3Factory.protocol = NoDelayPOP3

options = tap.Options()
options.parseOptions(json.loads(os.environ["ZBENCH_MAIL_ARGS"]))
application = service.Application("twistd mail (TCP_NODELAY)")
tap.makeService(options).setServiceParent(application)
