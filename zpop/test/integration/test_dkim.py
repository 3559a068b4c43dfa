"""DKIM signing end to end: ``zpop domain dkim`` against the real server's
data directory, mail submitted on 587 and 465 caught by a loopback sink
through ``[routes]``, and its signatures checked by two verifiers: dkimpy,
answering from the records the CLI printed, and OpenDKIM's
``opendkim-testmsg``, which asks DNS through the C resolver and so gets a
DNS server of the test on a loopback address, named by a resolv.conf
bind-mounted in a private mount namespace (``unshare``) for it alone."""

from __future__ import annotations

import os
import random
import re
import smtplib
import stat
import subprocess
import tempfile
import time
from typing import Any

import dkim
from twisted.internet import defer, reactor
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.names import common, dns, error, server
from twisted.trial.unittest import SkipTest, TestCase

from zpop.config import OutboundConfig
from zpop.mailauth.dkim import RELOAD_INTERVAL, DkimSigner
from zpop.mailauth.dkim_keys import DkimKeys, MemoryKeyStore
from zpop.outbound import OutboundService
from zpop.store.records import QueuedMessage
from zpop.test.harness import start_server
from zpop.test.integration.test_outbound import RawSink, SinkFactory
from zpop.test.integration.test_smtp import SMTPSClient
from zpop.test.stores import add_account, make_store, result
from zpop.test.tools import require_tool
from zpop.threads import run_synchronously

PASSWORD = "a long passphrase"
NOW = 1_700_000_000.0

#: A zone-file TXT line as ``zpop domain dkim`` and ``domain dns`` print it.
_TXT_LINE = re.compile(r'^(\S+)\.\s+\d+\s+IN\s+TXT\s+((?:"[^"]*"\s*)+)$')
_SIGNATURE = re.compile(rb"DKIM-Signature:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n")


def dkim_records(output: str) -> dict[str, str]:
    """``SELECTOR._domainkey.DOMAIN`` -> TXT value, from printed zone lines."""
    found = {}
    for line in output.splitlines():
        match = _TXT_LINE.match(line)
        if match and "._domainkey." in match.group(1):
            found[match.group(1)] = "".join(re.findall(r'"([^"]*)"', match.group(2)))
    return found


def split_signatures(message: bytes) -> tuple[list[bytes], bytes]:
    """The DKIM-Signature fields at the top of ``message``, and the rest."""
    fields = []
    while match := _SIGNATURE.match(message):
        fields.append(match.group(0))
        message = message[match.end() :]
    return fields, message


def tag(field: bytes, name: str) -> str:
    match = re.search(rb"[; ]" + name.encode() + rb"=([^;]*)", field)
    assert match is not None, field
    return "".join(match.group(1).decode().split())


def dkimpy_verdicts(message: bytes, records: dict[str, str]) -> list[bool]:
    """dkimpy's verdict on each signature of ``message``."""
    verifier = dkim.DKIM(message)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        value = records.get(name.decode().rstrip("."))
        return None if value is None else value.encode()

    def one(idx: int) -> bool:
        try:
            return bool(verifier.verify(idx=idx, dnsfunc=dnsfunc))
        except dkim.DKIMException:
            return False

    return [one(i) for i in range(len(split_signatures(message)[0]))]


def unstuff(wire: bytes) -> bytes:
    """The message from DATA's dot-stuffed lines."""
    return re.sub(rb"(^|\r\n)\.", rb"\1", wire)


class _Zone(common.ResolverBase):
    """Answers TXT queries from a dict; everything else is NXDOMAIN."""

    def __init__(self, records: dict[str, str]) -> None:
        super().__init__()
        self.records = records

    def _lookup(self, name: bytes, cls: int, type: int, timeout: Any) -> Any:  # noqa: A002
        key = name.decode().lower().rstrip(".")
        if key not in self.records:
            return defer.fail(error.DomainError(key))
        if type != dns.TXT:
            return defer.succeed(([], [], []))
        text = self.records[key].encode()
        chunks = [text[i : i + 255] for i in range(0, len(text), 255)]
        answer = dns.RRHeader(
            name, dns.TXT, dns.IN, 60, dns.Record_TXT(*chunks, ttl=60), auth=True
        )
        return defer.succeed(([answer], [], []))


def _namespace_options(unshare: str) -> list[str]:
    """unshare's options for a mount namespace of our own. It makes every
    mount private first, which fails in a chroot (its root is no mount
    point); there, when no mount is shared (nothing mounted inside could
    propagate out), the mounts are left as they are."""
    for options in (["--mount"], ["--mount", "--propagation", "unchanged"]):
        probe = subprocess.run(
            [unshare, *options, "true"], capture_output=True, timeout=30
        )
        if probe.returncode == 0 and (options == ["--mount"] or not _shared_mounts()):
            return options
    reason = probe.stderr.decode().strip() or "mounts here are shared"
    message = (
        "unshare --mount is not allowed here (opendkim-testmsg asks"
        f" the system resolver): {reason}"
    )
    if os.environ.get("CI"):
        raise AssertionError(message)
    raise SkipTest(message)


def _shared_mounts() -> bool:
    """Whether a mount here propagates to others (mountinfo's shared:N)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return any(" shared:" in line for line in f)


class OpenDKIM:
    """``opendkim-testmsg`` verifying against a DNS server of the test."""

    def __init__(self, case: TestCase) -> None:
        self.tool = require_tool("opendkim-testmsg")
        unshare = require_tool("unshare")
        self.unshare = [unshare, *_namespace_options(unshare)]
        self.records: dict[str, str] = {}
        factory = server.DNSServerFactory(authorities=[_Zone(self.records)])
        # Port 53 (resolv.conf names no port) on an address of 127/8 of our
        # own, so nothing else on loopback is in the way.
        for _ in range(20):
            self.address = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.53"
            try:
                tcp = reactor.listenTCP(53, factory, interface=self.address)
            except CannotListenError as e:
                failed = e
                continue
            break
        else:
            message = f"no loopback address to serve DNS on port 53: {failed}"
            if os.environ.get("CI"):
                raise AssertionError(message)
            raise SkipTest(message)
        udp = reactor.listenUDP(
            53, dns.DNSDatagramProtocol(factory), interface=self.address
        )
        case.addCleanup(tcp.stopListening)
        case.addCleanup(udp.stopListening)
        self.directory = tempfile.mkdtemp(prefix="zpop-opendkim-")
        self.resolv = os.path.join(self.directory, "resolv.conf")
        with open(self.resolv, "w", encoding="ascii") as f:
            f.write(f"nameserver {self.address}\noptions timeout:5 attempts:2\n")

    @defer.inlineCallbacks
    def verify(self, message: bytes) -> Any:
        """(exit status, stdout + stderr) of ``opendkim-testmsg`` verifying
        ``message`` (its exit status is 0 when the signature verified)."""
        path = os.path.join(self.directory, "message.eml")
        with open(path, "wb") as f:
            f.write(message)
        out, err, code = yield getProcessOutputAndValue(
            self.unshare[0],
            [
                *self.unshare[1:],
                "sh",
                "-c",
                'mount --bind "$1" /etc/resolv.conf && exec "$2" < "$3"',
                "sh",
                self.resolv,
                self.tool,
                path,
            ],
            env=dict(os.environ),
        )
        return code, (out + err).decode("utf-8", "replace")


class SigningServerTests(TestCase):
    """The real server, a hosted example.test with bob, a sink for
    remote.example."""

    timeout = 180

    def setUp(self) -> None:
        self.sink = RawSink(self)
        self.server = start_server(
            self,
            settings={
                "outbound": {"scan_interval": "600", "retry_min": "1"},
                "routes": {"remote.example": f"127.0.0.1:{self.sink.port}"},
            },
        )
        self.server.zpop("domain", "add", "example.test")
        self.server.add_account("bob@example.test", PASSWORD)

    def submit(self, subject: str, implicit: bool = False) -> bytes:
        """Send a message from bob to a@remote.example on 587 (or 465);
        the message as it arrived at the sink."""
        body = (
            "From: Bob <bob@example.test>\r\nTo: a@remote.example\r\n"
            f"Subject: {subject}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            ".a line with a dot\r\nd\u00e9j\u00e0 vu   \r\n\r\n\r\n"
        ).encode()
        before = len(self.sink.messages)
        smtp: smtplib.SMTP
        if implicit:
            smtp = SMTPSClient(self.server, self.server.ports["smtps"])
        else:
            smtp = smtplib.SMTP(
                "127.0.0.1", self.server.ports["submission"], timeout=30
            )
            smtp._host = "smtp.example.test"
            smtp.starttls(context=self.server.ssl_context())
        with smtp:
            smtp.login("bob@example.test", PASSWORD)
            smtp.sendmail("bob@example.test", ["a@remote.example"], body)
        deadline = time.monotonic() + 30
        while len(self.sink.messages) == before:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing arrived\n{self.server.log_text()}")
            time.sleep(0.1)
        return unstuff(self.sink.messages[-1])

    def test_cli_makes_keys(self) -> None:
        """``zpop domain dkim`` makes an RSA and an Ed25519 key, 0600 in a
        0700 directory, prints their records, and on a second run says the
        keys exist; a domain that is not hosted is refused."""
        out = self.server.zpop("domain", "dkim", "example.test")
        lines = out.splitlines()
        match = re.fullmatch(
            r"made DKIM keys for example.test: (z\d{8}t\d{6}r) \(rsa-sha256\),"
            r" (z\d{8}t\d{6}e) \(ed25519-sha256\)",
            lines[0],
        )
        self.assertIsNotNone(match, out)
        assert match is not None
        rsa, ed = match.groups()
        records = dkim_records(out)
        self.assertEqual(
            (lines[1], len(lines), sorted(records)),
            (
                "; publish in the zone of example.test:",
                4,
                sorted(
                    [f"{rsa}._domainkey.example.test", f"{ed}._domainkey.example.test"]
                ),
            ),
        )
        self.assertRegex(
            records[f"{rsa}._domainkey.example.test"], r"^v=DKIM1; k=rsa; p=\S{300,}$"
        )
        self.assertRegex(
            records[f"{ed}._domainkey.example.test"], r"^v=DKIM1; k=ed25519; p=\S{44}$"
        )
        base = os.path.join(self.server.data, "dkim")
        modes = {
            name: oct(stat.S_IMODE(os.stat(os.path.join(base, name)).st_mode))
            for name in (
                ".",
                "selectors.json",
                "example.test",
                f"example.test/{rsa}.pem",
                f"example.test/{ed}.pem",
            )
        }
        self.assertEqual(
            modes,
            {
                ".": "0o700",
                "selectors.json": "0o600",
                "example.test": "0o700",
                f"example.test/{rsa}.pem": "0o600",
                f"example.test/{ed}.pem": "0o600",
            },
        )
        again = self.server.zpop("domain", "dkim", "example.test")
        self.assertEqual(
            again.splitlines()[0],
            "example.test has DKIM keys already; new ones replace them with"
            " 'zpop domain dkim example.test --rotate'",
        )
        self.assertEqual(dkim_records(again), records)
        self.assertEqual(
            self.server.zpop("domain", "dkim", "other.test", status=1),
            "zpop: error: other.test is not a hosted domain: add it with"
            " 'zpop domain add other.test'\n",
        )

    @defer.inlineCallbacks
    def test_submitted_mail_verifies(self) -> Any:
        """Mail submitted on 587 and on 465 arrives with an rsa-sha256 and an
        ed25519-sha256 signature above our Received field; dkimpy and
        OpenDKIM both verify each, and neither accepts a changed body."""
        opendkim = OpenDKIM(self)
        records = dkim_records(self.server.zpop("domain", "dkim", "example.test"))
        opendkim.records.update(records)
        for implicit in (False, True):
            arrived = self.submit(f"signed {implicit}", implicit)
            fields, rest = split_signatures(arrived)
            self.assertEqual(
                [(tag(f, "a"), tag(f, "d"), tag(f, "c")) for f in fields],
                [
                    ("rsa-sha256", "example.test", "relaxed/relaxed"),
                    ("ed25519-sha256", "example.test", "relaxed/relaxed"),
                ],
            )
            self.assertTrue(rest.startswith(b"Received: from "), arrived)
            self.assertEqual(dkimpy_verdicts(arrived, records), [True, True])
            for field in fields:
                code, output = yield opendkim.verify(field + rest)
                self.assertEqual((code, output), (0, ""), tag(field, "a"))
                changed = field + rest.replace(b"a line with a dot", b"a line, changed")
                code, output = yield opendkim.verify(changed)
                self.assertEqual(
                    (code, output.strip()),
                    (70, "opendkim-testmsg: dkim_eom(): Bad signature"),
                )

    @defer.inlineCallbacks
    def test_rotation(self) -> Any:
        """After ``--rotate`` new mail is signed with the new selectors,
        the running server having picked them up by itself; ``zpop domain
        dns`` lists old and new selectors, and mail signed before and after
        verifies from those records with both verifiers."""
        opendkim = OpenDKIM(self)
        first = dkim_records(self.server.zpop("domain", "dkim", "example.test"))
        before = self.submit("before")
        rotated = self.server.zpop("domain", "dkim", "example.test", "--rotate")
        self.assertEqual(
            [
                line.split(":")[0]
                for line in rotated.splitlines()
                if line.startswith("retired")
            ],
            [f"retired {name.split('.')[0]}" for name in first],
        )
        time.sleep(RELOAD_INTERVAL + 0.5)
        after = self.submit("after")
        published = dkim_records(self.server.zpop("domain", "dns", "example.test"))
        new = sorted(set(published) - set(first))
        self.assertEqual((len(published), set(first) <= set(published)), (4, True))
        self.assertEqual(
            sorted(
                f"{tag(f, 's')}._domainkey.example.test"
                for f in split_signatures(after)[0]
            ),
            new,
        )
        opendkim.records.update(published)
        for message in (before, after):
            self.assertEqual(dkimpy_verdicts(message, published), [True, True])
            fields, rest = split_signatures(message)
            for field in fields:
                code, output = yield opendkim.verify(field + rest)
                self.assertEqual((code, output), (0, ""), tag(field, "s"))


class BounceSigningTests(TestCase):
    """The relay's DSN to a remote sender is signed (a store in memory, a
    Twisted sink on loopback that refuses the recipient)."""

    def test_dsn_signed(self) -> Any:
        """A bounce from MAILER-DAEMON@smtp.example.com to a remote sender
        leaves with both signatures of example.com, and they verify."""
        store = make_store()
        self.addCleanup(store.close)
        bob = add_account(store, "bob@example.com", password=None)  # type: ignore[arg-type]
        clock = Clock()
        clock.advance(NOW)
        keys = MemoryKeyStore()
        dkim_keys = DkimKeys(keys, clock, 5 * 86400.0)
        dkim_keys.make("example.com")
        sink = SinkFactory()
        sink.rules[("RCPT", "a@")] = b"550 5.1.1 no such user"
        port = reactor.listenTCP(0, sink, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        route = ("127.0.0.1", port.getHost().port)
        relay = OutboundService(
            store,
            OutboundConfig(
                routes={"remote.example": route, "other.example": route}, timeout=10.0
            ),
            "smtp.example.com",
            reactor,
            clock=clock,
            owner="test",
            signer=DkimSigner(keys, run_synchronously, clock),
        )
        body = (
            b"From: carol@other.example\r\nTo: a@remote.example\r\n"
            b"Subject: x\r\n\r\nhi\r\n"
        )
        result(
            store.accept_message(
                [],
                QueuedMessage(
                    "carol@other.example",
                    ("a@remote.example",),
                    body,
                    NOW,
                    NOW + 86400,
                    bob.id,
                ),
            )
        )
        records = {p.name: p.value for p in dkim_keys.published("example.com")}

        @defer.inlineCallbacks
        def run() -> Any:
            yield relay.run_once()
            yield relay.run_once()
            ((mail, rcpts, raw),) = sink.messages
            fields, rest = split_signatures(raw)
            self.assertEqual(
                (mail.split(b" ")[0], rcpts, [tag(f, "d") for f in fields]),
                (b"<>", [b"<carol@other.example>"], ["example.com", "example.com"]),
            )
            self.assertIn(b"MAILER-DAEMON@smtp.example.com", rest)
            self.assertEqual(dkimpy_verdicts(raw, records), [True, True])

        return run()
