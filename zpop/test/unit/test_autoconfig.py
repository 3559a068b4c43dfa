"""Client autoconfiguration in memory (zpop.web.autoconfig and the services
zpop.accounts.client_settings and zpop.accounts.dns_records): Thunderbird's
autoconfig, Outlook's POX Autodiscover, the MTA-STS policy and the Apple
profile through the Router over a MemoryStore, and the DNS records."""

from __future__ import annotations

import io
import plistlib
import xml.etree.ElementTree as ET
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from zpop.accounts import dns_records
from zpop.accounts.client_settings import settings_for
from zpop.accounts.errors import NotHosted
from zpop.config import LISTENERS, Config, OutboundConfig, ServerConfig
from zpop.test.stores import KEY, add_account, make_store, result
from zpop.test.unit.test_web import PASSWORD, Answer, WebCase
from zpop.threads import run_synchronously
from zpop.web import autoconfig
from zpop.web.site import Router
from zpop.web.visit import WebContext

THUNDERBIRD = "/.well-known/autoconfig/mail/config-v1.1.xml"
OUTLOOK = "/autodiscover/autodiscover.xml"
REQUEST = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/'
    'outlook/requestschema/2006"><Request><EMailAddress>{address}</EMailAddress>'
    "<AcceptableResponseSchema>{schema}</AcceptableResponseSchema></Request>"
    "</Autodiscover>"
)
SCHEMA_2006A = (
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)
RESPONSE = "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}"
OUTLOOK_NS = "{" + SCHEMA_2006A + "}"
WITH_IMAPS = {**LISTENERS, "imaps": "tcp:8993"}
#: The default listeners without IMAP: clients are offered POP alone.
POP_ONLY = {**LISTENERS, "imaps": "", "imap": ""}


def pox(address: str, schema: str = SCHEMA_2006A) -> bytes:
    return REQUEST.format(address=address, schema=schema).encode("utf-8")


def servers(root: ET.Element, kind: str) -> list[tuple[str | None, ...]]:
    """Thunderbird's servers of one kind, field by field."""
    return [
        (
            s.get("type"),
            s.findtext("hostname"),
            s.findtext("port"),
            s.findtext("socketType"),
            s.findtext("username"),
            s.findtext("authentication"),
        )
        for s in root.iter(kind)
    ]


def protocols(root: ET.Element) -> list[dict[str, str]]:
    """Outlook's Protocol elements, each as {child tag: text}."""
    account = root.find(f"{OUTLOOK_NS}Response/{OUTLOOK_NS}Account")
    assert account is not None
    return [
        {child.tag.removeprefix(OUTLOOK_NS): child.text or "" for child in p}
        for p in account.findall(f"{OUTLOOK_NS}Protocol")
    ]


class AutoconfigCase(WebCase):
    """WebCase with raw bodies, a chosen Host and a chosen configuration."""

    def configure(self, **changes: Any) -> None:
        """Rebuild the Router over the same store with a changed Config."""
        self.config = replace(self.config, **changes)
        web = WebContext(
            self.store,
            self.authenticator,
            self.clock,
            KEY,
            self.config,
            run_synchronously,
        )
        self.router = Router(web)

    def send(
        self, method: str, target: str, body: bytes = b"", host: str | None = None
    ) -> tuple[Answer, bytes]:
        """One request with a raw body; the answer and its raw bytes."""
        url = urlsplit(target)
        request = DummyRequest([s.encode() for s in url.path[1:].split("/")])
        request.method = method.encode()
        request.client = IPv4Address("TCP", "192.0.2.7", 50000)
        request.args = {}
        for pair in url.query.split("&") if url.query else []:
            key, _, value = pair.partition("=")
            request.args.setdefault(key.encode(), []).append(value.encode())
        request.content = io.BytesIO(body)
        if host is not None:
            request.requestHeaders.setRawHeaders(b"host", [host.encode()])
        if body:
            request.requestHeaders.setRawHeaders(b"content-type", [b"text/xml"])
        self.router.render(request)
        self.assertEqual(request.finished, 1)
        raw = b"".join(request.written)
        answer = Answer(
            request.responseCode or 200,
            request.responseHeaders,
            raw.decode("utf-8", "replace"),
            {},
        )
        return answer, raw


class ThunderbirdTests(AutoconfigCase):
    def test_personal_domain(self) -> None:
        """A personal domain's document with the default listeners, field by
        field: IMAP 993 SSL then POP3 995 SSL on the personal host, SMTP 465
        SSL and 587 STARTTLS, %EMAILADDRESS%, and the web settings' POP page
        to enable and read about POP."""
        answer, raw = self.send("GET", f"{THUNDERBIRD}?emailaddress=alice@example.com")
        self.assertEqual(
            (answer.status, answer.header("content-type")),
            (200, "application/xml; charset=utf-8"),
        )
        root = ET.fromstring(raw)
        provider = root.find("emailProvider")
        assert provider is not None
        self.assertEqual(
            (
                root.tag,
                root.get("version"),
                provider.get("id"),
                provider.findtext("domain"),
                provider.findtext("displayName"),
                provider.findtext("displayShortName"),
            ),
            ("clientConfig", "1.1", "example.com", "example.com", "example.com")
            + ("example.com",),
        )
        cleartext = ("%EMAILADDRESS%", "password-cleartext")
        self.assertEqual(
            servers(root, "incomingServer"),
            [
                ("imap", "pop.example.com", "993", "SSL", *cleartext),
                ("pop3", "pop.example.com", "995", "SSL", *cleartext),
            ],
        )
        self.assertEqual(
            servers(root, "outgoingServer"),
            [
                ("smtp", "smtp.example.com", "465", "SSL", *cleartext),
                ("smtp", "smtp.example.com", "587", "STARTTLS", *cleartext),
            ],
        )
        documentation = provider.find("documentation")
        enable = provider.find("enable")
        assert documentation is not None and enable is not None
        pop_page = "https://example.com:8443/settings/pop"
        self.assertEqual(
            (
                documentation.get("url"),
                [d.get("lang") for d in documentation.findall("descr")],
                documentation.findtext("descr"),
                enable.get("visiturl"),
                [i.get("lang") for i in enable.findall("instruction")],
            ),
            (pop_page, ["en", "zh-CN"], "POP access settings", pop_page)
            + (["en", "zh-CN"],),
        )

    def test_organization_domain(self) -> None:
        """An organization domain's document names the organization POP host,
        for IMAP (first) and POP3 alike."""
        answer, raw = self.send(
            "GET", "/mail/config-v1.1.xml?emailaddress=c@corp.example"
        )
        root = ET.fromstring(raw)
        provider = root.find("emailProvider")
        assert provider is not None
        login = ("%EMAILADDRESS%", "password-cleartext")
        self.assertEqual(
            (answer.status, provider.get("id"), servers(root, "incomingServer")),
            (
                200,
                "corp.example",
                [
                    ("imap", "poppro.example.com", "993", "SSL", *login),
                    ("pop3", "poppro.example.com", "995", "SSL", *login),
                ],
            ),
        )

    def test_same_bytes_whether_the_address_exists(self) -> None:
        """alice@ (an account) and nobody@ (none) of one domain get the same
        bytes, on both paths, and so do upper-case spellings."""
        bodies = {
            self.send("GET", f"{path}?emailaddress={who}@example.com")[1]
            for path in (THUNDERBIRD, "/mail/config-v1.1.xml")
            for who in ("alice", "nobody", "ALICE")
        }
        self.assertEqual(len(bodies), 1)

    def test_unhosted_and_malformed(self) -> None:
        """An unhosted domain, a malformed, missing or repeated address all
        get the same 404 body."""
        answers = [
            self.send("GET", f"{THUNDERBIRD}{query}")
            for query in (
                "?emailaddress=alice@example.org",
                "?emailaddress=alice",
                "?emailaddress=a%20b@example.com",
                "?emailaddress=@example.com",
                "",
                "?emailaddress=a@example.com&emailaddress=b@example.com",
            )
        ]
        self.assertEqual(
            {(a.status, raw) for a, raw in answers}, {(404, autoconfig.NOT_FOUND)}
        )

    def test_host_when_no_address(self) -> None:
        """Without ?emailaddress= the Host autoconfig.<domain> names the domain."""
        answer, raw = self.send(
            "GET", "/mail/config-v1.1.xml", host="autoconfig.corp.example"
        )
        provider = ET.fromstring(raw).find("emailProvider")
        assert provider is not None
        self.assertEqual((answer.status, provider.get("id")), (200, "corp.example"))

    def test_imap_when_served(self) -> None:
        """With an imaps listener (as by default) IMAP (993 SSL) comes first,
        POP after; without one there is no IMAP at all."""
        self.configure(listeners=WITH_IMAPS)
        _, raw = self.send("GET", f"{THUNDERBIRD}?emailaddress=alice@example.com")
        self.assertEqual(
            [s[:4] for s in servers(ET.fromstring(raw), "incomingServer")],
            [
                ("imap", "pop.example.com", "993", "SSL"),
                ("pop3", "pop.example.com", "995", "SSL"),
            ],
        )
        self.configure(listeners={**WITH_IMAPS, "imaps": ""})
        _, raw = self.send("GET", f"{THUNDERBIRD}?emailaddress=alice@example.com")
        self.assertEqual(
            [s[0] for s in servers(ET.fromstring(raw), "incomingServer")], ["pop3"]
        )

    def test_post_not_allowed(self) -> None:
        """The autoconfig document is GET (and HEAD) only."""
        answer, _ = self.send("POST", THUNDERBIRD, b"x")
        self.assertEqual((answer.status, answer.header("allow")), (405, "GET, HEAD"))


class OutlookTests(AutoconfigCase):
    def test_settings_both_casings(self) -> None:
        """Both path casings answer the 2006a settings field by field, with
        the default listeners: IMAP 993 SSL, POP3 995 SSL, SMTP 465 SSL and
        587 with Encryption TLS, the address as LoginName, SPA off,
        authentication required."""
        for path in (OUTLOOK, "/Autodiscover/Autodiscover.xml"):
            answer, raw = self.send("POST", path, pox("alice@example.com"))
            root = ET.fromstring(raw)
            account = root.find(f"{OUTLOOK_NS}Response/{OUTLOOK_NS}Account")
            assert account is not None
            self.assertEqual(
                (
                    answer.status,
                    answer.header("content-type"),
                    root.tag,
                    account.findtext(f"{OUTLOOK_NS}AccountType"),
                    account.findtext(f"{OUTLOOK_NS}Action"),
                ),
                (200, "application/xml; charset=utf-8", f"{RESPONSE}Autodiscover")
                + ("email", "settings"),
                path,
            )
            common = {
                "DomainRequired": "off",
                "LoginName": "alice@example.com",
                "SPA": "off",
                "AuthRequired": "on",
            }
            smtp = {**common, "UsePOPAuth": "off", "SMTPLast": "off"}
            self.assertEqual(
                protocols(root),
                [
                    {"Type": "IMAP", "Server": "pop.example.com", "Port": "993"}
                    | common
                    | {"SSL": "on"},
                    {"Type": "POP3", "Server": "pop.example.com", "Port": "995"}
                    | common
                    | {"SSL": "on"},
                    {"Type": "SMTP", "Server": "smtp.example.com", "Port": "465"}
                    | smtp
                    | {"SSL": "on"},
                    {"Type": "SMTP", "Server": "smtp.example.com", "Port": "587"}
                    | smtp
                    | {"SSL": "off", "Encryption": "TLS"},
                ],
                path,
            )

    def test_organization_and_imap(self) -> None:
        """An organization address gets the organization POP host; with an
        imaps listener IMAP 993 SSL comes first."""
        self.configure(listeners=WITH_IMAPS)
        _, raw = self.send("POST", OUTLOOK, pox("Carol@Corp.Example"))
        found = protocols(ET.fromstring(raw))
        self.assertEqual(
            [(p["Type"], p["Server"], p["Port"], p["LoginName"]) for p in found[:2]],
            [
                ("IMAP", "poppro.example.com", "993", "carol@corp.example"),
                ("POP3", "poppro.example.com", "995", "carol@corp.example"),
            ],
        )

    def test_same_answer_whether_the_address_exists(self) -> None:
        """Only the LoginName (the request's own address) differs between an
        account's answer and a non-existent address's."""
        _, alice = self.send("POST", OUTLOOK, pox("alice@example.com"))
        _, nobody = self.send("POST", OUTLOOK, pox("nobody@example.com"))
        self.assertEqual(alice, nobody.replace(b"nobody@", b"alice@"))

    def test_unknown_domain(self) -> None:
        """An unhosted domain and a malformed address get the same POX error
        500 document."""
        answers = [
            self.send("POST", OUTLOOK, pox(address))
            for address in ("alice@example.org", "alice", "", "a b@example.com")
        ]
        raws = {raw for _, raw in answers}
        self.assertEqual(len(raws), 1)
        root = ET.fromstring(raws.pop())
        error = root.find(f"{OUTLOOK_NS}Response/{OUTLOOK_NS}Error")
        assert error is not None
        self.assertEqual(
            (
                {a.status for a, _ in answers},
                error.findtext(f"{OUTLOOK_NS}ErrorCode"),
                error.findtext(f"{OUTLOOK_NS}Message"),
                error.get("Time"),
            ),
            ({200}, "500", "The email address can't be found.", "22:13:20.000000"),
        )

    def test_bad_bodies(self) -> None:
        """Anything but a POX request for the 2006a schema (not XML, a DTD
        with entities, another root, another schema, no address, nothing)
        gets 400 with error 600 in XML, never a traceback."""
        bomb = (
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "bbbbbbbb">'
            b'<!ENTITY c "&b;&b;&b;&b;">]><Autodiscover xmlns="http://schemas.'
            b'microsoft.com/exchange/autodiscover/outlook/requestschema/2006">'
            b"<Request><EMailAddress>&c;</EMailAddress></Request></Autodiscover>"
        )
        mobilesync = (
            "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/"
            "responseschema/2006"
        )
        bodies = [
            b"not xml",
            bomb,
            b"<Autodiscover><Request/></Autodiscover>",
            pox("alice@example.com", mobilesync),
            pox("alice@example.com").replace(b"EMailAddress", b"Email"),
            pox("alice@example.com").replace(b"Request>", b"Req>"),
            b"",
            b"<?xml version='1.0' encoding='x-nothing'?><a/>",
        ]
        for body in bodies:
            answer, raw = self.send("POST", OUTLOOK, body)
            error = ET.fromstring(raw).find(f"{RESPONSE}Response/{RESPONSE}Error")
            assert error is not None, raw
            self.assertEqual(
                (
                    answer.status,
                    answer.header("content-type"),
                    error.findtext(f"{RESPONSE}ErrorCode"),
                    error.findtext(f"{RESPONSE}Message"),
                ),
                (400, "application/xml; charset=utf-8", "600", "Invalid Request"),
                body,
            )
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_get_not_allowed(self) -> None:
        """Autodiscover is POST only."""
        answer, _ = self.send("GET", OUTLOOK)
        self.assertEqual((answer.status, answer.header("allow")), (405, "POST"))


class MtaStsTests(AutoconfigCase):
    POLICY = (
        b"version: STSv1\r\nmode: testing\r\nmx: smtp.example.com\r\n"
        b"max_age: 604800\r\n"
    )

    def test_policy_per_host(self) -> None:
        """mta-sts.<hosted domain> (any case, with a port) gets the policy as
        text/plain; another host, an unhosted domain or no Host gets 404."""
        found = {
            host: self.send("GET", "/.well-known/mta-sts.txt", host=host)
            for host in (
                "mta-sts.example.com",
                "MTA-STS.corp.example:8443",
                "example.com",
                "mail.example.com",
                "mta-sts.example.org",
                "mta-sts.",
                "[::1]:8443",
                None,
            )
        }
        self.assertEqual(
            {host: (a.status, raw) for host, (a, raw) in found.items()},
            {
                "mta-sts.example.com": (200, self.POLICY),
                "MTA-STS.corp.example:8443": (200, self.POLICY),
                "example.com": (404, autoconfig.NOT_FOUND),
                "mail.example.com": (404, autoconfig.NOT_FOUND),
                "mta-sts.example.org": (404, autoconfig.NOT_FOUND),
                "mta-sts.": (404, autoconfig.NOT_FOUND),
                "[::1]:8443": (404, autoconfig.NOT_FOUND),
                None: (404, autoconfig.NOT_FOUND),
            },
        )
        answer, _ = found["mta-sts.example.com"]
        self.assertEqual(answer.header("content-type"), "text/plain; charset=utf-8")

    def test_id_follows_the_policy(self) -> None:
        """The _mta-sts TXT id is derived from the policy served, and changes
        when the policy does (another MX host)."""
        served = self.send(
            "GET", "/.well-known/mta-sts.txt", host="mta-sts.example.com"
        )
        records = dns_records.records_for(
            self.config, settings_for(self.config, "example.com", False)
        )
        (txt,) = [r for r in records.records if r.name == "_mta-sts.example.com."]
        other = Config(server=ServerConfig(hostname="example.net"))
        self.assertEqual(
            (
                txt.data,
                dns_records.mta_sts_id(dns_records.mta_sts_policy(other))
                == dns_records.mta_sts_id(served[1].decode()),
            ),
            (f'"v=STSv1; id={dns_records.mta_sts_id(served[1].decode())}"', False),
        )


class AppleProfileTests(AutoconfigCase):
    def download(self) -> tuple[Answer, bytes]:
        cookie = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        url = "/settings/apple-profile"
        request = DummyRequest([s.encode() for s in url[1:].split("/")])
        request.method = b"GET"
        request.client = IPv4Address("TCP", "192.0.2.7", 50000)
        request.requestHeaders.setRawHeaders(b"cookie", [cookie.encode()])
        request.requestHeaders.setRawHeaders(b"host", [b"mail.example.com"])
        self.router.render(request)
        raw = b"".join(request.written)
        code = request.responseCode or 200
        return Answer(
            code, request.responseHeaders, raw.decode("utf-8", "replace"), {}
        ), raw

    def test_needs_sign_in(self) -> None:
        """Without a session the profile is a redirect to /login."""
        answer, _ = self.send("GET", "/settings/apple-profile")
        self.assertEqual((answer.status, answer.location), (302, "/login"))

    def test_pop_off(self) -> None:
        """With POP off (and no IMAP served) there is nothing to set up: a
        page says to enable POP first."""
        self.configure(listeners=POP_ONLY)
        self.sign_in()
        answer = self.request("GET", "/settings/apple-profile")
        self.assertEqual(
            (answer.status, "Enable it on the POP access page first" in answer.body),
            (409, True),
        )

    def test_pop_profile(self) -> None:
        """With POP on (and no IMAP served): a .mobileconfig download with
        one Mail payload of type POP on the personal host, 995 SSL, SMTP 465
        SSL, the address as user name and no password; identifiers stable
        across downloads."""
        self.configure(listeners=POP_ONLY)
        result(self.store.enable_pop("alice@example.com", "all", 5.0))
        self.sign_in()
        answer, raw = self.download()
        self.assertEqual(
            (
                answer.status,
                answer.header("content-type"),
                answer.header("content-disposition"),
                answer.header("cache-control"),
            ),
            (200, "application/x-apple-aspen-config")
            + ('attachment; filename="example.com.mobileconfig"', "no-store"),
        )
        profile = plistlib.loads(raw)
        (mail,) = profile["PayloadContent"]
        self.assertEqual(
            {k: profile[k] for k in ("PayloadType", "PayloadVersion")},
            {"PayloadType": "Configuration", "PayloadVersion": 1},
        )
        self.assertEqual(
            {k: v for k, v in mail.items() if not k.startswith("Payload")},
            {
                "EmailAccountDescription": "alice@example.com",
                "EmailAccountType": "EmailTypePOP",
                "EmailAddress": "alice@example.com",
                "IncomingMailServerAuthentication": "EmailAuthPassword",
                "IncomingMailServerHostName": "pop.example.com",
                "IncomingMailServerPortNumber": 995,
                "IncomingMailServerUseSSL": True,
                "IncomingMailServerUsername": "alice@example.com",
                "OutgoingMailServerAuthentication": "EmailAuthPassword",
                "OutgoingMailServerHostName": "smtp.example.com",
                "OutgoingMailServerPortNumber": 465,
                "OutgoingMailServerUseSSL": True,
                "OutgoingMailServerUsername": "alice@example.com",
                "OutgoingPasswordSameAsIncomingPassword": True,
            },
        )
        self.assertEqual(
            (mail["PayloadType"], mail["PayloadVersion"]),
            ("com.apple.mail.managed", 1),
        )
        again = plistlib.loads(self.download()[1])
        self.assertEqual(
            [
                (p["PayloadIdentifier"], p["PayloadUUID"])
                for p in (again, again["PayloadContent"][0])
            ],
            [
                (profile["PayloadIdentifier"], profile["PayloadUUID"]),
                (mail["PayloadIdentifier"], mail["PayloadUUID"]),
            ],
        )
        self.assertNotEqual(profile["PayloadUUID"], mail["PayloadUUID"])
        self.assertIn("Your account password", profile["PayloadDescription"])

    def test_organization_in_chinese(self) -> None:
        """An organization account gets the organization host, and the
        profile's texts come in the visitor's language."""
        carol = add_account(self.store, "carol@corp.example", PASSWORD)
        result(self.store.enable_pop(carol.address, "new", 5.0))
        self.sign_in("carol@corp.example")
        self.jar["__Host-zpop-lang"] = "zh-CN"
        profile = plistlib.loads(self.download()[1])
        (mail,) = profile["PayloadContent"]
        self.assertEqual(
            (
                mail["IncomingMailServerHostName"],
                profile["PayloadDisplayName"],
                profile["PayloadDescription"],
            ),
            (
                "poppro.example.com",
                "carol@corp.example 的邮箱",
                "在“邮件”中设置 carol@corp.example。"
                "要求输入密码时，请输入：您的账户密码",
            ),
        )

    def test_imap_preferred_when_served(self) -> None:
        """With IMAP served and on, the one payload is IMAP (993 SSL), even
        with POP on; with IMAP off for the account, POP."""
        self.configure(listeners=WITH_IMAPS)
        result(self.store.enable_pop("alice@example.com", "all", 5.0))
        self.sign_in()
        (mail,) = plistlib.loads(self.download()[1])["PayloadContent"]
        result(self.store.set_imap("alice@example.com", False))
        (pop,) = plistlib.loads(self.download()[1])["PayloadContent"]
        self.assertEqual(
            [
                (m["EmailAccountType"], m["IncomingMailServerPortNumber"])
                for m in (mail, pop)
            ],
            [("EmailTypeIMAP", 993), ("EmailTypePOP", 995)],
        )

    def test_link_on_the_clients_page(self) -> None:
        """The client settings page links to the profile, in both languages."""
        self.sign_in()
        english = self.request("GET", "/settings/clients").body
        chinese = self.request("GET", "/settings/clients?lang=zh-CN").body
        for body in (english, chinese):
            self.assertIn('href="/settings/apple-profile" id="apple-profile"', body)
        self.assertIn("iPhone, iPad or Mac", english)
        self.assertIn("描述文件", chinese)


class DnsRecordsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = make_store()
        self.config = Config(server=ServerConfig(hostname="example.com"))

    def lines(self, domain: str, config: Config | None = None) -> list[str]:
        found = result(
            dns_records.domain_records(self.store, config or self.config, domain)
        )
        return [r.zone_line() for r in found.records]

    def test_personal_domain(self) -> None:
        """Every record of a personal domain with the default listeners, in
        order, with absolute names: IMAPS preferred to POP3S in the SRV
        records."""
        policy_id = dns_records.mta_sts_id(dns_records.mta_sts_policy(self.config))
        self.assertEqual(
            self.lines("example.com"),
            [
                "example.com. 3600 IN MX 10 smtp.example.com.",
                'example.com. 3600 IN TXT "v=spf1 mx -all"',
                '_dmarc.example.com. 3600 IN TXT "v=DMARC1; p=none;'
                ' rua=mailto:postmaster@example.com"',
                "_imaps._tcp.example.com. 3600 IN SRV 0 1 993 pop.example.com.",
                "_pop3s._tcp.example.com. 3600 IN SRV 10 1 995 pop.example.com.",
                "_submissions._tcp.example.com. 3600 IN SRV 0 1 465 smtp.example.com.",
                "_submission._tcp.example.com. 3600 IN SRV 10 1 587 smtp.example.com.",
                "autoconfig.example.com. 3600 IN CNAME example.com.",
                "autodiscover.example.com. 3600 IN CNAME example.com.",
                "_autodiscover._tcp.example.com. 3600 IN SRV 0 1 8443 example.com.",
                "mta-sts.example.com. 3600 IN CNAME example.com.",
                f'_mta-sts.example.com. 3600 IN TXT "v=STSv1; id={policy_id}"',
                '_smtp._tls.example.com. 3600 IN TXT "v=TLSRPTv1;'
                ' rua=mailto:postmaster@example.com"',
            ],
        )

    def test_organization_production_and_imaps(self) -> None:
        """An organization domain with production listeners and IMAPS: the
        organization host for POP3S and IMAPS (IMAPS preferred), the web
        host on 443, the DMARC reports authorised by the postmaster's zone."""
        config = Config(
            server=ServerConfig(hostname="example.com"),
            listeners={**LISTENERS, "web": "tcp:443", "imaps": "tcp:993"},
        )
        config = replace(config, hosts=replace(config.hosts, web="mail.example.com"))
        found = result(dns_records.domain_records(self.store, config, "corp.example"))
        srv = [r.zone_line() for r in found.records if r.type == "SRV"]
        self.assertEqual(
            srv,
            [
                "_imaps._tcp.corp.example. 3600 IN SRV 0 1 993 poppro.example.com.",
                "_pop3s._tcp.corp.example. 3600 IN SRV 10 1 995 poppro.example.com.",
                "_submissions._tcp.corp.example. 3600 IN SRV 0 1 465 smtp.example.com.",
                "_submission._tcp.corp.example. 3600 IN SRV 10 1 587 smtp.example.com.",
                "_autodiscover._tcp.corp.example. 3600 IN SRV 0 1 443"
                " mail.example.com.",
            ],
        )
        assert found.report_authorization is not None
        self.assertEqual(
            (found.report_zone, found.report_authorization.zone_line()),
            (
                "example.com",
                'corp.example._report._dmarc.example.com. 3600 IN TXT "v=DMARC1"',
            ),
        )

    def test_notes(self) -> None:
        """The notes: the DKIM hook, the smart host's SPF, the names the
        server's certificate and address records need."""
        config = replace(
            self.config, outbound=OutboundConfig(smarthost=("relay.example.net", 587))
        )
        found = result(dns_records.domain_records(self.store, config, "example.com"))
        self.assertEqual(
            found.notes,
            (
                "DKIM: no keys yet (zpop domain dkim example.com)",
                "SPF: mail leaves through the smart host relay.example.net: add its"
                " SPF mechanism (its provider's include: or a:/ip4:) before -all",
                "pop.example.com, smtp.example.com, example.com need A/AAAA records"
                " of this server and names in its certificate, as do"
                " autoconfig.example.com, autodiscover.example.com and"
                " mta-sts.example.com for HTTPS",
            ),
        )

    def test_dmarc_quarantine_once_dkim_keys_exist(self) -> None:
        """The hook for DKIM keys: with them, DMARC asks for quarantine and
        the DKIM note goes."""
        clients = settings_for(self.config, "example.com", False)
        found = dns_records.records_for(self.config, clients, dkim_keys=True)
        (dmarc,) = [r for r in found.records if r.name.startswith("_dmarc.")]
        self.assertEqual(
            (dmarc.data.split(";")[1], [n for n in found.notes if "DKIM" in n]),
            (" p=quarantine", []),
        )

    def test_unknown_domain(self) -> None:
        """An unhosted domain is NotHosted, as for every domain command."""
        self.assertRaises(
            NotHosted,
            result,
            dns_records.domain_records(self.store, self.config, "example.org"),
        )
