"""Property tests for the SASL PLAIN and LOGIN response decoders (zpop.sasl).

Each response either decodes to exactly what the client encoded or raises
SASLError with the kind a protocol turns into its refusal; nothing else.
"""

from __future__ import annotations

import base64
import binascii

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from zpop import sasl
from zpop.test import properties  # noqa: F401 (the hypothesis profile)

KINDS = {sasl.CANCELLED, sasl.BAD_BASE64, sasl.MALFORMED, sasl.OTHER_IDENTITY}

#: Identities and passwords: any bytes but NUL, the PLAIN separator.
no_nul = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b""))


#: Lines a client might send: raw bytes, or text made of base64's alphabet
#: (so that well- and badly-padded base64 both come up often).
response_lines = st.one_of(
    st.binary(max_size=80),
    st.text(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= *",
        max_size=40,
    ).map(str.encode),
)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


class DecodeProperties(SynchronousTestCase):
    @given(st.binary(min_size=1, max_size=200))
    def test_round_trip(self, data: bytes) -> None:
        """decode() returns exactly the bytes any client base64-encoded."""
        self.assertEqual(sasl.decode(b64(data)), data)

    @given(response_lines)
    def test_any_line(self, line: bytes) -> None:
        """Any line decodes as strict base64 would, or is refused with a kind."""
        try:
            decoded = sasl.decode(line)
        except sasl.SASLError as e:
            self.assertIn(e.kind, KINDS)
            if line.strip() == b"*":
                self.assertEqual(e.kind, sasl.CANCELLED)
            else:
                self.assertEqual(e.kind, sasl.BAD_BASE64)
                self.assertRaises(
                    binascii.Error, binascii.a2b_base64, line, strict_mode=True
                )
            return
        if line == b"=":
            self.assertEqual(decoded, b"")
        else:
            # Accepted: only base64's alphabet, padded to whole quanta.
            self.assertRegex(line, rb"^[A-Za-z0-9+/]*={0,2}$")
            self.assertEqual(len(line) % 4, 0)
            self.assertEqual(decoded, base64.b64decode(line, validate=True))

    @given(st.binary(min_size=1, max_size=30), st.sampled_from([b" ", b"\t", b"\r"]))
    def test_whitespace_refused(self, data: bytes, space: bytes) -> None:
        """Base64 with embedded whitespace is refused, not silently skipped."""
        encoded = b64(data)
        cut = len(encoded) // 2
        with self.assertRaises(sasl.SASLError) as caught:
            sasl.decode(encoded[:cut] + space + encoded[cut:])
        self.assertEqual(caught.exception.kind, sasl.BAD_BASE64)


class PlainProperties(SynchronousTestCase):
    @given(no_nul, no_nul, no_nul)
    def test_fields(self, authzid: bytes, authcid: bytes, password: bytes) -> None:
        """PLAIN gives back (authcid, password), or names why it refuses."""
        line = b64(authzid + b"\0" + authcid + b"\0" + password)
        same = authzid.strip().lower() == authcid.strip().lower()
        if not authcid:
            expected: object = (sasl.MALFORMED, "PLAIN")
        elif authzid and not same:
            expected = (sasl.OTHER_IDENTITY, "PLAIN")
        else:
            expected = (authcid, password)
        try:
            got: object = sasl.plain(line)
        except sasl.SASLError as e:
            got = (e.kind, e.mechanism)
        self.assertEqual(got, expected)

    @given(st.lists(no_nul, max_size=6).filter(lambda parts: len(parts) != 3))
    def test_wrong_field_count(self, parts: list[bytes]) -> None:
        """Anything but exactly three NUL-separated fields is MALFORMED."""
        with self.assertRaises(sasl.SASLError) as caught:
            sasl.plain(b64(b"\0".join(parts)) or b"=")
        self.assertEqual(
            (caught.exception.kind, caught.exception.mechanism),
            (sasl.MALFORMED, "PLAIN"),
        )

    @given(response_lines)
    def test_any_line(self, line: bytes) -> None:
        """Any PLAIN line gives two byte strings or a SASLError, nothing else."""
        try:
            user, password = sasl.plain(line)
        except sasl.SASLError as e:
            self.assertIn(e.kind, KINDS)
            return
        self.assertTrue(user)
        self.assertEqual(sasl.decode(line).split(b"\0")[1:], [user, password])


class LoginProperties(SynchronousTestCase):
    @given(st.binary(max_size=60))
    def test_user(self, user: bytes) -> None:
        """LOGIN's user is the decoded bytes; an empty one is MALFORMED."""
        line = b64(user) if user else b"="
        if user:
            self.assertEqual(sasl.login_user(line), user)
        else:
            with self.assertRaises(sasl.SASLError) as caught:
                sasl.login_user(line)
            self.assertEqual(
                (caught.exception.kind, caught.exception.mechanism),
                (sasl.MALFORMED, "LOGIN"),
            )
