"""Property tests for every address parser in zpop.

- ``zpop.wire.paths.parse_path`` and ``zpop.smtp_transaction.split_path``: MAIL
  FROM / RCPT TO paths from the network;
- ``zpop.wire.addresses``: ``parse_address`` and ``parse_domain`` (the
  account grammar the operator's CLI uses, as ``zpop.admin.parse_address``),
  ``parse_configured_address`` (``[server] postmaster`` in the ini file) and
  ``LOGIN_NAME`` (the login name check);
- ``zpop.delivery.from_addresses``: the header From: of submitted mail.
"""

from __future__ import annotations

import re

from hypothesis import assume, given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from zpop import admin, delivery
from zpop.smtp_reply import Reply
from zpop.smtp_transaction import split_path
from zpop.test import properties  # noqa: F401 (the hypothesis profile)
from zpop.wire import addresses as grammar
from zpop.wire.paths import AddressError, parse_path

ATEXT = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789#$&'*+/=?^_`{|}~-"
)
LDH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: RFC 5321 dot-atom local parts (no % or !: those are relay tricks).
atoms = st.text(ATEXT, min_size=1, max_size=8)
local_parts = (
    st.lists(atoms, min_size=1, max_size=4).map(".".join).filter(lambda s: len(s) <= 64)
)
labels = st.builds(
    lambda a, mid, b: a + mid + b if mid or b else a,
    st.text(LDH, min_size=1, max_size=1),
    st.text(LDH + "-", max_size=8),
    st.text(LDH, max_size=1),
).filter(lambda s: not s.endswith("-"))
domains = st.lists(labels, min_size=2, max_size=4).map(".".join)
addresses = st.builds(lambda lp, d: f"{lp}@{d}", local_parts, domains)

#: Bytes near addresses: mostly address characters and the ones that matter.
path_bytes = st.one_of(
    st.binary(max_size=40),
    st.text(ATEXT + '.@%!"[]:\\ <>\t\r\n\0é', max_size=40).map(
        lambda s: s.encode("utf-8")
    ),
    addresses.map(str.encode),
)


class SMTPAddressProperties(SynchronousTestCase):
    @given(local_parts, domains)
    def test_valid_accepted(self, local: str, domain: str) -> None:
        """A dot-atom local part at a host name is accepted, domain lower-cased."""
        self.assertEqual(
            parse_path(f"{local}@{domain}".encode()), f"{local}@{domain.lower()}"
        )

    @given(path_bytes)
    def test_any_bytes(self, text: bytes) -> None:
        """Any path gives AddressError or a clean, re-parseable local@domain."""
        try:
            address = parse_path(text)
        except AddressError as e:
            self.assertTrue(str(e))
            return
        self.assertIsInstance(address, str)
        self.assertTrue(address.isascii())
        self.assertIsNone(CONTROL.search(address), address)
        local, _, domain = address.rpartition("@")
        self.assertTrue(local)
        self.assertLessEqual(len(local), 64)
        self.assertLessEqual(len(domain), 253)
        self.assertEqual(domain, domain.lower())
        self.assertNotIn("@", domain)
        self.assertNotIn("[", domain)
        if not local.startswith('"'):
            self.assertFalse(set(local) & set("%!@ "), local)
        # Idempotent: the canonical form parses to itself.
        self.assertEqual(parse_path(address.encode()), address)

    @given(
        local_parts,
        domains,
        domains,
        st.sampled_from(["route", "percent", "bang", "quoted", "two-at", "literal"]),
    )
    def test_relay_tricks(self, local: str, here: str, there: str, form: str) -> None:
        """Every open-relay trick form is refused and marked as a trick."""
        text = {
            "route": f"@{there}:{local}@{here}",
            "percent": f"{local}%{there}@{here}",
            "bang": f"{there}!{local}@{here}",
            "quoted": f'"{local}@{there}"@{here}',
            "two-at": f"{local}@{there}@{here}",
            "literal": f"{local}@[192.0.2.1]",
        }[form]
        with self.assertRaises(AddressError) as caught:
            parse_path(text.encode())
        self.assertTrue(caught.exception.trick, text)

    @given(
        st.sampled_from([b"FROM:", b"TO:"]),
        st.sampled_from([b"", b" "]),
        addresses.map(str.encode) | st.just(b""),
        st.lists(st.text(ATEXT, min_size=1, max_size=10).map(str.encode), max_size=3),
    )
    def test_split_path(
        self, keyword: bytes, space: bytes, address: bytes, params: list[bytes]
    ) -> None:
        """FROM:<addr> PARAMS splits into the address and the parameters."""
        argument = keyword.lower() + space + b"<" + address + b">"
        if params:
            argument += b" " + b" ".join(params)
        self.assertEqual(split_path(argument, keyword), (address, params))

    @given(st.sampled_from([b"FROM:", b"TO:"]), path_bytes, path_bytes)
    def test_split_any(self, keyword: bytes, inside: bytes, tail: bytes) -> None:
        """Any MAIL/RCPT argument gives a 501 Reply or a path from inside <>."""
        argument = keyword + inside + tail
        try:
            path, params = split_path(argument, keyword)
        except Reply as e:
            self.assertEqual((e.code, e.status), (501, "5.5.4"))
            return
        self.assertIn(b"<" + path + b">", argument)
        self.assertTrue(all(params) and not any(b" " in p for p in params))


class AdminAddressProperties(SynchronousTestCase):
    @given(addresses)
    def test_valid_accepted(self, address: str) -> None:
        """The CLI accepts any valid address, lower-cased, and idempotently."""
        parsed = admin.parse_address(address)
        self.assertEqual(parsed, address.lower())
        self.assertEqual(admin.parse_address(parsed), parsed)

    @given(path_bytes.map(lambda b: b.decode("utf-8", "replace")))
    def test_any_text(self, text: str) -> None:
        """Any text: ValueError quoting it, or an address auth and config accept."""
        try:
            parsed = admin.parse_address(text)
        except ValueError as e:
            self.assertIn(repr(text), str(e))
            return
        self.assertEqual(parsed, parsed.lower())
        self.assertEqual(admin.parse_address(parsed), parsed)
        self.assertIsNone(CONTROL.search(parsed))
        self.assertRegex(parsed, grammar.LOGIN_NAME)
        self.assertEqual(grammar.parse_configured_address(parsed), parsed)

    @given(
        st.lists(
            st.text(ATEXT + "!%", min_size=1, max_size=6), min_size=1, max_size=3
        ).map(".".join),
        domains,
    )
    def test_accounts_can_receive_mail(self, local: str, domain: str) -> None:
        """Every address the CLI accepts for an account is one SMTP accepts;
        "%" and "!" (relay tricks to SMTP) are refused by both."""
        try:
            parsed = admin.parse_address(f"{local}@{domain}")
        except ValueError:
            self.assertTrue("%" in local or "!" in local, local)
            return
        self.assertEqual(parse_path(parsed.encode()), parsed)

    @given(domains | st.text(LDH + ".-_ é", max_size=30) | st.text(max_size=20))
    def test_domain(self, text: str) -> None:
        """parse_domain gives ValueError or a lower-case name of valid labels."""
        try:
            name = admin.parse_domain(text)
        except ValueError as e:
            self.assertTrue(str(e))
            return
        self.assertEqual(name, name.lower())
        self.assertLessEqual(len(name), 253)
        self.assertGreaterEqual(name.count("."), 1)
        self.assertEqual(admin.parse_domain(name), name)
        self.assertEqual(parse_path(b"x@" + name.encode()), "x@" + name)


class ConfigAddressProperties(SynchronousTestCase):
    @given(path_bytes.map(lambda b: b.decode("utf-8", "replace")))
    def test_postmaster(self, text: str) -> None:
        """[server] postmaster gives ValueError or a lower-case full address."""
        try:
            address = grammar.parse_configured_address(text)
        except ValueError as e:
            self.assertIn("full address", str(e))
            return
        self.assertEqual(address, address.lower())
        local, at, domain = address.rpartition("@")
        self.assertTrue(local and at and domain)
        self.assertFalse(any(c.isspace() for c in address))
        self.assertEqual(grammar.parse_configured_address(address), address)


class FromHeaderProperties(SynchronousTestCase):
    @given(addresses, st.text(LDH + " ", max_size=20))
    def test_from_address(self, address: str, name: str) -> None:
        """From: "Name" <addr> yields exactly the address, lower-cased."""
        body = f'From: "{name}" <{address}>\r\nSubject: x\r\n\r\nbody\r\n'.encode()
        self.assertEqual(delivery.from_addresses(body), [address.lower()])

    @given(st.lists(addresses, min_size=1, max_size=3))
    def test_folded_list(self, found: list[str]) -> None:
        """A folded From: with several mailboxes yields all of them, in order."""
        value = ",\r\n\t".join(f"<{a}>" for a in found)
        body = f"From: {value}\r\n\r\nx\r\n".encode()
        self.assertEqual(delivery.from_addresses(body), [a.lower() for a in found])

    @given(st.binary(max_size=60))
    def test_any_value(self, value: bytes) -> None:
        """Any From: value gives a non-empty list of lower-case strings."""
        assume(b"\r" not in value and b"\n" not in value)
        body = b"From:" + value + b"\r\n\r\nx\r\n"
        found = delivery.from_addresses(body)
        self.assertIsInstance(found, list)
        assert found is not None
        self.assertTrue(found)
        for address in found:
            self.assertIsInstance(address, str)
            self.assertEqual(address, address.lower())

    @given(st.binary(max_size=80))
    def test_no_from(self, body: bytes) -> None:
        """A header section without From: gives None (submission adds one)."""
        assume(b"from" not in body.lower())
        self.assertIsNone(delivery.from_addresses(body + b"\r\n\r\nx\r\n"))
