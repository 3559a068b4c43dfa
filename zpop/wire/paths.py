"""SMTP paths: the mailbox inside the brackets of MAIL FROM and RCPT TO.

Built from the one address grammar (``zpop.wire.addresses``) plus what
paths add: quoted local parts, single-label hosts, and the refusal of the
forms open-relay scanners use.
"""

from __future__ import annotations

import re

from zpop.wire import addresses

# The atext and labels of zpop.wire.addresses; paths also allow the
# routing characters (to name them as tricks) and single-label hosts.
_DOT_ATOM = re.compile(addresses.dot_atom(addresses.ATEXT).encode("ascii"))
_QUOTED = re.compile(rb'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
_LABEL = addresses.LABEL.encode("ascii")
_DOMAIN = re.compile(_LABEL + rb"(?:\." + _LABEL + rb")*")
_ROUTING = [c.encode("ascii") for c in addresses.ROUTING_CHARACTERS]


class AddressError(ValueError):
    """Not an address zpop accepts; ``trick`` marks open-relay tricks."""

    def __init__(self, reason: str, trick: bool = False) -> None:
        super().__init__(reason)
        self.trick = trick


def parse_path(text: bytes) -> str:
    """The mailbox in an SMTP path's brackets, as ``local@domain``.

    The domain is lower-cased. Raises AddressError, with ``trick`` set for
    the forms open-relay scanners use to route mail through a server that
    only checks the last domain: source routes (``@a:u@b``), %-hacks
    (``u%b@a``), bang paths (``b!u@a``), a quoted or second ``@``
    (``"u@b"@a``, ``u@b@a``) and address literals (``u@[192.0.2.1]``).
    """
    if text.startswith(b"@"):
        raise AddressError("source route", trick=True)
    if text.startswith(b'"'):
        match = _QUOTED.match(text)
        if match is None:
            raise AddressError("unbalanced quotes")
        local = match.group(0)
        rest = text[match.end() :]
        if any(c in local for c in (b"@", *_ROUTING)):
            raise AddressError("quoted routing characters", trick=True)
    else:
        local, sep, rest = text.partition(b"@")
        rest = sep + rest
        if not _DOT_ATOM.fullmatch(local):
            raise AddressError("bad local part")
        if any(c in local for c in _ROUTING):
            raise AddressError("%-hack or bang path", trick=True)
    if not rest.startswith(b"@"):
        raise AddressError("no domain")
    domain = rest[1:]
    if b"@" in domain:
        raise AddressError("more than one @", trick=True)
    if domain.startswith(b"["):
        raise AddressError("address literal", trick=True)
    if not _DOMAIN.fullmatch(domain) or len(domain) > addresses.MAX_DOMAIN:
        raise AddressError("bad domain")
    if len(local) > addresses.MAX_LOCAL_PART:
        raise AddressError("local part too long")
    return local.decode("ascii") + "@" + domain.decode("ascii").lower()
