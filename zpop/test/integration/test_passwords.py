"""Tests for zpop.accounts.passwords: server key, bcrypt, app-specific passwords."""

from __future__ import annotations

import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts import passwords


class KeyTests(SynchronousTestCase):
    def test_created_private(self) -> None:
        """The key is made once, 32 bytes, mode 0600, and reused after."""
        directory = self.mktemp()
        os.makedirs(directory)
        key = passwords.load_or_create_key(directory)
        path = os.path.join(directory, passwords.KEY_NAME)
        self.assertEqual(len(key), 32)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(passwords.load_or_create_key(directory), key)
        self.assertEqual(
            [n for n in os.listdir(directory) if n != passwords.KEY_NAME], []
        )

    def test_damaged(self) -> None:
        """A truncated key is refused with advice rather than silently used."""
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, passwords.KEY_NAME), "wb") as f:
            f.write(b"short")
        e = self.assertRaises(ValueError, passwords.load_or_create_key, directory)
        self.assertIn("restore it from backup", str(e))


class BcryptTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """A hash checks its own password and no other, at the given cost."""
        hashed = passwords.hash_password("correct horse", 4)
        self.assertTrue(hashed.startswith(b"$2b$04$"))
        self.assertTrue(passwords.check_password("correct horse", hashed))
        self.assertFalse(passwords.check_password("correct horsE", hashed))

    def test_long_passwords(self) -> None:
        """Passwords over 72 bytes are distinguished beyond the 72nd byte."""
        base = "é" * 40  # 80 bytes of UTF-8
        hashed = passwords.hash_password(base + "a", 4)
        self.assertTrue(passwords.check_password(base + "a", hashed))
        self.assertFalse(passwords.check_password(base + "b", hashed))
        self.assertFalse(passwords.check_password(base, hashed))

    def test_garbage_hash(self) -> None:
        """A damaged stored hash never matches and never raises."""
        self.assertFalse(passwords.check_password("x", b"not a hash"))


class AppPasswordTests(SynchronousTestCase):
    def test_format(self) -> None:
        """16 characters from the unambiguous alphabet, in 4 groups of 4."""
        seen = set()
        for _ in range(50):
            password = passwords.generate_app_password()
            groups = password.split(" ")
            self.assertEqual([len(g) for g in groups], [4, 4, 4, 4])
            self.assertTrue(
                set("".join(groups)) <= set(passwords.APP_PASSWORD_ALPHABET)
            )
            seen.add(password)
        self.assertEqual(len(seen), 50)
        self.assertEqual(len(set(passwords.APP_PASSWORD_ALPHABET)), 32)
        self.assertFalse(set("01loI") & set(passwords.APP_PASSWORD_ALPHABET))

    def test_digest_tolerates_typing(self) -> None:
        """Spaces, dashes and upper case give the same digest."""
        key = b"k" * 32
        password = passwords.generate_app_password()
        digest = passwords.app_password_digest(key, 7, password)
        squashed = password.replace(" ", "")
        for typed in (
            squashed,
            squashed.upper(),
            password.replace(" ", "-"),
            " " + password.upper() + " ",
        ):
            self.assertEqual(passwords.app_password_digest(key, 7, typed), digest)

    def test_digest_binds_account_and_key(self) -> None:
        """The digest depends on the account id and the server key."""
        password = passwords.generate_app_password()
        digest = passwords.app_password_digest(b"k" * 32, 7, password)
        self.assertEqual(len(digest or b""), 32)
        self.assertNotEqual(
            passwords.app_password_digest(b"k" * 32, 8, password), digest
        )
        self.assertNotEqual(
            passwords.app_password_digest(b"j" * 32, 7, password), digest
        )

    def test_malformed(self) -> None:
        """Wrong length or foreign characters cannot be app passwords."""
        key = b"k" * 32
        for typed in (
            "",
            "abcd",
            "abcd efgh ijkm npq",
            "abcd efgh ijkm npq0",
            "é" * 16,
        ):
            self.assertIsNone(passwords.app_password_digest(key, 1, typed))
