"""Stock ``twistd mail`` with TCP_NODELAY on its POP3 connections.

Run: ZBENCH_MAIL_ARGS='["--pop3", "ssl:...", ...]' \
     ZBENCH_MAIL_USERS='{"user": "password"}' twistd -n -y THIS_FILE

Without TCP_NODELAY, twisted.mail's POP3 writes a RETR as several small
segments and Nagle waits for the client's delayed ACK (~40 ms on Linux,
up to ~880 ms measured per small RETR), which would measure the TCP stack,
not the server. Besides ``connectionMade``, three Python 3 bugs of stock
``twistd mail`` are worked around (see below) so that it runs at all;
everything else is the ``twistd mail`` plugin's own code (twisted.mail.tap).
"""

import json
import os

from twisted.application import service
from twisted.mail import maildir, protocols, tap


class NoDelayPOP3(protocols.VirtualPOP3):
    """VirtualPOP3 with Nagle's algorithm off on the TCP socket."""

    def connectionMade(self):  # noqa: N802 - Twisted API
        # Through TLS, ``transport`` is a TLSMemoryBIOProtocol, which passes
        # unknown attributes on to the TCP transport below it.
        self.transport.setTcpNoDelay(True)
        super().connectionMade()


protocols.POP3Factory.protocol = NoDelayPOP3


def _get_message_binary(self, i):
    """MaildirMailbox.getMessage opens the file in text mode, which breaks
    every RETR on Python 3 (POP3 transforms bytes): open it in binary."""
    return open(self.list[i], "rb")


maildir.MaildirMailbox.getMessage = _get_message_binary

options = tap.Options()
options.parseOptions(json.loads(os.environ["ZBENCH_MAIL_ARGS"]))
# ``--user`` is broken on Python 3 (it passes str keys to DirDBM), so users
# come from ZBENCH_MAIL_USERS ({"local part": "password"}) through the same
# addUser the option would call.
# Likewise ``--maildirdbmdomain`` registers the domain under a str name while
# POP3 logins look it up as bytes: register it under bytes too.
for name in list(options.service.domains):
    if isinstance(name, str):
        options.service.addDomain(name.encode(), options.service.domains[name])
for user, password in json.loads(os.environ.get("ZBENCH_MAIL_USERS", "{}")).items():
    options.last_domain.addUser(user.encode(), password.encode())
application = service.Application("twistd mail (TCP_NODELAY)")
tap.makeService(options).setServiceParent(application)
