"""The address and domain grammar: one definition for accounts, the CLI,
the config file, the login check and SMTP paths.

An account address is ``local@domain``: an RFC 5322 dot-atom local part
without "%" and "!" (the relay tricks SMTP refuses, so such an account
could never receive mail; quoted local parts are legal but no operator
needs them) at a domain of at least two LDH labels. SMTP paths
(:func:`zpop.wire.paths.parse_path`) build on the same atext and labels but
also accept quoted local parts and single-label hosts, and tell relay
tricks apart, so they have a parser of their own beside this one.

Pure functions over text: this module imports nothing of zpop.
"""

from __future__ import annotations

import re

#: RFC 5322 atext, as the body of a regular-expression character class.
ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
#: The atext characters open-relay tricks route with (%-hack, bang path).
ROUTING_CHARACTERS = "%!"
#: Atext an account's local part may use: no routing characters.
ACCOUNT_ATEXT = "".join(c for c in ATEXT if c not in ROUTING_CHARACTERS)
#: One DNS label: letters, digits, hyphens, not starting or ending with one.
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
MAX_LOCAL_PART = 64
MAX_DOMAIN = 253

#: Control characters: no address, label, password or listing holds them.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def dot_atom(atext: str) -> str:
    """A regular expression for a dot-atom over the ``atext`` class body."""
    return rf"[{atext}]+(?:\.[{atext}]+)*"


_LABEL = re.compile(LABEL)
_LOCAL_PART = re.compile(dot_atom(ACCOUNT_ATEXT))
# Deliberately loose: the store decides whether an account exists. This only
# tells a person who typed "alice" that the full address is needed.
LOGIN_NAME = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$|^[^@\s]+@localhost$")


def parse_domain(text: str) -> str:
    """A domain name, lower-cased; raises ValueError saying what is wrong."""
    name = text.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValueError("empty domain")
    if not name.isascii():
        raise ValueError(
            f"{text!r}: write an internationalised domain in its xn-- form"
        )
    if len(name) > MAX_DOMAIN:
        raise ValueError(f"{text!r}: a domain has at most {MAX_DOMAIN} characters")
    labels = name.split(".")
    if len(labels) < 2:
        raise ValueError(f"{text!r} is not a domain: it has no dot")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"{text!r} is not a valid domain: {label!r} must be 1-63 "
                "letters, digits or hyphens, not starting or ending with a hyphen"
            )
    return name


def parse_address(text: str) -> str:
    """A full account address, lower-cased; a bare local part is refused."""
    if CONTROL.search(text) or any(c.isspace() for c in text):
        raise ValueError(f"{text!r}: an address has no spaces or control characters")
    if "@" not in text:
        raise ValueError(
            f"{text!r} is not a full address: use user@domain (the login name "
            "is always the full address)"
        )
    local, _, domain = text.rpartition("@")
    if "@" in local:
        raise ValueError(f"{text!r}: an address has exactly one @")
    if not local:
        raise ValueError(f"{text!r}: the part before the @ is empty")
    if not domain.strip().rstrip("."):
        raise ValueError(f"{text!r}: the part after the @ is empty")
    if len(local) > MAX_LOCAL_PART or not _LOCAL_PART.fullmatch(local):
        raise ValueError(f"{text!r}: {local!r} is not a valid local part")
    return f"{local.lower()}@{parse_domain(domain)}"


def domain_of(address: str) -> str:
    """The domain of a parsed address."""
    return address.rpartition("@")[2]


def is_login_name(text: str) -> bool:
    """Whether a login name has the shape of a full address (the checker's
    only test before the store is asked; see ``LOGIN_NAME``)."""
    return LOGIN_NAME.match(text) is not None


def parse_configured_address(text: str) -> str:
    """A full address named in the config file (``[server] postmaster``),
    lower-cased. Only its shape is checked: it may be a mailbox of another
    server, where zpop's account grammar does not apply."""
    address = text.strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        raise ValueError("expected a full address like postmaster@example.com")
    return address
