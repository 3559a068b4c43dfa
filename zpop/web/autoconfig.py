"""Mail clients that configure themselves (DESIGN §1 "Client
autoconfiguration"), on the ``web`` listener:

- Thunderbird's autoconfig, ``GET /.well-known/autoconfig/mail/config-v1.1.xml``
  and ``GET /mail/config-v1.1.xml`` with ``?emailaddress=`` (the ISPDB
  ``clientConfig`` 1.1 format);
- Outlook's POX Autodiscover, ``POST /autodiscover/autodiscover.xml`` (either
  casing): a ``requestschema/2006`` request, a ``responseschema/2006a`` answer;
- the MTA-STS policy (RFC 8461) at ``/.well-known/mta-sts.txt`` on
  ``mta-sts.<hosted domain>``;
- a signed-in user's Apple profile, ``GET /settings/apple-profile``.

The first three answer anyone, so they depend on the domain alone: no
account is looked up, an address of a hosted domain gets the same answer
whether or not it exists, and an unhosted domain and a malformed address
get the same refusal. Documents are built with ElementTree and plistlib,
never by pasting request text into markup; requests are parsed with
defusedxml (no DTD, no entities).

POP deletion ``keep`` ("leave messages on the server") has no key in
Apple's ``com.apple.mail.managed`` payload (its key list has none for POP
deletion), so the profile cannot carry it; it needs none either: with
``keep`` a POP client's delete leaves the message in its folder on the
server (DESIGN §1), whatever the client does. Nor does the profile carry a
password: an unsigned, unencrypted profile must not, so the device asks
for it when the profile is installed.
"""

from __future__ import annotations

import datetime
import plistlib
import uuid
import xml.etree.ElementTree as ET
import zlib
from typing import Any

import defusedxml
import defusedxml.ElementTree

from zpop.accounts import settings
from zpop.accounts.accounts import require_account
from zpop.accounts.client_settings import (
    IMPLICIT,
    ClientSettings,
    MailServer,
    domain_settings,
    imap_served,
    settings_for,
)
from zpop.accounts.dns_records import mta_sts_policy
from zpop.accounts.domains import require_hosted
from zpop.accounts.errors import NotHosted
from zpop.web.clients import password_hint
from zpop.web.i18n import LANGUAGES, MESSAGES
from zpop.web.pages import message_page
from zpop.web.visit import Response, Visit
from zpop.wire.addresses import domain_of, parse_address, parse_domain

#: Outlook's POX Autodiscover namespaces.
REQUEST_NS = (
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
)
RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_NS = (
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)

XML = b"application/xml; charset=utf-8"
TEXT = b"text/plain; charset=utf-8"
MOBILECONFIG = b"application/x-apple-aspen-config"

#: One refusal for an unhosted domain and a malformed address alike.
NOT_FOUND = b"No mail settings are published for that address.\n"

#: Thunderbird's words for how a port is secured.
_SOCKET_TYPES = {"implicit": "SSL", "starttls": "STARTTLS"}
#: Outlook's protocol names.
_POX_TYPES = {"pop3": "POP3", "imap": "IMAP", "smtp": "SMTP"}
#: Apple's account types.
_APPLE_TYPES = {"pop3": "EmailTypePOP", "imap": "EmailTypeIMAP"}


class BadRequest(Exception):
    """A body that is not an Outlook POX Autodiscover request."""


def _xml(root: ET.Element, status: int = 200) -> Response:
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return Response(status=status, raw=body, headers=[(b"content-type", XML)])


def _not_found() -> Response:
    return Response(status=404, raw=NOT_FOUND, headers=[(b"content-type", TEXT)])


def _add(parent: ET.Element, tag: str, text: str, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    element.text = text
    return element


def _domain_of_address(text: str | None) -> str | None:
    """The domain of a well-formed address, or None."""
    if text is None:
        return None
    try:
        return domain_of(parse_address(text.strip()))
    except ValueError:
        return None


async def _settings(visit: Visit, domain: str | None) -> ClientSettings | None:
    """The domain's client settings, or None when it is not hosted."""
    if domain is None:
        return None
    try:
        found: ClientSettings = await domain_settings(
            visit.web.store, visit.web.config, domain
        )
    except NotHosted:
        return None
    return found


# Thunderbird


def _query_domain(visit: Visit) -> str | None:
    """The domain of ``?emailaddress=``; without one, the domain of an
    ``autoconfig.<domain>`` Host (the name clients try first)."""
    values = visit.request.args.get(b"emailaddress")
    if values:
        if len(values) > 1:
            return None
        try:
            return _domain_of_address(values[0].decode("utf-8"))
        except UnicodeDecodeError:
            return None
    host = _host(visit)
    if host is not None and host.startswith("autoconfig."):
        return _parsed_domain(host.removeprefix("autoconfig."))
    return None


def thunderbird_document(clients: ClientSettings, web_url: str) -> ET.Element:
    """The ``clientConfig`` version 1.1 document of a domain (the format of
    Thunderbird's ISPDB: servers in order of preference, the full address
    as user name, where to enable POP and where to read about it)."""
    domain = clients.domain
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    _add(provider, "domain", domain)
    _add(provider, "displayName", domain)
    _add(provider, "displayShortName", domain)
    for kind, servers in (
        ("incomingServer", clients.incoming),
        ("outgoingServer", clients.outgoing),
    ):
        for server in servers:
            element = ET.SubElement(provider, kind, type=server.protocol)
            _add(element, "hostname", server.host)
            _add(element, "port", str(server.port))
            _add(element, "socketType", _SOCKET_TYPES[server.tls])
            _add(element, "username", "%EMAILADDRESS%")
            _add(element, "authentication", "password-cleartext")
    pop_page = f"{web_url}/settings/pop"
    enable = ET.SubElement(provider, "enable", visiturl=pop_page)
    for index, language in enumerate(LANGUAGES):
        _add(enable, "instruction", MESSAGES["auto_enable"][index], lang=language)
    documentation = ET.SubElement(provider, "documentation", url=pop_page)
    for index, language in enumerate(LANGUAGES):
        _add(
            documentation, "descr", MESSAGES["auto_documentation"][index], lang=language
        )
    return root


async def thunderbird(visit: Visit) -> Response:
    """``GET /.well-known/autoconfig/mail/config-v1.1.xml`` and
    ``GET /mail/config-v1.1.xml``."""
    clients = await _settings(visit, _query_domain(visit))
    if clients is None:
        return _not_found()
    return _xml(thunderbird_document(clients, visit.web.config.web_url))


# Outlook


def read_pox_request(body: bytes) -> str:
    """The ``EMailAddress`` of an Outlook POX request asking for the
    ``2006a`` response schema; BadRequest for anything else (not XML, a
    DTD or entity, another schema)."""
    try:
        root = defusedxml.ElementTree.fromstring(body, forbid_dtd=True)
    except (ET.ParseError, defusedxml.DefusedXmlException, ValueError, LookupError):
        raise BadRequest("not XML") from None
    if root.tag != f"{{{REQUEST_NS}}}Autodiscover":
        raise BadRequest("not an Autodiscover request")
    request = root.find(f"{{{REQUEST_NS}}}Request")
    if request is None:
        raise BadRequest("no Request")
    address = request.find(f"{{{REQUEST_NS}}}EMailAddress")
    schema = request.find(f"{{{REQUEST_NS}}}AcceptableResponseSchema")
    if address is None or schema is None or (schema.text or "").strip() != OUTLOOK_NS:
        raise BadRequest("not the outlook response schema 2006a")
    return address.text or ""


def _pox_error(
    clients_ns: str, code: str, message: str, now: float, host: str
) -> ET.Element:
    """An Autodiscover error document (Error: Time, Id, ErrorCode, Message,
    DebugData); Id is a hash of this server's name, as Exchange's is."""
    root = ET.Element("Autodiscover", xmlns=RESPONSE_NS)
    response = ET.SubElement(root, "Response", xmlns=clients_ns)
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    error = ET.SubElement(
        response,
        "Error",
        Time=moment.strftime("%H:%M:%S.%f"),
        Id=str(zlib.crc32(host.encode("utf-8"))),
    )
    _add(error, "ErrorCode", code)
    _add(error, "Message", message)
    ET.SubElement(error, "DebugData")
    return root


def outlook_document(clients: ClientSettings, address: str) -> ET.Element:
    """The ``responseschema/2006a`` settings of a domain for ``address``
    (its LoginName, the only part that is the request's). Implicit TLS is
    ``SSL on``; STARTTLS is ``SSL off`` with ``Encryption TLS``, so a client
    that reads only ``SSL`` never starts a handshake on a port that greets
    in plain text."""
    root = ET.Element("Autodiscover", xmlns=RESPONSE_NS)
    response = ET.SubElement(root, "Response", xmlns=OUTLOOK_NS)
    account = ET.SubElement(response, "Account")
    _add(account, "AccountType", "email")
    _add(account, "Action", "settings")
    for server in (*clients.incoming, *clients.outgoing):
        protocol = ET.SubElement(account, "Protocol")
        _add(protocol, "Type", _POX_TYPES[server.protocol])
        _add(protocol, "Server", server.host)
        _add(protocol, "Port", str(server.port))
        _add(protocol, "DomainRequired", "off")
        _add(protocol, "LoginName", address)
        _add(protocol, "SPA", "off")
        if server.tls == IMPLICIT:
            _add(protocol, "SSL", "on")
        else:
            _add(protocol, "SSL", "off")
            _add(protocol, "Encryption", "TLS")
        _add(protocol, "AuthRequired", "on")
        if server.protocol == "smtp":
            _add(protocol, "UsePOPAuth", "off")
            _add(protocol, "SMTPLast", "off")
    return root


def _body(request: Any) -> bytes:
    content = getattr(request, "content", None)
    if content is None:
        return b""
    content.seek(0)
    return bytes(content.read())


async def outlook(visit: Visit) -> Response:
    """``POST /autodiscover/autodiscover.xml`` (and ``/Autodiscover/...``):
    400 with error 600 for a body that is not a POX request; error 500
    ("can't be found") for an unhosted domain or a malformed address."""
    now, host = visit.web.clock.seconds(), visit.web.config.hosts.web
    try:
        text = read_pox_request(_body(visit.request))
    except BadRequest:
        return _xml(_pox_error(RESPONSE_NS, "600", "Invalid Request", now, host), 400)
    domain = _domain_of_address(text)
    clients = await _settings(visit, domain)
    if clients is None:
        return _xml(
            _pox_error(
                OUTLOOK_NS, "500", "The email address can't be found.", now, host
            )
        )
    return _xml(outlook_document(clients, parse_address(text.strip())))


# MTA-STS


def _host(visit: Visit) -> str | None:
    """The request's Host name, lower-case, without port or final dot."""
    host = visit.header(b"host")
    if host is None or host.startswith("["):
        return None
    return host.strip().lower().partition(":")[0].rstrip(".")


def _parsed_domain(text: str) -> str | None:
    try:
        return parse_domain(text)
    except ValueError:
        return None


async def mta_sts(visit: Visit) -> Response:
    """``GET /.well-known/mta-sts.txt`` on ``mta-sts.<hosted domain>``: the
    policy ``zpop domain dns`` publishes the id of; 404 on any other host."""
    host = _host(visit)
    if host is None or not host.startswith("mta-sts."):
        return _not_found()
    domain = _parsed_domain(host.removeprefix("mta-sts."))
    if domain is None:
        return _not_found()
    try:
        await require_hosted(visit.web.store, domain)
    except NotHosted:
        return _not_found()
    policy = mta_sts_policy(visit.web.config).encode("ascii")
    return Response(raw=policy, headers=[(b"content-type", TEXT)])


# Apple


def _profile_uuid(web_url: str, address: str, part: str) -> str:
    """A UUID stable per account and part, so downloading the profile again
    replaces the installed one instead of adding a second account."""
    name = f"{web_url}/settings/apple-profile?account={address}#{part}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name)).upper()


def apple_profile_document(
    incoming: MailServer,
    outgoing: MailServer,
    address: str,
    web_url: str,
    web_host: str,
    title: str,
    description: str,
) -> dict[str, Any]:
    """A configuration profile with one ``com.apple.mail.managed`` payload
    (the keys of Apple's Mail payload reference), without a password."""
    identifier = ".".join(reversed(web_host.split("."))) + ".zpop.mail"
    account_id = _profile_uuid(web_url, address, "profile")
    mail = {
        "EmailAccountDescription": address,
        "EmailAccountType": _APPLE_TYPES[incoming.protocol],
        "EmailAddress": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": incoming.host,
        "IncomingMailServerPortNumber": incoming.port,
        "IncomingMailServerUseSSL": incoming.tls == IMPLICIT,
        "IncomingMailServerUsername": address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": outgoing.host,
        "OutgoingMailServerPortNumber": outgoing.port,
        "OutgoingMailServerUseSSL": outgoing.tls == IMPLICIT,
        "OutgoingMailServerUsername": address,
        "OutgoingPasswordSameAsIncomingPassword": True,
        "PayloadDisplayName": address,
        "PayloadIdentifier": f"{identifier}.{account_id}.account",
        "PayloadType": "com.apple.mail.managed",
        "PayloadUUID": _profile_uuid(web_url, address, "mail"),
        "PayloadVersion": 1,
    }
    return {
        "PayloadContent": [mail],
        "PayloadDescription": description,
        "PayloadDisplayName": title,
        "PayloadIdentifier": f"{identifier}.{account_id}",
        "PayloadOrganization": web_host,
        "PayloadRemovalDisallowed": False,
        "PayloadType": "Configuration",
        "PayloadUUID": account_id,
        "PayloadVersion": 1,
    }


async def apple_profile(visit: Visit) -> Response:
    """``GET /settings/apple-profile``: a ``.mobileconfig`` for the signed-in
    account, following its settings. IMAP when it is served and on (a phone
    beside other clients wants one shared view of the mailbox), else POP
    when it is on; one account only, so Mail does not show the mailbox
    twice. Neither: a page saying what to turn on."""
    t = visit.t
    web = visit.web
    config = web.config
    account = await require_account(web.store, visit.address)
    clients = settings_for(config, account.domain, account.organization)
    blocked = settings.blocked_since(account, config.accounts) is not None
    incoming = None
    if imap_served(config) and account.imap_enabled and not blocked:
        incoming = clients.server("imap")
    elif account.pop.enabled and not blocked:
        incoming = clients.server("pop3")
    if incoming is None:
        return message_page(visit, 409, t("ap_unavailable_title"), t("ap_unavailable"))
    password = password_hint(t, account)
    address = account.address
    document = apple_profile_document(
        incoming,
        clients.outgoing[0],
        address,
        config.web_url,
        config.hosts.web,
        t("ap_title", address=address),
        t("ap_description", address=address, password=password),
    )
    disposition = f'attachment; filename="{account.domain}.mobileconfig"'
    return Response(
        raw=plistlib.dumps(document, fmt=plistlib.FMT_XML),
        headers=[
            (b"content-type", MOBILECONFIG),
            (b"content-disposition", disposition.encode("ascii")),
        ],
    )
