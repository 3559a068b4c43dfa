"""The SASL response rules POP3 and SMTP share."""

from __future__ import annotations

import base64

from twisted.trial.unittest import SynchronousTestCase

from zpop import sasl


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


class SASLTests(SynchronousTestCase):
    def kind(self, parse: object, line: bytes) -> tuple[str, str]:
        with self.assertRaises(sasl.SASLError) as caught:
            parse(line)  # type: ignore[operator]
        return caught.exception.kind, caught.exception.mechanism

    def test_decode(self) -> None:
        """Base64 is strict; '=' is empty and '*' cancels."""
        self.assertEqual((sasl.decode(b64(b"x y")), sasl.decode(b"=")), (b"x y", b""))
        self.assertEqual(self.kind(sasl.decode, b" * "), (sasl.CANCELLED, ""))
        self.assertEqual(self.kind(sasl.decode, b"!!!"), (sasl.BAD_BASE64, ""))

    def test_plain(self) -> None:
        """PLAIN gives (login, password); the authorization identity may only
        repeat the login, in any case."""
        self.assertEqual(sasl.plain(b64(b"\0a@b.c\0pw d")), (b"a@b.c", b"pw d"))
        self.assertEqual(sasl.plain(b64(b"A@B.C\0a@b.c\0pw")), (b"a@b.c", b"pw"))
        self.assertEqual(
            self.kind(sasl.plain, b64(b"x@b.c\0a@b.c\0pw")),
            (sasl.OTHER_IDENTITY, "PLAIN"),
        )
        for bad in (b64(b"no nuls"), b64(b"\0\0pw"), b"="):
            self.assertEqual(self.kind(sasl.plain, bad), (sasl.MALFORMED, "PLAIN"))

    def test_login_user(self) -> None:
        """LOGIN's user name must not be empty."""
        self.assertEqual(sasl.login_user(b64(b"a@b.c")), b"a@b.c")
        self.assertEqual(self.kind(sasl.login_user, b"="), (sasl.MALFORMED, "LOGIN"))
