"""zpop.tls: the TLS policy, SNI, the self-signed certificate, and helpers,
over real loopback sockets with Twisted on the server side."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import socket
import ssl
import stat
import subprocess
import warnings
from typing import Any

from cryptography import x509
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.protocol import Factory
from twisted.internet.threads import deferToThread
from twisted.logger import capturedLogs
from twisted.protocols.basic import LineReceiver
from twisted.trial.unittest import SynchronousTestCase, TestCase

from zpop.config import Config, ServerConfig, TLSCertificate, TLSConfig
from zpop.test.harness import start_server
from zpop.test.tools import require_tool
from zpop.tls import (
    ServerTLS,
    TLSConfigError,
    ensure_self_signed,
    generate_self_signed,
    server_name,
    tls_version,
)

MOZILLA_TLS12 = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
]
TLS13 = [
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_GCM_SHA256",
]


def write_cert(
    directory: str, name: str, dns: list[str], key_type: str = "rsa"
) -> TLSCertificate:
    """A self-signed certificate for ``dns`` as separate cert and key files."""
    pem = generate_self_signed(dns, ["127.0.0.1"], key_type=key_type).decode("ascii")
    split = pem.index("-----BEGIN PRIVATE KEY-----")
    chain = os.path.join(directory, f"{name}.crt")
    key = os.path.join(directory, f"{name}.key")
    with open(chain, "w") as f:
        f.write(pem[:split])
    with open(key, "w") as f:
        f.write(pem[split:])
    return TLSCertificate(certificate=chain, key=key)


def cert_pem(cert: TLSCertificate) -> str:
    with open(cert.certificate) as f:
        return f.read()


def der(cert: TLSCertificate) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert_pem(cert))


class Reporter(LineReceiver):
    """Answers WHO with "<tls_version> <server_name>"; STARTTLS starts TLS."""

    delimiter = b"\n"

    def connectionMade(self) -> None:
        self.lost: Deferred[None] = Deferred()
        self.factory.connections.append(self)

    def lineReceived(self, line: bytes) -> None:
        if line.strip() == b"STARTTLS":
            self.sendLine(b"GO")
            self.transport.startTLS(self.factory.tls)
            return
        answer = f"{tls_version(self.transport)} {server_name(self.transport)}"
        self.sendLine(answer.encode("ascii"))

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


def recv_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.strip()


def client_ctx(cadata: str, check_hostname: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=cadata)
    ctx.check_hostname = check_hostname
    return ctx


def converse(
    port: int, ctx: ssl.SSLContext, hostname: str | None, starttls: bool = False
) -> tuple[str | None, bytes, bytes | None, bytes | None]:
    """Blocking client: (TLS version, WHO answer, peer cert DER, plain answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        plain = None
        if starttls:
            raw.sendall(b"WHO\r\n")
            plain = recv_line(raw)
            raw.sendall(b"STARTTLS\r\n")
            assert recv_line(raw) == b"GO"
        with ctx.wrap_socket(raw, server_hostname=hostname) as s:
            s.sendall(b"WHO\r\n")
            answer = recv_line(s)
            return s.version(), answer, s.getpeercert(binary_form=True), plain


class LoopbackMixin:
    """A Twisted server on 127.0.0.1:0 whose connections are awaited at the end."""

    def listen(self, tls: ServerTLS, implicit: bool = True) -> int:
        factory = Factory.forProtocol(Reporter)
        factory.connections = []
        factory.tls = tls
        wrapped = tls.wrap(factory) if implicit else factory
        port = reactor.listenTCP(0, wrapped, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: gatherResults([c.lost for c in factory.connections]))
        return port.getHost().port


class PolicyTests(LoopbackMixin, TestCase):
    """The protocol versions and cipher suites every listener offers."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.cert = write_cert(self.dir, "default", ["mail.example.test"])
        self.tls = ServerTLS.from_files(self.cert, {})
        self.port = self.listen(self.tls)

    def test_refuses_tls11(self) -> None:
        """A client capped at TLS 1.1 is refused with a protocol-version error."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        # OpenSSL 3 clients only speak TLS 1.1 at security level 0.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        d = deferToThread(converse, self.port, ctx, "mail.example.test")

        def refused(f: Any) -> None:
            f.trap(ssl.SSLError)
            self.assertIn("PROTOCOL_VERSION", f.value.reason.upper())

        def accepted(result: Any) -> None:
            self.fail(f"TLS 1.1 accepted: {result}")

        return d.addCallbacks(accepted, refused)

    @inlineCallbacks
    def test_accepts_tls12_and_tls13(self) -> Any:
        """TLS 1.2 and 1.3 handshakes succeed and tls_version reports them."""
        results = []
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = client_ctx(cert_pem(self.cert))
            ctx.minimum_version = ctx.maximum_version = version
            got = yield deferToThread(converse, self.port, ctx, "mail.example.test")
            results.append(got[:2])
        self.assertEqual(
            results,
            [
                ("TLSv1.2", b"TLSv1.2 mail.example.test"),
                ("TLSv1.3", b"TLSv1.3 mail.example.test"),
            ],
        )

    def test_cipher_list(self) -> None:
        """A connection offers exactly TLS 1.3's suites and Mozilla's
        intermediate ECDHE+AEAD TLS 1.2 suites: no CBC, RSA kx, 3DES, RC4."""
        ciphers = SSL.Connection(self.tls.getContext(), None).get_cipher_list()
        self.assertEqual(ciphers, TLS13 + MOZILLA_TLS12)
        forbidden = ("CBC", "SHA1", "DES", "RC4", "NULL", "EXPORT", "MD5")
        self.assertEqual(
            [
                c
                for c in ciphers
                if any(f in c for f in forbidden)
                or c.endswith("-SHA")
                or c.startswith("AES")
            ],
            [],
        )

    def test_context_options(self) -> None:
        """No compression, no renegotiation, no server cipher preference."""
        options = self.tls.getContext().set_options(0)
        self.assertEqual(
            (
                bool(options & SSL.OP_NO_COMPRESSION),
                bool(options & SSL.OP_NO_RENEGOTIATION),
                bool(options & SSL.OP_CIPHER_SERVER_PREFERENCE),
            ),
            (True, True, False),
        )


class SNITests(LoopbackMixin, TestCase):
    """Per-host certificates chosen by SNI, and server_name()."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.default = write_cert(self.dir, "default", ["pop.example.test"])
        self.pro = write_cert(self.dir, "pro", ["poppro.example.test"])
        self.tls = ServerTLS.from_files(self.default, {"PopPro.Example.Test": self.pro})
        self.cadata = cert_pem(self.default) + cert_pem(self.pro)

    @inlineCallbacks
    def test_sni_selects_certificate(self) -> Any:
        """SNI naming a configured host gets its certificate; another name or
        none gets the default; server_name is the lower-cased SNI or None."""
        port = self.listen(self.tls)
        results = []
        for hostname, check in (
            ("POPPRO.example.test", True),
            ("pop.example.test", True),
            ("other.example.test", False),
            (None, False),
        ):
            ctx = client_ctx(self.cadata, check)
            version, answer, cert, _ = yield deferToThread(
                converse, port, ctx, hostname
            )
            results.append((answer, cert))
        self.assertEqual(
            results,
            [
                (b"TLSv1.3 poppro.example.test", der(self.pro)),
                (b"TLSv1.3 pop.example.test", der(self.default)),
                (b"TLSv1.3 other.example.test", der(self.default)),
                (b"TLSv1.3 None", der(self.default)),
            ],
        )

    @inlineCallbacks
    def test_starttls(self) -> Any:
        """After startTLS on a TCP transport, tls_version and server_name
        report the TLS session (None before), and SNI picks the certificate."""
        port = self.listen(self.tls, implicit=False)
        results = []
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = client_ctx(self.cadata)
            ctx.maximum_version = version
            got = yield deferToThread(converse, port, ctx, "poppro.example.test", True)
            results.append(got)
        self.assertEqual(
            results,
            [
                (
                    "TLSv1.2",
                    b"TLSv1.2 poppro.example.test",
                    der(self.pro),
                    b"None None",
                ),
                (
                    "TLSv1.3",
                    b"TLSv1.3 poppro.example.test",
                    der(self.pro),
                    b"None None",
                ),
            ],
        )


def dual(rsa: TLSCertificate, ecdsa: TLSCertificate) -> TLSCertificate:
    return TLSCertificate(rsa.certificate, rsa.key, ecdsa.certificate, ecdsa.key)


def s_client_cert(port: int, *options: str) -> bytes:
    """The DER certificate ``openssl s_client`` was served, with ``options``."""
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"]
        + ["-servername", "pop.example.test", *options],
        input=b"",
        capture_output=True,
        timeout=30,
    )
    match = re.search(
        rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", out.stdout, re.S
    )
    if match is None:
        raise AssertionError(f"no certificate from s_client: {out.stderr!r}")
    return ssl.PEM_cert_to_DER_cert(match.group(0).decode("ascii"))


class AltCertificateTests(LoopbackMixin, TestCase):
    """An RSA and an ECDSA chain side by side: each client gets the one it
    can verify, modern ones the cheaper ECDSA."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        names = ["pop.example.test"]
        self.rsa = write_cert(self.dir, "rsa", names)
        self.ecdsa = write_cert(self.dir, "ecdsa", names, key_type="ecdsa")
        self.pro_rsa = write_cert(self.dir, "pro-rsa", ["poppro.example.test"])
        self.pro_ecdsa = write_cert(
            self.dir, "pro-ecdsa", ["poppro.example.test"], key_type="ecdsa"
        )
        self.tls = ServerTLS.from_files(
            dual(self.rsa, self.ecdsa),
            {"poppro.example.test": dual(self.pro_rsa, self.pro_ecdsa)},
        )
        self.cadata = "".join(
            cert_pem(c) for c in (self.rsa, self.ecdsa, self.pro_rsa, self.pro_ecdsa)
        )
        self.port = self.listen(self.tls)

    @inlineCallbacks
    def test_client_gets_the_certificate_it_can_use(self) -> Any:
        """TLS 1.3 clients and TLS 1.2 ECDSA suites get the ECDSA chain; a
        TLS 1.2 client offering only ECDHE-RSA suites gets the RSA one; the
        same per SNI host."""
        results = []
        for host, ciphers in (
            ("pop.example.test", None),
            ("pop.example.test", "ECDHE-ECDSA-AES128-GCM-SHA256"),
            ("pop.example.test", "ECDHE-RSA-AES128-GCM-SHA256"),
            ("poppro.example.test", None),
            ("poppro.example.test", "ECDHE-RSA-AES256-GCM-SHA384"),
        ):
            ctx = client_ctx(self.cadata)
            if ciphers is not None:
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2
                ctx.set_ciphers(ciphers)
            version, _, cert, _ = yield deferToThread(converse, self.port, ctx, host)
            results.append((version, cert))
        self.assertEqual(
            results,
            [
                ("TLSv1.3", der(self.ecdsa)),
                ("TLSv1.2", der(self.ecdsa)),
                ("TLSv1.2", der(self.rsa)),
                ("TLSv1.3", der(self.pro_ecdsa)),
                ("TLSv1.2", der(self.pro_rsa)),
            ],
        )

    @inlineCallbacks
    def test_tls13_client_without_ecdsa(self) -> Any:
        """openssl s_client offering only RSA-PSS signatures in TLS 1.3 (as
        a client that cannot verify ECDSA does) gets the RSA chain; offering
        only ECDSA, the ECDSA one."""
        require_tool("openssl")
        got = []
        for sigalgs in ("rsa_pss_rsae_sha256", "ecdsa_secp256r1_sha256"):
            got.append(
                (
                    yield deferToThread(
                        s_client_cert,
                        self.port,
                        "-tls1_3",
                        "-sigalgs",
                        sigalgs,
                    )
                )
            )
        self.assertEqual(got, [der(self.rsa), der(self.ecdsa)])


class SelfSignedTests(SynchronousTestCase):
    """The self-signed certificate made when no [tls] certificate is set."""

    def setUp(self) -> None:
        self.data = self.mktemp()
        os.makedirs(self.data)
        self.config = Config(server=ServerConfig(hostname="example.test"))
        self.path = os.path.join(self.data, "tls", "selfsigned.pem")

    def from_config(self, config: Config) -> ServerTLS:
        return ServerTLS.from_config(config.tls, config.host_names, self.data)

    def read_cert(self) -> x509.Certificate:
        with open(self.path, "rb") as f:
            return x509.load_pem_x509_certificate(f.read())

    def sans(self) -> tuple[list[str], list[str]]:
        ext = (
            self.read_cert()
            .extensions.get_extension_for_class(x509.SubjectAlternativeName)
            .value
        )
        return (
            ext.get_values_for_type(x509.DNSName),
            [str(a) for a in ext.get_values_for_type(x509.IPAddress)],
        )

    def test_generated(self) -> None:
        """First start writes DATA/tls/selfsigned.pem (0600, dir 0700) naming
        every host name, localhost, 127.0.0.1 and ::1; source says generated."""
        tls = self.from_config(self.config)
        self.assertEqual(
            (
                tls.source,
                self.sans(),
                stat.S_IMODE(os.stat(self.path).st_mode),
                stat.S_IMODE(os.stat(os.path.dirname(self.path)).st_mode),
                sorted(os.listdir(os.path.dirname(self.path))),
            ),
            (
                f"self-signed certificate generated in {self.path}",
                (
                    [
                        "pop.example.test",
                        "poppro.example.test",
                        "smtp.example.test",
                        "example.test",
                        "localhost",
                    ],
                    ["127.0.0.1", "::1"],
                ),
                0o600,
                0o700,
                ["selfsigned.pem"],
            ),
        )

    def test_reused(self) -> None:
        """A second start reuses the same file untouched; source says reused."""
        self.from_config(self.config)
        with open(self.path, "rb") as f:
            before = f.read()
        tls = self.from_config(self.config)
        with open(self.path, "rb") as f:
            after = f.read()
        self.assertEqual(
            (tls.source, after),
            (f"self-signed certificate reused from {self.path}", before),
        )

    def test_regenerated_for_new_names(self) -> None:
        """A changed host name regenerates the certificate and logs why."""
        self.from_config(self.config)
        changed = self.config.replace(server=ServerConfig(hostname="example.org"))
        with capturedLogs() as events:
            tls = self.from_config(changed)
        messages = [e["log_format"].format(**e) for e in events]
        self.assertEqual(
            (tls.source, self.sans()[0], messages),
            (
                f"self-signed certificate generated in {self.path}",
                [
                    "pop.example.org",
                    "poppro.example.org",
                    "smtp.example.org",
                    "example.org",
                    "localhost",
                ],
                [
                    f"regenerating self-signed certificate {self.path}: does not "
                    "cover pop.example.org, poppro.example.org, smtp.example.org,"
                    " example.org"
                ],
            ),
        )

    def test_renewed_before_expiry(self) -> None:
        """A certificate with 30 days or less to live is regenerated."""
        path, made = ensure_self_signed(self.config.host_names, self.data)
        expiry = self.read_cert().not_valid_after_utc
        later = expiry - datetime.timedelta(days=29)
        path2, made2 = ensure_self_signed(self.config.host_names, self.data, now=later)
        self.assertEqual(
            (path2, made, made2, self.read_cert().not_valid_after_utc > expiry),
            (path, True, True, True),
        )

    def test_damaged_file_regenerated(self) -> None:
        """An unreadable self-signed file is replaced, not fatal."""
        os.makedirs(os.path.dirname(self.path))
        with open(self.path, "w") as f:
            f.write("garbage")
        with capturedLogs() as events:
            path, made = ensure_self_signed(self.config.host_names, self.data)
        self.assertEqual(
            (made, len(events), "unreadable" in events[0]["problem"]),
            (True, 1, True),
        )
        self.assertEqual(
            self.read_cert().subject.rfc4514_string(),
            "O=zpop self-signed,CN=pop.example.test",
        )

    def test_generate_ip_and_key(self) -> None:
        """generate_self_signed makes an RSA-2048, SHA-256, serverAuth leaf."""
        pem = generate_self_signed(["a.test"], ["127.0.0.1"])
        cert = x509.load_pem_x509_certificate(pem)
        ext = cert.extensions
        self.assertEqual(
            (
                cert.public_key().key_size,
                cert.signature_hash_algorithm.name,
                ext.get_extension_for_class(x509.BasicConstraints).value.ca,
                list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value),
                ext.get_extension_for_class(
                    x509.SubjectAlternativeName
                ).value.get_values_for_type(x509.IPAddress),
            ),
            (
                2048,
                "sha256",
                False,
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH],
                [ipaddress.ip_address("127.0.0.1")],
            ),
        )


class ConfiguredCertificateTests(SynchronousTestCase):
    """Certificates named in [tls]: loaded, checked, errors naming the file."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.good = write_cert(self.dir, "good", ["pop.example.test"])
        self.other = write_cert(self.dir, "other", ["pop.example.test"])

    def build(self, cert: TLSCertificate, **by_host: TLSCertificate) -> ServerTLS:
        tls = TLSConfig(default=cert, by_host=by_host)
        return ServerTLS.from_config(tls, ["example.test"], self.dir)

    def error(self, cert: TLSCertificate, **by_host: TLSCertificate) -> str:
        return str(self.assertRaises(TLSConfigError, self.build, cert, **by_host))

    def test_source(self) -> None:
        """A configured certificate is used; no self-signed file is made."""
        tls = self.build(self.good, **{"poppro.example.test": self.other})
        self.assertEqual(
            (
                tls.source,
                tls.host_sources,
                os.path.exists(os.path.join(self.dir, "tls")),
            ),
            (
                f"certificate from {self.good.certificate}",
                {"poppro.example.test": f"certificate from {self.other.certificate}"},
                False,
            ),
        )

    def test_alt_source(self) -> None:
        """An alternative chain of the other key type is loaded and logged."""
        ecdsa = write_cert(self.dir, "ecdsa", ["pop.example.test"], key_type="ecdsa")
        tls = self.build(dual(self.good, ecdsa))
        self.assertEqual(
            tls.source,
            f"certificates from {self.good.certificate} and {ecdsa.certificate}",
        )

    def test_alt_same_key_type(self) -> None:
        """Two chains of one key type cannot share a context: an error naming
        both files (OpenSSL would silently keep only the second)."""
        self.assertEqual(
            self.error(dual(self.good, self.other)),
            f"TLS certificates {self.good.certificate} and {self.other.certificate}"
            " both hold RSA keys: the alternative certificate must be of the"
            " other key type (RSA beside ECDSA)",
        )

    def test_alt_mismatched_key(self) -> None:
        """A wrong alternative key names its file and the alternative chain."""
        ecdsa = write_cert(self.dir, "ecdsa", ["pop.example.test"], key_type="ecdsa")
        wrong = write_cert(self.dir, "wrong", ["pop.example.test"], key_type="ecdsa")
        cert = TLSCertificate(
            self.good.certificate, self.good.key, ecdsa.certificate, wrong.key
        )
        self.assertEqual(
            self.error(cert),
            f"TLS key {wrong.key} does not match the certificate in "
            f"{ecdsa.certificate}",
        )

    def test_missing_certificate(self) -> None:
        """A missing certificate file is an error naming it."""
        missing = os.path.join(self.dir, "missing.pem")
        self.assertEqual(
            self.error(TLSCertificate(missing, self.good.key)),
            f"cannot read TLS certificate {missing}: No such file or directory",
        )

    def test_missing_key(self) -> None:
        """A missing key file is an error naming it."""
        missing = os.path.join(self.dir, "missing.key")
        self.assertEqual(
            self.error(TLSCertificate(self.good.certificate, missing)),
            f"cannot read TLS key {missing}: No such file or directory",
        )

    def test_unreadable_host_certificate(self) -> None:
        """A bad per-host certificate is an error naming its file."""
        self.assertEqual(
            self.error(
                self.good,
                **{"poppro.example.test": TLSCertificate(self.dir, self.good.key)},
            ),
            f"cannot read TLS certificate {self.dir}: Is a directory",
        )

    def test_mismatched_key(self) -> None:
        """A key that does not match the certificate names both files."""
        self.assertEqual(
            self.error(TLSCertificate(self.good.certificate, self.other.key)),
            f"TLS key {self.other.key} does not match the certificate in "
            f"{self.good.certificate}",
        )

    def test_not_pem(self) -> None:
        """A file that is not a PEM certificate or key is named."""
        junk = os.path.join(self.dir, "junk.pem")
        with open(junk, "w") as f:
            f.write("not a certificate\n")
        self.assertEqual(
            [
                self.error(TLSCertificate(junk, self.good.key)).split(":")[0],
                self.error(TLSCertificate(self.good.certificate, junk)).split(":")[0],
            ],
            [
                f"TLS certificate {junk} holds no usable PEM certificate",
                f"TLS key {junk} holds no usable unencrypted PEM private key",
            ],
        )


class SSLScanTests(TestCase):
    """sslscan from Debian's packages against every TLS listener of the real
    server, implicit and STLS/STARTTLS."""

    def test_every_listener(self) -> None:
        """No SSL, no TLS 1.0/1.1; only forward-secret AEAD suites."""
        sslscan = require_tool("sslscan")
        server = start_server(self)
        modes = {
            "pop3s": [],
            "smtps": [],
            "pop3": ["--starttls-pop3"],
            "submission": ["--starttls-smtp"],
            "mx": ["--starttls-smtp"],
        }
        report = {}
        for name, flags in modes.items():
            done = subprocess.run(
                [
                    sslscan,
                    "--no-colour",
                    "--no-heartbleed",
                    "--no-groups",
                    "--no-check-certificate",
                    *flags,
                    f"127.0.0.1:{server.ports[name]}",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            protocols = dict(
                re.findall(
                    r"^(SSLv2|SSLv3|TLSv1\.[0-3])\s+(enabled|disabled)$",
                    done.stdout,
                    re.M,
                )
            )
            ciphers = re.findall(
                r"^(?:Preferred|Accepted)\s+(TLSv1\.[0-3])\s+\d+ bits\s+(\S+)",
                done.stdout,
                re.M,
            )
            weak = [
                c
                for version, c in ciphers
                if not (
                    c.startswith("TLS_")
                    and version == "TLSv1.3"
                    or c.startswith("ECDHE-")
                    and ("GCM" in c or "CHACHA20" in c)
                )
            ]
            report[name] = (protocols, bool(ciphers), weak)
        expected_protocols = {
            "SSLv2": "disabled",
            "SSLv3": "disabled",
            "TLSv1.0": "disabled",
            "TLSv1.1": "disabled",
            "TLSv1.2": "enabled",
            "TLSv1.3": "enabled",
        }
        self.assertEqual(
            report, {name: (expected_protocols, True, []) for name in modes}
        )
