"""``zpop api-token create|list|revoke`` (DESIGN §3), in-process on a fresh
data directory, as zpop.test.integration.test_admin drives the others."""

from __future__ import annotations

from zpop import admin
from zpop.accounts import api_tokens, passwords
from zpop.test.integration.test_admin import NOW, AliceTestCase


class ApiTokenCommandTests(AliceTestCase):
    def test_create_prints_only_the_token(self) -> None:
        """create prints the token alone; it authenticates with its scope
        and label, and only its keyed hash is stored."""
        out = self.ok(
            "api-token",
            "create",
            "alice@example.org",
            "--label",
            "cron",
            "--scope",
            "write",
        )
        token = out[:-1]
        self.assertEqual(out, token + "\n")
        self.assertRegex(token, r"^zpop_[a-z2-9]{32}$")
        key = passwords.load_or_create_key(self.data)
        found = admin.result_of(
            api_tokens.authenticate(self.store(), _Clock(), key, token)
        )
        self.assertEqual(
            (found.address, found.scope, found.label),
            ("alice@example.org", "write", "cron"),
        )

    def test_scope_defaults_to_read_and_admin(self) -> None:
        """Without --scope a token reads only; --admin makes an operator's."""
        self.ok("api-token", "create", "alice@example.org", "--label", "ro")
        self.ok("api-token", "create", "--admin", "--label", "ops")
        self.assertEqual(
            self.ok("api-token", "list"),
            "ID  OWNER              SCOPE  CREATED               LAST USED  LABEL\n"
            "1   alice@example.org  read   2023-11-14T22:13:20Z  never      ro\n"
            "2   admin              read   2023-11-14T22:13:20Z  never      ops\n",
        )
        self.assertEqual(
            self.ok("api-token", "list", "alice@example.org").splitlines()[1:],
            ["1   alice@example.org  read   2023-11-14T22:13:20Z  never      ro"],
        )

    def test_usage_errors(self) -> None:
        """Neither or both of ADDRESS and --admin, a bad scope, a bad label
        or a bad id are usage errors (exit 2)."""
        self.assertIn(
            "one of the arguments ADDRESS --admin is required",
            self.usage("api-token", "create", "--label", "x"),
        )
        self.assertIn(
            "not allowed with argument",
            self.usage(
                "api-token", "create", "alice@example.org", "--admin", "--label", "x"
            ),
        )
        self.assertIn(
            "invalid choice: 'admin'",
            self.usage(
                "api-token",
                "create",
                "alice@example.org",
                "--label",
                "x",
                "--scope",
                "admin",
            ),
        )
        self.assertIn(
            "the label is empty",
            self.usage("api-token", "create", "--admin", "--label", "  "),
        )
        self.usage("api-token", "revoke", "0")
        self.assertEqual(self.ok("api-token", "list"), "no API tokens\n")

    def test_unknown_account_and_token(self) -> None:
        """An unknown account or token id: exit 1 with the CLI's words."""
        self.fails(
            "no account bob@example.org: create it with"
            " 'zpop account add bob@example.org'",
            "api-token",
            "create",
            "bob@example.org",
            "--label",
            "x",
        )
        self.fails("no API token 7", "api-token", "revoke", "7")

    def test_revoke(self) -> None:
        """revoke says whose token went; it no longer authenticates."""
        token = self.ok("api-token", "create", "--admin", "--label", "ops")[:-1]
        self.assertEqual(
            self.ok("api-token", "revoke", "1"), "revoked API token 1 (ops) of admin\n"
        )
        key = passwords.load_or_create_key(self.data)
        self.assertIsNone(
            admin.result_of(api_tokens.authenticate(self.store(), _Clock(), key, token))
        )
        self.assertEqual(self.ok("api-token", "list"), "no API tokens\n")


class _Clock:
    def seconds(self) -> float:
        return NOW + 120
