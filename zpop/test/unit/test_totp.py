"""TOTP (zpop.accounts.totp): RFC 6238's test vectors, the window, replay
protection, typed input, the setup key and URI, the QR code, and the
sealing of the secret under the server key."""

from __future__ import annotations

import base64
import urllib.parse

from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts import totp

#: RFC 6238 Appendix B's SHA-1 seed.
RFC_SECRET = b"12345678901234567890"
#: Appendix B's SHA-1 column (8 digits), as 6-digit codes: the last six.
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]
KEY = b"k" * 32
NOW = 1_700_000_000.0
STEP = totp.step_at(NOW)


class CodeTests(SynchronousTestCase):
    def test_rfc6238_vectors(self) -> None:
        """Each of Appendix B's SHA-1 times gives its code, to 6 digits."""
        self.assertEqual(
            [totp.code_at(RFC_SECRET, totp.step_at(t)) for t, _ in RFC_VECTORS],
            [code[-6:] for _, code in RFC_VECTORS],
        )

    def test_rfc6238_examples_named_in_the_brief(self) -> None:
        """T=59 is 287082 and T=1111111109 is 081804 (a leading zero kept)."""
        self.assertEqual(totp.code_at(RFC_SECRET, totp.step_at(59)), "287082")
        self.assertEqual(totp.code_at(RFC_SECRET, totp.step_at(1111111109)), "081804")

    def test_rfc6238_vectors_accepted(self) -> None:
        """accepted_step takes each vector's code at its own time."""
        for t, code in RFC_VECTORS:
            self.assertEqual(
                totp.accepted_step(RFC_SECRET, code[-6:], t, None), t // 30
            )

    def test_step(self) -> None:
        """A step is 30 seconds, counted from the epoch."""
        self.assertEqual(
            [totp.step_at(t) for t in (0, 29.9, 30, 59, 60)], [0, 0, 1, 1, 2]
        )


class AcceptedStepTests(SynchronousTestCase):
    def code(self, offset: int) -> str:
        return totp.code_at(RFC_SECRET, STEP + offset)

    def test_window(self) -> None:
        """Codes of one step either side of now are accepted, for their own
        step; two steps away they are not."""
        self.assertEqual(
            [
                totp.accepted_step(RFC_SECRET, self.code(k), NOW, None)
                for k in (-2, -1, 0, 1, 2)
            ],
            [None, STEP - 1, STEP, STEP + 1, None],
        )

    def test_replay(self) -> None:
        """A code of the last accepted step, or of an earlier one, is
        refused; the next step's code is accepted."""
        self.assertIsNone(totp.accepted_step(RFC_SECRET, self.code(0), NOW, STEP))
        self.assertIsNone(totp.accepted_step(RFC_SECRET, self.code(-1), NOW, STEP))
        self.assertEqual(
            totp.accepted_step(RFC_SECRET, self.code(1), NOW, STEP), STEP + 1
        )
        self.assertIsNone(totp.accepted_step(RFC_SECRET, self.code(1), NOW, STEP + 1))

    def test_typed_forms(self) -> None:
        """Spaces inside and around a code are ignored, as apps show
        "123 456"."""
        code = self.code(0)
        for typed in (f" {code} ", f"{code[:3]} {code[3:]}", f"{code}\n"):
            self.assertEqual(totp.accepted_step(RFC_SECRET, typed, NOW, None), STEP)

    def test_malformed_refused(self) -> None:
        """Anything but six ASCII digits is refused: letters, signs, other
        lengths, other scripts' digits, nothing."""
        code = self.code(0)
        fullwidth = "".join(chr(ord(c) - ord("0") + 0xFF10) for c in code)
        for typed in (
            "",
            code[:5],
            code + "0",
            "0" + code,
            code[:5] + "a",
            f"-{code[1:]}",
            f"{code[:3]}-{code[3:]}",
            fullwidth,
            "١٢٣٤٥٦",
        ):
            self.assertIsNone(totp.accepted_step(RFC_SECRET, typed, NOW, None), typed)
        self.assertIsNone(totp.normalize_code("12345a"))
        self.assertEqual(totp.normalize_code(" 123 456 "), "123456")

    def test_wrong_secret(self) -> None:
        """Another secret's code is refused."""
        other = totp.code_at(b"x" * 20, STEP)
        if other != self.code(0):
            self.assertIsNone(totp.accepted_step(RFC_SECRET, other, NOW, None))

    def test_near_the_epoch(self) -> None:
        """In the first step there is no step before it to try."""
        code = totp.code_at(RFC_SECRET, 0)
        self.assertEqual(totp.accepted_step(RFC_SECRET, code, 10.0, None), 0)


class SecretTextTests(SynchronousTestCase):
    def test_new_secret(self) -> None:
        """A secret has 160 random bits."""
        secrets = {totp.new_secret() for _ in range(5)}
        self.assertEqual({len(s) for s in secrets}, {20})
        self.assertEqual(len(secrets), 5)

    def test_text_in_groups_of_four(self) -> None:
        """The setup key is unpadded base32 in eight groups of four, and
        reads back to the secret, typed in any case or spacing."""
        text = totp.secret_text(RFC_SECRET)
        self.assertEqual(text, "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ")
        self.assertEqual(totp.parse_secret_text(text), RFC_SECRET)
        self.assertEqual(
            totp.parse_secret_text(text.lower().replace(" ", "")), RFC_SECRET
        )

    def test_text_refused(self) -> None:
        """Text that is not base32 of a 160-bit secret is refused."""
        for text in ("not base32!", "GEZD GNBV", "1111 1111"):
            self.assertRaises(ValueError, totp.parse_secret_text, text)


class ProvisioningTests(SynchronousTestCase):
    def test_uri(self) -> None:
        """The URI is Google's Key Uri Format: issuer:address label, the
        secret without spaces, and the defaults spelled out."""
        self.assertEqual(
            totp.provisioning_uri(RFC_SECRET, "alice@example.com", "Example Mail"),
            "otpauth://totp/Example%20Mail:alice@example.com"
            "?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Example%20Mail"
            "&algorithm=SHA1&digits=6&period=30",
        )

    def test_uri_quotes_the_address(self) -> None:
        """Characters of an address that mean something in a URI are
        quoted, and read back as they were."""
        uri = totp.provisioning_uri(RFC_SECRET, "a+b@example.com", "zpop")
        path = urllib.parse.urlsplit(uri).path
        self.assertEqual(urllib.parse.unquote(path), "/zpop:a+b@example.com")
        self.assertIn("a%2Bb@example.com", uri)

    def test_issuer_with_colon_refused(self) -> None:
        """An issuer containing ':' would split the label wrongly."""
        self.assertRaises(
            ValueError, totp.provisioning_uri, RFC_SECRET, "a@example.com", "a:b"
        )
        self.assertRaises(
            ValueError, totp.provisioning_uri, RFC_SECRET, "a@example.com", " "
        )

    def test_qr_svg(self) -> None:
        """The QR code is one inline SVG element: no XML declaration, no
        script, a white background so it scans on a dark page."""
        uri = totp.provisioning_uri(RFC_SECRET, "alice@example.com", "zpop")
        svg = totp.qr_svg(uri)
        self.assertTrue(svg.startswith("<svg "), svg[:40])
        self.assertTrue(svg.endswith("</svg>"), svg[-40:])
        self.assertNotIn("<?xml", svg)
        self.assertNotIn("script", svg.lower())
        self.assertIn('xmlns="http://www.w3.org/2000/svg"', svg)
        self.assertIn('class="totp-qr"', svg)
        self.assertIn("#fff", svg)
        self.assertNotIn("\n", svg)
        self.assertEqual(totp.qr_svg(uri), svg)


class SealTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """A sealed secret opens with the same key for the same address (in
        any case); the sealed bytes do not contain the secret and differ at
        each sealing (a fresh nonce)."""
        sealed = totp.seal(KEY, RFC_SECRET, "alice@example.com")
        self.assertEqual(totp.unseal(KEY, sealed, "alice@example.com"), RFC_SECRET)
        self.assertEqual(totp.unseal(KEY, sealed, "Alice@Example.com"), RFC_SECRET)
        self.assertNotIn(RFC_SECRET, sealed)
        self.assertNotIn(base64.b32encode(RFC_SECRET), sealed)
        self.assertNotEqual(totp.seal(KEY, RFC_SECRET, "alice@example.com"), sealed)
        self.assertEqual(len(sealed), 1 + 12 + 20 + 16)

    def test_other_key_refused(self) -> None:
        """Another server key does not open it."""
        sealed = totp.seal(KEY, RFC_SECRET, "alice@example.com")
        with self.assertRaises(totp.SealError) as caught:
            totp.unseal(b"o" * 32, sealed, "alice@example.com")
        self.assertEqual(
            str(caught.exception),
            "the sealed TOTP secret does not open with this server key for this"
            " account",
        )

    def test_other_address_refused(self) -> None:
        """A secret sealed for one account does not open for another."""
        sealed = totp.seal(KEY, RFC_SECRET, "alice@example.com")
        self.assertRaises(totp.SealError, totp.unseal, KEY, sealed, "bob@example.com")

    def test_damage_refused(self) -> None:
        """A flipped bit, a truncated blob or an unknown version is refused."""
        sealed = totp.seal(KEY, RFC_SECRET, "alice@example.com")
        flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
        for bad in (flipped, sealed[:20], b"", b"\x02" + sealed[1:]):
            self.assertRaises(
                totp.SealError, totp.unseal, KEY, bad, "alice@example.com"
            )

    def test_only_secrets_sealed(self) -> None:
        """Sealing anything but a 160-bit secret is a programming error."""
        self.assertRaises(ValueError, totp.seal, KEY, b"short", "alice@example.com")
