"""Tests for DKIM keys and signing (zpop.mailauth.dkim_keys, zpop.mailauth.dkim):
selector names, TXT records, rotation with a fake clock, signatures that
dkimpy verifies from the published records, and the queueing paths that
sign. Keys live in a MemoryKeyStore: no disk."""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

import dkim
from cryptography.hazmat.primitives import serialization
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from zpop import delivery
from zpop.accounts import dns_records
from zpop.accounts.errors import NotHosted
from zpop.config import Config
from zpop.mailauth import dkim_keys
from zpop.mailauth.dkim import (
    RELOAD_INTERVAL,
    DkimSigner,
    NoSigner,
    from_domain,
    signed_fields,
)
from zpop.mailauth.dkim_keys import (
    ED25519,
    RSA,
    DkimKeys,
    MemoryKeyStore,
    Selector,
    domain_dkim,
    selector_name,
    txt_value,
)
from zpop.test.stores import add_account, make_store, result
from zpop.test.unit.test_api import ApiCase
from zpop.threads import run_synchronously
from zpop.web.site import Router

#: 2026-12-02T07:40:28Z
NOW = 1796197228.0
LIFETIME = 5 * 86400.0

# Made once: RSA key generation is what would make these tests slow.
_POOL = {
    RSA: [dkim_keys.new_private_key(RSA) for _ in range(3)],
    ED25519: [dkim_keys.new_private_key(ED25519) for _ in range(3)],
}


def made_keys() -> Callable[[str], bytes]:
    """A key generator handing out the pool's keys in turn."""
    cycles = {a: itertools.cycle(keys) for a, keys in _POOL.items()}
    return lambda algorithm: next(cycles[algorithm])


MESSAGE = (
    b"Received: from client (127.0.0.1)\r\n\tby smtp.example.com with ESMTPSA"
    b" id 1;\r\n\tWed, 02 Dec 2026 07:40:28 +0000\r\n"
    b"From: Bob <bob@example.com>\r\nTo: a@remote.example\r\n"
    b"Cc: c@remote.example\r\nSubject: hello\r\n"
    b"Date: Wed, 02 Dec 2026 07:40:28 +0000\r\nMessage-ID: <1@example.com>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"X-Other: not signed\r\n\r\nbody line\r\n\r\n"
)


class Fixture:
    """A domain's keys in memory, a clock, a synchronous signer."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = MemoryKeyStore()
        self.keys = DkimKeys(self.store, self.clock, LIFETIME, made_keys())
        self.signer = DkimSigner(self.store, run_synchronously, self.clock)

    def dns(self, domain: str = "example.com") -> dict[bytes, bytes]:
        """The TXT records published now, as DNS would answer them."""
        return {
            f"{key.name}.".encode(): key.value.encode()
            for key in self.keys.published(domain)
        }


def signatures(message: bytes) -> list[bytes]:
    """The DKIM-Signature fields at the top of ``message``, unfolded."""
    found = re.findall(rb"DKIM-Signature:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*", message)
    return [re.sub(rb"\r\n[ \t]", b" ", f) for f in found]


def tags(field: bytes) -> dict[str, str]:
    value = field.split(b":", 1)[1].decode()
    pairs = (t.split("=", 1) for t in value.split(";") if "=" in t)
    return {k.strip(): "".join(v.split()) for k, v in pairs}


def verify_each(message: bytes, records: dict[bytes, bytes]) -> list[bool]:
    """dkimpy's verdict on each signature of ``message``, in order."""
    verifier = dkim.DKIM(message)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    def one(idx: int) -> bool:
        try:
            return bool(verifier.verify(idx=idx, dnsfunc=dnsfunc))
        except dkim.DKIMException:
            return False

    return [one(i) for i in range(len(signatures(message)))]


class SelectorTests(SynchronousTestCase):
    def test_names(self) -> None:
        """A selector is z + UTC time + r or e: one DNS label per algorithm."""
        self.assertEqual(
            [selector_name(a, NOW, set()) for a in (RSA, ED25519)],
            ["z20261202t074028r", "z20261202t074028e"],
        )

    def test_unique_within_a_second(self) -> None:
        """A name already taken moves the stamp on by a second."""
        self.assertEqual(
            selector_name(RSA, NOW + 0.5, {"z20261202t074028r", "z20261202t074029r"}),
            "z20261202t074030r",
        )


class RecordTests(SynchronousTestCase):
    def test_rsa_record(self) -> None:
        """The RSA record is v=DKIM1; k=rsa; p= the SubjectPublicKeyInfo."""
        pem = _POOL[RSA][0]
        key = serialization.load_pem_private_key(pem, None)
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.assertEqual(
            txt_value(RSA, pem),
            f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}",
        )

    def test_ed25519_record(self) -> None:
        """The Ed25519 record's p= is the raw 32-byte key (RFC 8463 §4.2)."""
        value = txt_value(ED25519, _POOL[ED25519][0])
        prefix = "v=DKIM1; k=ed25519; p="
        self.assertTrue(value.startswith(prefix), value)
        self.assertEqual(len(base64.b64decode(value[len(prefix) :])), 32)

    def test_zone_lines_split_long_values(self) -> None:
        """An RSA-2048 record (over 255 characters) is split into quoted
        strings of at most 255 that join into the value."""
        f = Fixture()
        made = f.keys.make("example.com")
        records = dns_records.dkim_records(made.published)
        self.assertEqual(
            [(r.name, r.type) for r in records],
            [
                ("z20261202t074028r._domainkey.example.com.", "TXT"),
                ("z20261202t074028e._domainkey.example.com.", "TXT"),
            ],
        )
        strings = re.findall(r'"([^"]*)"', records[0].data)
        self.assertEqual(
            (len(strings), max(map(len, strings)) <= 255, "".join(strings)),
            (2, True, made.published[0].value),
        )
        self.assertEqual(records[1].data, f'"{made.published[1].value}"')

    def test_domain_dns_lists_keys_and_quarantines(self) -> None:
        """``zpop domain dns`` lists the DKIM records, drops the "no keys
        yet" note and asks DMARC for quarantine."""
        f = Fixture()
        store = make_store()
        f.keys.make("example.com")
        found = result(
            dns_records.domain_records(store, Config(), "example.com", f.keys)
        )
        names = [r.name for r in found.records if "_domainkey" in r.name]
        dmarc = [r.data for r in found.records if r.name.startswith("_dmarc.")]
        self.assertEqual(
            (names, dmarc[0].split(";")[1], [n for n in found.notes if "DKIM" in n]),
            (
                [
                    "z20261202t074028r._domainkey.example.com.",
                    "z20261202t074028e._domainkey.example.com.",
                ],
                " p=quarantine",
                [],
            ),
        )


class RotationTests(SynchronousTestCase):
    def test_make_once(self) -> None:
        """The first run makes one key of each; the next one changes nothing."""
        f = Fixture()
        first = f.keys.make("example.com")
        again = f.keys.make("example.com")
        self.assertEqual(
            (
                [(s.name, s.algorithm, s.retired) for s in first.made],
                again.made,
                again.published,
            ),
            (
                [
                    ("z20261202t074028r", RSA, None),
                    ("z20261202t074028e", ED25519, None),
                ],
                (),
                first.published,
            ),
        )

    def test_rotate_keeps_old_published_for_the_queue_lifetime(self) -> None:
        """After --rotate the old selectors stop signing but stay published
        until retired + lifetime; then they are unpublished, and the next
        rotation deletes their keys."""
        f = Fixture()
        f.keys.make("example.com")
        f.clock.advance(3600)
        rotated = f.keys.make("example.com", rotate=True)
        self.assertEqual(
            (
                [s.name for s in rotated.retired],
                {s.retired for s in rotated.retired},
                [s.name for s in rotated.made],
                [p.selector.name for p in rotated.published],
            ),
            (
                ["z20261202t074028r", "z20261202t074028e"],
                {NOW + 3600},
                ["z20261202t084028r", "z20261202t084028e"],
                [
                    "z20261202t074028r",
                    "z20261202t074028e",
                    "z20261202t084028r",
                    "z20261202t084028e",
                ],
            ),
        )
        f.clock.advance(LIFETIME - 1)
        self.assertEqual(len(f.keys.published("example.com")), 4)
        f.clock.advance(1)
        self.assertEqual(
            [p.selector.name for p in f.keys.published("example.com")],
            ["z20261202t084028r", "z20261202t084028e"],
        )
        f.keys.make("example.com", rotate=True)
        self.assertEqual(
            [(s.name, s.retired is None) for s in f.keys.selectors("example.com")],
            [
                ("z20261202t084028r", False),
                ("z20261202t084028e", False),
                ("z20261207t084028r", True),
                ("z20261207t084028e", True),
            ],
        )
        self.assertRaises(
            dkim_keys.DkimKeyError,
            f.store.private_key,
            "example.com",
            "z20261202t074028r",
        )

    def test_rotate_twice_in_one_second(self) -> None:
        """Two rotations in the same second still give unique selectors."""
        f = Fixture()
        f.keys.make("example.com")
        f.keys.make("example.com", rotate=True)
        names = [s.name for s in f.keys.selectors("example.com")]
        self.assertEqual(len(set(names)), 4)

    def test_not_hosted(self) -> None:
        """``zpop domain dkim`` refuses a domain that is not hosted and
        makes nothing."""
        f = Fixture()
        failure = self.failureResultOf(
            domain_dkim(make_store(), f.keys, "elsewhere.example"), NotHosted
        )
        self.assertEqual(
            (str(failure.value), f.store.state()),
            ("elsewhere.example is not a hosted domain", {}),
        )


class SigningTests(SynchronousTestCase):
    def test_two_signatures_that_verify(self) -> None:
        """A message from a hosted domain gets an rsa-sha256 and an
        ed25519-sha256 signature, relaxed/relaxed, prepended above the
        Received field, and both verify from the published records."""
        f = Fixture()
        f.keys.make("example.com")
        signed = f.signer.sign_now(MESSAGE)
        fields = signatures(signed)
        self.assertTrue(signed.endswith(b"\r\n" + MESSAGE))
        self.assertTrue(signed.startswith(b"DKIM-Signature: "))
        self.assertEqual(
            [
                {k: tags(field)[k] for k in ("a", "c", "d", "s", "h")}
                for field in fields
            ],
            [
                {
                    "a": algorithm,
                    "c": "relaxed/relaxed",
                    "d": "example.com",
                    "s": f"z20261202t074028{letter}",
                    "h": "from:to:cc:subject:date:message-id:mime-version:"
                    "content-type:from",
                }
                for algorithm, letter in ((RSA, "r"), (ED25519, "e"))
            ],
        )
        self.assertEqual(verify_each(signed, f.dns()), [True, True])

    def test_changed_message_fails(self) -> None:
        """A changed body or signed field breaks both signatures."""
        f = Fixture()
        f.keys.make("example.com")
        signed = f.signer.sign_now(MESSAGE)
        for changed in (
            signed.replace(b"body line", b"body lie"),
            signed.replace(b"Subject: hello", b"Subject: hullo"),
            signed.replace(b"From: Bob", b"From: Bob <x@evil.example>\r\nFrom: Bob"),
        ):
            self.assertEqual(verify_each(changed, f.dns()), [False, False])

    def test_unsigned_without_keys(self) -> None:
        """Mail whose From: domain (nor a parent) has keys is left as it is."""
        f = Fixture()
        f.keys.make("corp.example")
        self.assertEqual(f.signer.sign_now(MESSAGE), MESSAGE)
        no_from = MESSAGE.replace(b"From: Bob <bob@example.com>\r\n", b"")
        self.assertEqual(f.signer.sign_now(no_from), no_from)

    def test_parent_domain_signs(self) -> None:
        """A DSN from MAILER-DAEMON@smtp.example.com is signed d=example.com
        (aligned under DMARC's relaxed mode)."""
        f = Fixture()
        f.keys.make("example.com")
        message = MESSAGE.replace(
            b"Bob <bob@example.com>",
            b"Mail Delivery System <MAILER-DAEMON@smtp.example.com>",
        )
        signed = f.signer.sign_now(message)
        self.assertEqual(
            [tags(s)["d"] for s in signatures(signed)], ["example.com", "example.com"]
        )
        self.assertEqual(verify_each(signed, f.dns()), [True, True])

    def test_from_domain_and_fields(self) -> None:
        """The From: domain is read from encoded and folded fields; h= has
        each signed field as often as it occurs, From once more."""
        self.assertEqual(
            [
                from_domain(
                    b"From: =?utf-8?q?B=C3=B6b?=\r\n <Bob@Example.COM>\r\n\r\n"
                ),
                from_domain(b"To: x@y\r\n\r\nFrom: a@b.example\r\n"),
                from_domain(b"From: undisclosed\r\n\r\n"),
            ],
            ["example.com", None, None],
        )
        self.assertEqual(
            signed_fields(b"From: a@b\r\nTo: x\r\nTo: y\r\nX: z\r\n\r\nTo: body\r\n"),
            [b"from", b"to", b"to", b"from"],
        )

    def test_reload_after_rotation(self) -> None:
        """A rotation is seen by a running signer at its next look, at most
        RELOAD_INTERVAL seconds later: new mail is signed with the new
        selectors, and mail signed before still verifies from what is
        published."""
        f = Fixture()
        f.keys.make("example.com")
        before = f.signer.sign_now(MESSAGE)
        f.keys.make("example.com", rotate=True)
        f.clock.advance(RELOAD_INTERVAL - 1)
        soon = f.signer.sign_now(MESSAGE)
        f.clock.advance(1)
        after = f.signer.sign_now(MESSAGE)
        self.assertEqual(
            [[tags(s)["s"] for s in signatures(m)] for m in (soon, after)],
            [
                ["z20261202t074028r", "z20261202t074028e"],
                ["z20261202t074029r", "z20261202t074029e"],
            ],
        )
        dns = f.dns()
        self.assertEqual(verify_each(before, dns) + verify_each(after, dns), [True] * 4)

    def test_openssl_rsa_is_dkimpys(self) -> None:
        """The RSA signature made by OpenSSL is byte for byte dkimpy's own
        pure-Python one, and dkimpy's signing uses it."""
        import hashlib

        import dkim.crypto

        from zpop.mailauth import dkim as signing

        key = dkim.crypto.parse_pem_private_key(_POOL[RSA][1])
        digest = hashlib.sha256(b"the canonical header fields")
        self.assertEqual(
            signing.openssl_rsa_sign(digest, key),
            bytes(signing._pure_python_rsa_sign(digest, key)),
        )
        self.assertIs(dkim.RSASSA_PKCS1_v1_5_sign, signing.openssl_rsa_sign)

    def test_failure_queues_unsigned(self) -> None:
        """A signing error is logged and the message goes on unsigned."""
        f = Fixture()

        def broken(call: Callable[..., Any], *args: Any) -> Deferred[bytes]:
            return defer.fail(ValueError("damaged key"))

        signer = DkimSigner(f.store, broken, f.clock)
        self.assertEqual(self.successResultOf(signer.sign(MESSAGE)), MESSAGE)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_damaged_key_keeps_the_loaded_ones(self) -> None:
        """A domain's keys that cannot be read are not loaded: that domain
        goes on with the keys it had (none: unsigned, no exception), the
        others are loaded all the same."""
        f = Fixture()
        damaged = (Selector("z1r", RSA, NOW),), {"z1r": b"not a key"}
        f.store.save("corp.example", *damaged)
        corp = MESSAGE.replace(b"bob@example.com", b"bob@corp.example")
        self.assertEqual(f.signer.sign_now(corp), corp)
        f.keys.make("example.com")
        f.clock.advance(RELOAD_INTERVAL)
        self.assertEqual(len(signatures(f.signer.sign_now(MESSAGE))), 2)
        f.store.save("corp.example", (), {})
        f.keys.make("corp.example")
        f.clock.advance(RELOAD_INTERVAL)
        self.assertEqual(len(signatures(f.signer.sign_now(corp))), 2)
        f.store.save("corp.example", *damaged)
        f.clock.advance(RELOAD_INTERVAL)
        self.assertEqual(len(signatures(f.signer.sign_now(corp))), 2)


class QueueingTests(SynchronousTestCase):
    """The paths that queue mail sign it once, and only those."""

    def setUp(self) -> None:
        self.fixture = Fixture()
        self.fixture.keys.make("example.com")
        self.store: Any = cast(Any, make_store())
        self.bob = add_account(self.store, "bob@example.com", password=None)
        self.config = Config()

    def queued_body(self) -> bytes:
        (message,) = result(self.store.list_outbound())
        body: bytes = result(self.store.read_outbound_body(message.id, 0, 10**6))
        return body

    def commit(self, submitter: Any) -> None:
        router = delivery.SMTPDelivery(
            self.store,
            self.config.submission,
            LIFETIME,
            self.fixture.clock,
            signer=self.fixture.signer,
        )
        body = MESSAGE.split(b"\r\n\tWed, 02 Dec 2026 07:40:28 +0000\r\n", 1)[1]
        envelope = delivery.Envelope(
            "bob@example.com", (self.bob,), ("a@remote.example",), submitter
        )
        result(router.commit(envelope, body, b"Received: x\r\n"))

    def test_submission_is_signed(self) -> None:
        """Submitted mail is queued with two signatures over the trace and
        the message; the local and Sent copies are not signed."""
        self.commit(self.bob)
        queued = self.queued_body()
        self.assertEqual(len(signatures(queued)), 2)
        self.assertTrue(queued.split(b"Received: x\r\n")[0].startswith(b"DKIM-"))
        self.assertEqual(verify_each(queued, self.fixture.dns()), [True, True])
        for folder in ("Inbox", "Sent"):
            (stored,) = result(self.store.list_messages(self.bob.id, folder))
            body = result(self.store.read_body(stored.id, 0, 10**6))
            self.assertNotIn(b"DKIM-Signature", body)

    def test_mx_mail_is_not_signed(self) -> None:
        """Mail that did not come from a logged-in user never gets our
        signature, whatever its From: says."""
        self.commit(None)
        self.assertNotIn(b"DKIM-Signature", self.queued_body())

    def test_system_mail_is_signed(self) -> None:
        """The server's own mail to another domain is signed."""
        body = MESSAGE.replace(b"Bob <bob@example.com>", b"no-reply@smtp.example.com")
        result(
            delivery.send_system_mail(
                self.store,
                self.fixture.clock,
                "no-reply@smtp.example.com",
                "a@remote.example",
                body,
                LIFETIME,
                self.fixture.signer,
            )
        )
        self.assertEqual(
            verify_each(self.queued_body(), self.fixture.dns()), [True, True]
        )

    def test_no_signer(self) -> None:
        """NoSigner leaves a message as it is."""
        self.assertEqual(self.successResultOf(NoSigner().sign(MESSAGE)), MESSAGE)


class ApiRecordsTests(ApiCase):
    """The settings API lists the same DKIM records as ``zpop domain dns``."""

    def test_admin_domain_dns(self) -> None:
        """GET /admin/domains/D/dns has the DKIM records, and a note for the
        retired selectors."""
        fixture = Fixture()
        fixture.keys.make("example.com")
        fixture.keys.make("example.com", rotate=True)
        self.router = Router(replace(self.router._web, dkim=fixture.keys))
        token = self.token(None, "read", "ops")
        found = self.api("GET", "/admin/domains/example.com/dns", token=token)
        expected = dns_records.dkim_records(fixture.keys.published("example.com"))
        self.assertEqual(
            [r for r in found.body["records"] if "_domainkey" in r["name"]],
            [
                {"name": r.name, "ttl": r.ttl, "type": r.type, "data": r.data}
                for r in expected
            ],
        )
        self.assertIn(
            "DKIM: z20261202t074028r, z20261202t074028e retired (mail they signed"
            " may still be queued): keep their records while they are listed here",
            found.body["notes"],
        )

    def test_admin_domain_dns_unreadable_key(self) -> None:
        """A key file that cannot be read is a 503 naming it, not a crash."""
        fixture = Fixture()
        fixture.keys.make("example.com")
        selectors = fixture.keys.selectors("example.com")
        fixture.keys.keys.save(
            "example.com", selectors, {}, tuple(s.name for s in selectors)
        )
        self.router = Router(replace(self.router._web, dkim=fixture.keys))
        token = self.token(None, "read", "ops")
        found = self.api("GET", "/admin/domains/example.com/dns", token=token)
        self.assertEqual(
            (found.status, found.body["error"]["code"]),
            (503, "dkim_keys_unreadable"),
        )
        self.assertIn(
            f"no key for selector {selectors[0].name}", found.body["error"]["message"]
        )
