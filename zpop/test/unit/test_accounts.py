"""Unit tests for the account services (zpop.accounts) on a MemoryStore and
a task.Clock: no disk, no threads, no CLI."""

from __future__ import annotations

import datetime

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from zpop.accounts import (
    accounts,
    aliases,
    app_passwords,
    domains,
    passwords,
    settings,
    two_factor,
)
from zpop.accounts.errors import (
    AddressTaken,
    InvalidInput,
    NotAllowed,
    NotHosted,
    UnknownAccount,
    UnknownAppPassword,
)
from zpop.config import AccountsConfig
from zpop.store import Account, MemoryStore, NewMessage
from zpop.test.stores import COST, KEY, make_store, result
from zpop.threads import run_synchronously
from zpop.wire import addresses

CUTOFF = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


class ServiceTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.store: MemoryStore = make_store()
        self.addCleanup(self.store.close)
        self.clock = Clock()
        self.clock.advance(CUTOFF.timestamp() + 100)
        self.config = AccountsConfig(bcrypt_cost=COST, free_pop_cutoff=CUTOFF)

    def add(self, address: str = "alice@example.com", plan: str = "paid") -> Account:
        account: Account = result(
            accounts.add_account(
                self.store,
                self.config,
                run_synchronously,
                self.clock,
                address,
                plan,
                False,
                None,
            )
        )
        return account


class AddressTests(SynchronousTestCase):
    def test_address_lower_cased(self) -> None:
        """An account address is lower-cased, trailing root dot dropped."""
        self.assertEqual(
            addresses.parse_address("A.B+c@Example.ORG."), "a.b+c@example.org"
        )

    def test_routing_characters_refused(self) -> None:
        """ "%" and "!" (relay tricks to SMTP) are no part of an account."""
        for text in ("a%b@example.com", "a!b@example.com"):
            self.assertRaises(ValueError, addresses.parse_address, text)

    def test_label_with_newline_refused(self) -> None:
        """A domain label is matched whole: a newline inside is refused."""
        self.assertRaises(ValueError, addresses.parse_domain, "ab\n.example")

    def test_login_name_is_loose(self) -> None:
        """The login check asks only for the shape of a full address."""
        self.assertTrue(addresses.is_login_name("a%b@example.com"))
        self.assertTrue(addresses.is_login_name("alice@localhost"))
        self.assertFalse(addresses.is_login_name("alice"))

    def test_configured_address(self) -> None:
        """A configured address may be any full address, lower-cased."""
        self.assertEqual(
            addresses.parse_configured_address(" Post@Elsewhere "), "post@elsewhere"
        )
        self.assertRaises(ValueError, addresses.parse_configured_address, "post")


class AccountTests(ServiceTestCase):
    def test_add_default_plan(self) -> None:
        """Without a plan the configured default plan is used."""
        account = result(
            accounts.add_account(
                self.store,
                self.config,
                run_synchronously,
                self.clock,
                "bob@example.com",
                None,
                False,
                None,
            )
        )
        self.assertEqual(account.plan, self.config.default_plan)
        self.assertEqual(account.created, self.clock.seconds())

    def test_add_with_password(self) -> None:
        """A given password is checked and stored as a bcrypt hash."""
        account = result(
            accounts.add_account(
                self.store,
                self.config,
                run_synchronously,
                self.clock,
                "bob@example.com",
                "paid",
                False,
                lambda: "long enough",
            )
        )
        assert account.password_hash is not None
        self.assertTrue(passwords.check_password("long enough", account.password_hash))

    def test_add_taken_before_password(self) -> None:
        """A taken address is refused before the password is asked for."""
        self.add()

        def password() -> str:
            raise AssertionError("asked for the password")

        error = self.failureResultOf(
            accounts.add_account(
                self.store,
                self.config,
                run_synchronously,
                self.clock,
                "alice@example.com",
                "paid",
                False,
                password,
            ),
            AddressTaken,
        ).value
        self.assertEqual(str(error), "alice@example.com exists already as an account")

    def test_add_not_hosted(self) -> None:
        """An address outside the hosted domains is NotHosted."""
        self.failureResultOf(
            accounts.add_account(
                self.store,
                self.config,
                run_synchronously,
                self.clock,
                "bob@elsewhere.example",
                "paid",
                False,
                None,
            ),
            NotHosted,
        )

    def test_password_rules(self) -> None:
        """Short passwords and control characters are refused with a reason."""
        self.add()
        for bad, reason in (("short", "too short"), ("long\tenough", "control")):
            error = self.failureResultOf(
                accounts.set_password(
                    self.store,
                    self.config,
                    run_synchronously,
                    "alice@example.com",
                    lambda bad=bad: bad,
                ),
                InvalidInput,
            ).value
            self.assertIn(reason, str(error))

    def test_unknown_and_alias(self) -> None:
        """An unknown address and an alias are UnknownAccount, the alias
        naming its owner."""
        self.add()
        result(aliases.add_alias(self.store, "alice@example.com", "al@example.com"))
        missing = self.failureResultOf(
            accounts.require_account(self.store, "nobody@example.com"), UnknownAccount
        ).value
        self.assertEqual(str(missing), "no account nobody@example.com")
        alias = self.failureResultOf(
            accounts.require_account(self.store, "al@example.com"), UnknownAccount
        ).value
        self.assertEqual(alias.alias_of, "alice@example.com")

    def test_show_and_delete(self) -> None:
        """show_account gathers aliases and app passwords; delete removes all."""
        self.add()
        result(aliases.add_alias(self.store, "alice@example.com", "al@example.com"))
        details = result(accounts.show_account(self.store, "alice@example.com"))
        self.assertEqual(details.aliases, ["al@example.com"])
        self.assertEqual(details.app_passwords, [])
        result(accounts.delete_account(self.store, "alice@example.com"))
        self.assertEqual(result(accounts.list_accounts(self.store)), [])


class DomainTests(ServiceTestCase):
    def test_list_counts_accounts(self) -> None:
        """Each hosted domain is listed with its number of accounts."""
        self.add()
        result(domains.add_domain(self.store, self.clock, "new.example", False))
        counts = {
            s.domain.name: s.accounts for s in result(domains.list_domains(self.store))
        }
        self.assertEqual(
            counts, {"example.com": 1, "corp.example": 0, "new.example": 0}
        )


class SettingsTests(ServiceTestCase):
    def test_free_plan_gate(self) -> None:
        """A Free account created after the cut-off cannot enable POP."""
        self.add(plan="free")
        error = self.failureResultOf(
            settings.enable_pop(
                self.store, self.config, self.clock, "alice@example.com", "all"
            ),
            NotAllowed,
        ).value
        self.assertEqual(
            str(error),
            "POP access is not available on the Free plan for accounts created "
            "on or after 2024-01-01",
        )

    def test_enable_new_at_clock(self) -> None:
        """Enabling records the clock's time; disable turns it off."""
        self.add()
        account = result(
            settings.enable_pop(
                self.store, self.config, self.clock, "alice@example.com", "new"
            )
        )
        self.assertEqual(
            (account.pop.enabled, account.pop.mode, account.pop.enabled_at),
            (True, "new", self.clock.seconds()),
        )
        account = result(settings.disable_pop(self.store, "alice@example.com"))
        self.assertFalse(account.pop.enabled)

    def test_policies(self) -> None:
        """Spam and deletion policies are stored as given."""
        self.add()
        result(settings.set_pop_spam(self.store, "alice@example.com", "include"))
        account = result(
            settings.set_pop_deletion(self.store, "alice@example.com", "delete")
        )
        self.assertEqual(
            (account.pop.spam, account.pop.deletion), ("include", "delete")
        )

    def test_pop_state(self) -> None:
        """pop_state follows the queue rule: folder, enable moment, POP off."""
        account = self.add()
        result(
            self.store.store_messages(
                account.id,
                [
                    NewMessage("Inbox", b"Subject: old\r\n\r\n", "old", 1.0),
                    NewMessage("Spam", b"Subject: spam\r\n\r\n", "spam", 1.0),
                ],
            )
        )

        def states(a: Account) -> list[str]:
            found = result(self.store.list_messages(a.id, None))
            return [settings.pop_state(a, m) for m in found]

        self.assertEqual(sorted(states(account)), ["POP disabled", "POP disabled"])
        account = result(
            settings.enable_pop(
                self.store, self.config, self.clock, "alice@example.com", "new"
            )
        )
        self.assertEqual(
            sorted(states(account)),
            ["not offered (before enable)", "not offered (folder)"],
        )
        account = result(
            settings.enable_pop(
                self.store, self.config, self.clock, "alice@example.com", "all"
            )
        )
        self.assertEqual(sorted(states(account)), ["not offered (folder)", "queued"])


class TwoFactorTests(ServiceTestCase):
    def test_enable_without_app_password(self) -> None:
        """Turning two-factor on says when no app password exists yet."""
        self.add()
        change = result(
            two_factor.set_two_factor(self.store, "alice@example.com", True)
        )
        self.assertTrue(change.account.two_factor)
        self.assertTrue(change.needs_app_password)
        change = result(
            two_factor.set_two_factor(self.store, "alice@example.com", False)
        )
        self.assertFalse(change.account.two_factor)
        self.assertFalse(change.needs_app_password)


class AppPasswordTests(ServiceTestCase):
    def test_create_list_revoke(self) -> None:
        """A created password is stored as its keyed hash, listed by label,
        and revoked by ID."""
        account = self.add()
        record, secret = result(
            app_passwords.create(
                self.store, self.clock, KEY, "alice@example.com", "  my   phone "
            )
        )
        self.assertIsNotNone(passwords.normalize_app_password(secret))
        [found] = result(
            app_passwords.list_app_passwords(self.store, "alice@example.com")
        )
        self.assertEqual(
            (found.label, found.created), ("my phone", self.clock.seconds())
        )
        self.assertEqual(found, record)
        digest = passwords.app_password_digest(KEY, account.id, secret)
        assert digest is not None
        self.assertIsNotNone(
            result(self.store.find_app_password(account.id, digest))
        )
        label = result(app_passwords.revoke(self.store, "alice@example.com", found.id))
        self.assertEqual(label, "my phone")
        self.assertEqual(
            result(app_passwords.list_app_passwords(self.store, "alice@example.com")),
            [],
        )

    def test_revoke_unknown(self) -> None:
        """Revoking an ID the account lacks is UnknownAppPassword."""
        self.add()
        error = self.failureResultOf(
            app_passwords.revoke(self.store, "alice@example.com", 7),
            UnknownAppPassword,
        ).value
        self.assertEqual(str(error), "alice@example.com has no app-specific password 7")

    def test_label_rules(self) -> None:
        """An empty or over-long label is InvalidInput."""
        self.add()
        for label in ("   ", "x" * 101):
            self.failureResultOf(
                app_passwords.create(
                    self.store, self.clock, KEY, "alice@example.com", label
                ),
                InvalidInput,
            )


class AliasTests(ServiceTestCase):
    def test_alias_in_use(self) -> None:
        """An alias already held names what holds it."""
        self.add()
        self.add("bob@example.com")
        error = self.failureResultOf(
            aliases.add_alias(self.store, "alice@example.com", "bob@example.com"),
            AddressTaken,
        ).value
        self.assertEqual(str(error), "bob@example.com is in use already as an account")
