"""Tests for the ``zpop`` command (DESIGN §3): whole outputs and exit codes."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from zpop import admin, maildir
from zpop import config as configmod
from zpop.accounts import dns_records, password_resets, passwords
from zpop.cli import commands
from zpop.store import DATABASE_NAME, SQLiteStore
from zpop.store.sqlite import latest_version
from zpop.threads import run_synchronously

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
NOW_ISO = "2023-11-14T22:13:20Z"

CONFIG = """\
[server]
hostname = example.com
[accounts]
bcrypt_cost = 4
"""

MESSAGE = b"From: a@example.net\nTo: alice@example.org\nSubject: Hello\n\nHi.\n"


class AdminTestCase(SynchronousTestCase):
    """Runs ``main`` in-process on a fresh, initialised data directory."""

    maxDiff = None  # noqa: N815 - unittest's name

    config = CONFIG

    def setUp(self) -> None:
        self.data = os.path.abspath(self.mktemp())
        os.makedirs(self.data)
        with open(os.path.join(self.data, "zpop.ini"), "w") as f:
            f.write(self.config)
        self.now = NOW
        status, _, err = self.zpop("init")
        self.assertEqual((status, err), (0, ""))

    def zpop(self, *argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
        """(exit status, stdout, stderr) of one command."""
        out, err = io.StringIO(), io.StringIO()
        status = admin.main(
            ["--data", self.data, *argv],
            stdin=io.BytesIO(stdin),
            stdout=out,
            stderr=err,
            clock=lambda: self.now,
        )
        return status, out.getvalue(), err.getvalue()

    def ok(self, *argv: str, stdin: bytes = b"") -> str:
        """stdout of a command that must succeed quietly on stderr."""
        status, out, err = self.zpop(*argv, stdin=stdin)
        self.assertEqual((status, err), (0, ""), out)
        return out

    def fails(self, expected: str, *argv: str, stdin: bytes = b"") -> None:
        """The command fails with status 1 and exactly this error line."""
        self.assertEqual(
            self.zpop(*argv, stdin=stdin), (1, "", f"zpop: error: {expected}\n")
        )

    def usage(self, *argv: str, stdin: bytes = b"") -> str:
        """The command is a usage error: status 2, usage and ``zpop: error:``."""
        status, out, err = self.zpop(*argv, stdin=stdin)
        self.assertEqual((status, out), (2, ""))
        self.assertTrue(err.startswith("usage: zpop"), err)
        last = err.splitlines()[-1]
        self.assertTrue(last.startswith("zpop: error: "), err)
        return last

    def store(self) -> SQLiteStore:
        store = SQLiteStore(os.path.join(self.data, DATABASE_NAME), run_synchronously)
        self.addCleanup(store.close)
        return store

    def setup_accounts(self) -> None:
        self.ok("domain", "add", "example.org")
        self.ok("domain", "add", "corp.example", "--organization")
        self.ok("account", "add", "alice@example.org")
        self.ok(
            "account",
            "add",
            "bob@corp.example",
            "--plan",
            "paid",
            "--password-stdin",
            stdin=b"correct horse\n",
        )

    def account(self, address: str) -> Any:
        return admin.result_of(self.store().get_account(address))


class InitTests(AdminTestCase):
    def test_init_creates(self) -> None:
        """init makes a 0700 directory, the database and a 0600 key, saying where."""
        data = os.path.abspath(self.mktemp())
        status, out, err = (
            admin.main(
                ["--data", data, "init"],
                stdin=io.BytesIO(),
                stdout=(o := io.StringIO()),
                stderr=(e := io.StringIO()),
            ),
            o.getvalue(),
            e.getvalue(),
        )
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(
            out,
            f"created data directory {data}\n"
            f"created database {data}/zpop.sqlite (schema version {latest_version()})\n"
            f"created server key {data}/server.key\n",
        )
        self.assertEqual(stat.S_IMODE(os.stat(data).st_mode), 0o700)
        key = os.path.join(data, "server.key")
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)

    def test_init_idempotent(self) -> None:
        """A second init changes nothing and says what exists."""
        key = open(os.path.join(self.data, "server.key"), "rb").read()
        self.assertEqual(
            self.ok("init"),
            f"data directory {self.data} exists\n"
            f"database {self.data}/zpop.sqlite is up to date"
            f" (schema version {latest_version()})\n"
            f"server key {self.data}/server.key exists\n",
        )
        self.assertEqual(open(os.path.join(self.data, "server.key"), "rb").read(), key)

    def test_init_hostname_writes_ini(self) -> None:
        """init --hostname writes DATA/zpop.ini, which later commands read."""
        data = os.path.abspath(self.mktemp())
        status = admin.main(
            ["--data", data, "init", "--hostname", "Mail.Example.NET"],
            stdout=(out := io.StringIO()),
            stderr=io.StringIO(),
        )
        self.assertEqual(status, 0)
        self.assertEqual(
            out.getvalue().splitlines()[-1],
            f"wrote {data}/zpop.ini (hostname mail.example.net)",
        )
        config = admin.load_config(None, data)
        self.assertEqual(config.server.hostname, "mail.example.net")
        self.assertEqual(config.hosts.pop_personal, "pop.mail.example.net")
        status = admin.main(
            ["--data", data, "init", "--hostname", "mail.example.net"],
            stdout=(out := io.StringIO()),
            stderr=io.StringIO(),
        )
        self.assertEqual(status, 0)
        self.assertEqual(
            out.getvalue().splitlines()[-1],
            f"{data}/zpop.ini has hostname mail.example.net",
        )

    def test_init_hostname_conflict(self) -> None:
        """init refuses a hostname other than the one zpop.ini has."""
        self.fails(
            f"{self.data}/zpop.ini exists with hostname example.com, not "
            "other.example: edit its [server] hostname instead",
            "init",
            "--hostname",
            "other.example",
        )

    def test_init_bad_hostname(self) -> None:
        """A malformed --hostname is a usage error."""
        self.assertEqual(
            self.usage("init", "--hostname", "bad_host.example"),
            "zpop: error: argument --hostname: 'bad_host.example' is not a valid "
            "domain: 'bad_host' must be 1-63 letters, digits or hyphens, not "
            "starting or ending with a hyphen",
        )

    def test_no_database(self) -> None:
        """Every command but init needs the database and names the fix."""
        empty = os.path.abspath(self.mktemp())
        err = io.StringIO()
        status = admin.main(
            ["--data", empty, "domain", "list"], stdout=io.StringIO(), stderr=err
        )
        self.assertEqual(status, 1)
        self.assertEqual(
            err.getvalue(),
            f"zpop: error: no zpop database in {empty}: run 'zpop init' first\n",
        )

    def test_newer_schema(self) -> None:
        """A database from a newer zpop is refused with the fix named."""
        path = os.path.join(self.data, DATABASE_NAME)
        conn = sqlite3.connect(path)
        conn.execute("UPDATE zpop_version SET version = 99")
        conn.commit()
        conn.close()
        self.fails(
            f"database at {path} is version 99, this zpop knows up to"
            f" {latest_version()}: upgrade zpop",
            "domain",
            "list",
        )

    def test_damaged_database(self) -> None:
        """A database file that is not SQLite is reported with its path."""
        path = os.path.join(self.data, DATABASE_NAME)
        for leftover in (path + "-wal", path + "-shm"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        with open(path, "wb") as f:
            f.write(b"this is not a database" * 100)
        self.fails(
            f"{path} is not a zpop database: file is not a database",
            "domain",
            "list",
        )

    def test_config_error(self) -> None:
        """A bad configuration file is one error line, status 1."""
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("[accounts]\nbcrypt_cost = 99\n")
        err = io.StringIO()
        status = admin.main(
            ["--config", path, "--data", self.data, "domain", "list"],
            stdout=io.StringIO(),
            stderr=err,
        )
        self.assertEqual(status, 1)
        self.assertEqual(
            err.getvalue(),
            f"zpop: error: {path}: [accounts] bcrypt_cost: bad value '99': "
            "bcrypt cost must be between 4 and 31\n",
        )

    def test_data_precedence(self) -> None:
        """--data beats the config file's data, which beats $ZPOP_DATA."""
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        path = os.path.join(base, "zpop.ini")
        with open(path, "w") as f:
            f.write("[server]\ndata = from-config\n")
        bare = os.path.join(base, "bare.ini")
        with open(bare, "w") as f:
            f.write("[server]\nhostname = example.com\n")
        old = os.environ.get("ZPOP_DATA")
        os.environ["ZPOP_DATA"] = "/from/env"
        self.addCleanup(
            lambda: (
                os.environ.pop("ZPOP_DATA")
                if old is None
                else os.environ.__setitem__("ZPOP_DATA", old)
            )
        )
        self.assertEqual(admin.load_config(path, "/cli").server.data, "/cli")
        self.assertEqual(
            admin.load_config(path, None).server.data, os.path.join(base, "from-config")
        )
        self.assertEqual(admin.load_config(bare, None).server.data, "/from/env")
        self.assertEqual(admin.load_config(None, None).server.data, "/from/env")

    def test_help(self) -> None:
        """--help prints usage on stdout and exits 0."""
        status, out, err = self.zpop("--help")
        self.assertEqual((status, err), (0, ""))
        self.assertTrue(out.startswith("usage: zpop [-h] [--config FILE]"), out)

    def test_no_command(self) -> None:
        """No command at all is a usage error."""
        self.assertEqual(
            self.usage(), "zpop: error: the following arguments are required: COMMAND"
        )

    def test_unknown_command(self) -> None:
        """An unknown command is a usage error."""
        self.assertEqual(
            self.usage("frobnicate"),
            "zpop: error: argument COMMAND: invalid choice: 'frobnicate' (choose "
            "from 'init', 'upgrade', 'domain', 'account', 'pop', 'twofactor', "
            "'imap', 'app-password', 'api-token', 'alias', 'deliver', 'import', "
            "'messages', 'queue')",
        )


class DomainTests(AdminTestCase):
    def test_add_and_list(self) -> None:
        """domain add says the kind and POP host; list is a stable table."""
        self.assertEqual(
            self.ok("domain", "add", "Example.ORG"),
            "added personal domain example.org (POP host pop.example.com)\n",
        )
        self.assertEqual(
            self.ok("domain", "add", "corp.example", "--organization"),
            "added organization domain corp.example (POP host poppro.example.com)\n",
        )
        self.ok("account", "add", "alice@example.org")
        self.assertEqual(
            self.ok("domain", "list"),
            "DOMAIN        KIND          POP HOST            ACCOUNTS  CREATED\n"
            f"corp.example  organization  poppro.example.com  0         {NOW_ISO}\n"
            f"example.org   personal      pop.example.com     1         {NOW_ISO}\n",
        )

    def test_list_empty(self) -> None:
        """With no domains, list says how to add one."""
        self.assertEqual(
            self.ok("domain", "list"),
            "no hosted domains: add one with 'zpop domain add DOMAIN'\n",
        )

    def test_duplicate(self) -> None:
        """Adding a domain twice is an error, status 1."""
        self.ok("domain", "add", "example.org")
        self.fails("domain example.org exists already", "domain", "add", "EXAMPLE.org")

    def test_bad_domain(self) -> None:
        """Malformed domain names are usage errors that say what is wrong."""
        label = "must be 1-63 letters, digits or hyphens, not starting or ending"
        for bad, reason in (
            ("nodot", "is not a domain: it has no dot"),
            ("-x.example", f"is not a valid domain: '-x' {label} with a hyphen"),
            ("a..example", f"is not a valid domain: '' {label} with a hyphen"),
            ("a_b.example", f"is not a valid domain: 'a_b' {label} with a hyphen"),
            ("é.example", ": write an internationalised domain in its xn-- form"),
        ):
            separator = " " if reason[0] != ":" else ""
            self.assertEqual(
                self.usage("domain", "add", "--", bad),
                f"zpop: error: argument DOMAIN: {bad!r}{separator}{reason}",
            )

    def test_missing_domain(self) -> None:
        """domain add without a name is a usage error."""
        self.assertEqual(
            self.usage("domain", "add"),
            "zpop: error: the following arguments are required: DOMAIN",
        )


class DomainDnsTests(AdminTestCase):
    """``zpop domain dns DOMAIN`` (DESIGN §1 "Client autoconfiguration")."""

    config = CONFIG + "[listeners]\nweb = tcp:443\n[hosts]\nweb = mail.example.com\n"

    def policy_id(self) -> str:
        policy = dns_records.mta_sts_policy(configmod.load(self.ini))
        return dns_records.mta_sts_id(policy)

    @property
    def ini(self) -> str:
        return os.path.join(self.data, "zpop.ini")

    def test_personal_domain(self) -> None:
        """A personal domain's zone lines, whole: MX, SPF, DMARC, the RFC 6186
        SRV records (IMAPS preferred to POP3S, both on the personal POP
        host; implicit-TLS submission preferred to STARTTLS), autoconfig,
        autodiscover, MTA-STS and TLS-RPT, then the DKIM hook and what else
        to set up."""
        self.ok("domain", "add", "example.com")
        self.assertEqual(
            self.ok("domain", "dns", "Example.COM"),
            "; DNS records for example.com (personal domain)\n"
            "example.com. 3600 IN MX 10 smtp.example.com.\n"
            'example.com. 3600 IN TXT "v=spf1 mx -all"\n'
            '_dmarc.example.com. 3600 IN TXT "v=DMARC1; p=none;'
            ' rua=mailto:postmaster@example.com"\n'
            "_imaps._tcp.example.com. 3600 IN SRV 0 1 993 pop.example.com.\n"
            "_pop3s._tcp.example.com. 3600 IN SRV 10 1 995 pop.example.com.\n"
            "_submissions._tcp.example.com. 3600 IN SRV 0 1 465 smtp.example.com.\n"
            "_submission._tcp.example.com. 3600 IN SRV 10 1 587 smtp.example.com.\n"
            "autoconfig.example.com. 3600 IN CNAME mail.example.com.\n"
            "autodiscover.example.com. 3600 IN CNAME mail.example.com.\n"
            "_autodiscover._tcp.example.com. 3600 IN SRV 0 1 443 mail.example.com.\n"
            "mta-sts.example.com. 3600 IN CNAME mail.example.com.\n"
            f'_mta-sts.example.com. 3600 IN TXT "v=STSv1; id={self.policy_id()}"\n'
            '_smtp._tls.example.com. 3600 IN TXT "v=TLSRPTv1;'
            ' rua=mailto:postmaster@example.com"\n'
            "; DKIM: no keys yet (zpop domain dkim example.com)\n"
            "; pop.example.com, smtp.example.com, mail.example.com need A/AAAA"
            " records of this server and names in its certificate, as do"
            " autoconfig.example.com, autodiscover.example.com and"
            " mta-sts.example.com for HTTPS\n",
        )

    def test_organization_domain(self) -> None:
        """An organization domain's IMAPS and POP3S SRV records name the
        organization host (IMAPS preferred); its DMARC reports go to the
        postmaster's zone, which authorises them."""
        self.ok("domain", "add", "corp.example", "--organization")
        lines = self.ok("domain", "dns", "corp.example").splitlines()
        authorization = (
            'corp.example._report._dmarc.example.com. 3600 IN TXT "v=DMARC1"'
        )
        at = lines.index(authorization)
        incoming = [line for line in lines if line.startswith(("_imaps", "_pop3s"))]
        srv = "3600 IN SRV"
        self.assertEqual(
            (incoming, lines[at - 1 : at + 1]),
            (
                [
                    f"_imaps._tcp.corp.example. {srv} 0 1 993 poppro.example.com.",
                    f"_pop3s._tcp.corp.example. {srv} 10 1 995 poppro.example.com.",
                ],
                [
                    "; in the zone of example.com: lets it receive this domain's"
                    " DMARC reports",
                    authorization,
                ],
            ),
        )

    def test_errors(self) -> None:
        """An unhosted domain fails as every domain command does; a malformed
        or missing one is a usage error."""
        self.fails(
            "example.org is not a hosted domain: add it with"
            " 'zpop domain add example.org'",
            "domain",
            "dns",
            "example.org",
        )
        self.assertEqual(
            self.usage("domain", "dns", "nodot"),
            "zpop: error: argument DOMAIN: 'nodot' is not a domain: it has no dot",
        )
        self.assertEqual(
            self.usage("domain", "dns"),
            "zpop: error: the following arguments are required: DOMAIN",
        )


class AccountTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.ok("domain", "add", "example.org")
        self.ok("domain", "add", "corp.example", "--organization")

    def test_add_with_password(self) -> None:
        """A password from stdin (first line, CRLF stripped) is stored bcrypt."""
        out = self.ok(
            "account",
            "add",
            "Bob@Corp.Example",
            "--plan",
            "paid",
            "--password-stdin",
            stdin=b"correct horse\r\nignored\n",
        )
        self.assertEqual(
            out,
            "created account bob@corp.example (paid plan, organization domain)\n"
            "POP access is off: enable it with "
            "'zpop pop enable bob@corp.example --mode all|new'\n",
        )
        account = self.account("bob@corp.example")
        self.assertTrue(
            passwords.check_password("correct horse", account.password_hash)
        )
        self.assertEqual(account.password_hash[:4], b"$2b$")
        self.assertEqual(account.password_hash[4:6], b"04")
        self.assertEqual((account.plan, account.created), ("paid", NOW))

    def test_add_without_password(self) -> None:
        """Without a password the account works with app passwords only, and
        the output says so; the plan defaults from the configuration."""
        self.assertEqual(
            self.ok("account", "add", "alice@example.org"),
            "created account alice@example.org (free plan, personal domain)\n"
            "no primary password: mail clients need an app-specific password "
            "('zpop app-password create alice@example.org --label TEXT') until "
            "one is set with "
            "'zpop account passwd alice@example.org --password-stdin'\n"
            "POP access is off: enable it with "
            "'zpop pop enable alice@example.org --mode all|new'\n",
        )
        account = self.account("alice@example.org")
        self.assertEqual((account.password_hash, account.federated), (None, False))

    def test_add_federated(self) -> None:
        """A federated account has no password and the output says what to do."""
        out = self.ok("account", "add", "fed@example.org", "--federated")
        self.assertEqual(
            out.splitlines()[1],
            "federated: no primary password; mail clients need an app-specific "
            "password ('zpop app-password create fed@example.org --label TEXT') "
            "or a password set with "
            "'zpop account passwd fed@example.org --password-stdin'",
        )
        account = self.account("fed@example.org")
        self.assertEqual((account.password_hash, account.federated), (None, True))

    def test_federated_with_password_is_usage_error(self) -> None:
        """--federated with --password-stdin is refused as misuse (status 2)."""
        self.assertEqual(
            self.usage(
                "account",
                "add",
                "fed@example.org",
                "--federated",
                "--password-stdin",
                stdin=b"password1\n",
            ),
            "zpop: error: argument --password-stdin: not allowed with argument "
            "--federated",
        )
        self.assertIsNone(self.account("fed@example.org"))

    def test_missing_password(self) -> None:
        """Empty stdin or an empty first line: no account is created."""
        for stdin in (b"", b"\n", b"\r\n"):
            self.fails(
                "no password on standard input",
                "account",
                "add",
                "alice@example.org",
                "--password-stdin",
                stdin=stdin,
            )
        self.assertIsNone(self.account("alice@example.org"))

    def test_short_password(self) -> None:
        """Passwords under 8 characters are refused."""
        self.fails(
            "the password is too short: use at least 8 characters",
            "account",
            "add",
            "alice@example.org",
            "--password-stdin",
            stdin=b"1234567\n",
        )

    def test_control_character_password(self) -> None:
        """A password a mail client cannot send is refused."""
        self.fails(
            "the password contains a control character: mail clients cannot send it",
            "account",
            "add",
            "alice@example.org",
            "--password-stdin",
            stdin=b"abc\tdefgh\n",
        )

    def test_password_not_in_argv(self) -> None:
        """There is no option to pass a password on the command line."""
        self.assertEqual(
            self.usage("account", "add", "alice@example.org", "--password", "secret12"),
            "zpop: error: unrecognized arguments: secret12",
        )

    def test_duplicate(self) -> None:
        """An address taken by an account or an alias cannot be added again."""
        self.ok("account", "add", "alice@example.org")
        self.ok("account", "add", "bob@example.org")
        self.ok("alias", "add", "bob@example.org", "robert@example.org")
        self.fails(
            "alice@example.org exists already as an account",
            "account",
            "add",
            "ALICE@example.org",
        )
        self.fails(
            "robert@example.org exists already as an alias of bob@example.org",
            "account",
            "add",
            "robert@example.org",
        )

    def test_not_hosted(self) -> None:
        """An account needs a hosted domain; the error names the fix."""
        self.fails(
            "example.net is not a hosted domain: add it with "
            "'zpop domain add example.net'",
            "account",
            "add",
            "alice@example.net",
        )

    def test_bad_address(self) -> None:
        """Bare local parts and malformed addresses are usage errors."""
        self.assertEqual(
            self.usage("account", "add", "alice"),
            "zpop: error: argument ADDRESS: 'alice' is not a full address: use "
            "user@domain (the login name is always the full address)",
        )
        for bad, reason in (
            ("@example.org", "'@example.org': the part before the @ is empty"),
            ("a@b@example.org", "'a@b@example.org': an address has exactly one @"),
            ("a b@example.org", "'a b@example.org': an address has no spaces or"),
            ("a\x01@example.org", "'a\\x01@example.org': an address has no spaces"),
            ("a..b@example.org", "'a..b@example.org': 'a..b' is not a valid local"),
            ("alice@", "'alice@': the part after the @ is empty"),
            ("alice@nodot", "'nodot' is not a domain: it has no dot"),
        ):
            message = self.usage("account", "add", bad)
            self.assertTrue(
                message.startswith(f"zpop: error: argument ADDRESS: {reason}"), message
            )

    def test_bad_plan(self) -> None:
        """An unknown plan is a usage error."""
        self.assertEqual(
            self.usage("account", "add", "alice@example.org", "--plan", "gold"),
            "zpop: error: argument --plan: invalid choice: 'gold' (choose from "
            "'free', 'paid')",
        )

    def test_passwd(self) -> None:
        """passwd replaces the password; the old one stops working."""
        self.ok("account", "add", "alice@example.org", "--federated")
        self.assertEqual(
            self.ok(
                "account",
                "passwd",
                "alice@example.org",
                "--password-stdin",
                stdin=b"new password\n",
            ),
            "password set for alice@example.org\n",
        )
        account = self.account("alice@example.org")
        self.assertTrue(passwords.check_password("new password", account.password_hash))

    def test_passwd_two_factor(self) -> None:
        """passwd reminds that two-factor still requires app passwords."""
        self.ok("account", "add", "alice@example.org")
        self.ok("twofactor", "enable", "alice@example.org")
        self.assertEqual(
            self.ok(
                "account",
                "passwd",
                "alice@example.org",
                "--password-stdin",
                stdin=b"new password\n",
            ),
            "password set for alice@example.org\n"
            "two-factor authentication is required: mail clients still need an "
            "app-specific password\n",
        )

    def test_passwd_errors(self) -> None:
        """passwd needs --password-stdin, a password and an existing account."""
        self.assertEqual(
            self.usage("account", "passwd", "alice@example.org"),
            "zpop: error: the following arguments are required: --password-stdin",
        )
        self.fails(
            "no account alice@example.org: create it with "
            "'zpop account add alice@example.org'",
            "account",
            "passwd",
            "alice@example.org",
            "--password-stdin",
            stdin=b"new password\n",
        )
        self.ok("account", "add", "alice@example.org")
        self.fails(
            "no password on standard input",
            "account",
            "passwd",
            "alice@example.org",
            "--password-stdin",
        )

    def test_show_personal(self) -> None:
        """show gives settings and the client settings for the personal host."""
        self.ok("account", "add", "alice@example.org")
        self.ok("alias", "add", "alice@example.org", "al@example.org")
        self.ok("alias", "add", "alice@example.org", "a@corp.example")
        self.ok("app-password", "create", "alice@example.org", "--label", "phone")
        self.assertEqual(
            self.ok("account", "show", "Alice@example.org"),
            "Account alice@example.org\n"
            "  Domain:            example.org (personal)\n"
            "  Plan:              free\n"
            f"  Created:           {NOW_ISO}\n"
            "  Primary password:  none\n"
            "  Two-factor:        off\n"
            "  POP access:        disabled\n"
            "  POP spam:          exclude (POP offers the Inbox)\n"
            "  POP deletion:      keep (a message deleted by a POP client stays "
            "in its folder)\n"
            "  POP queue:         shared (one POP queue for every device)\n"
            "  IMAP access:       on\n"
            "  Aliases:           a@corp.example, al@example.org\n"
            "  App passwords:     1\n"
            "  Recovery address:  none\n"
            "\n"
            "Mail client settings\n"
            "  Incoming mail (POP3)\n"
            "    Server:          pop.example.com\n"
            "    Port:            995\n"
            "    Security:        SSL/TLS (required)\n"
            "    Username:        alice@example.org\n"
            "  Outgoing mail (SMTP)\n"
            "    Server:          smtp.example.com\n"
            "    Port:            465 with SSL/TLS, or 587 with STARTTLS\n"
            "    Authentication:  required (normal password)\n"
            "    Username:        alice@example.org\n"
            "  Password:          an app-specific password is required (the "
            "account has no primary password)\n"
            "  Note: POP access is disabled: "
            "'zpop pop enable alice@example.org --mode all|new'\n",
        )

    def test_show_organization(self) -> None:
        """An organization account is told the organization POP host; with
        two-factor on an app-specific password is required."""
        self.ok(
            "account",
            "add",
            "bob@corp.example",
            "--plan",
            "paid",
            "--password-stdin",
            stdin=b"correct horse\n",
        )
        self.ok("pop", "enable", "bob@corp.example", "--mode", "new")
        self.ok("pop", "spam", "bob@corp.example", "include")
        self.ok("pop", "deletion", "bob@corp.example", "delete")
        self.ok("twofactor", "enable", "bob@corp.example")
        self.assertEqual(
            self.ok("account", "show", "bob@corp.example"),
            "Account bob@corp.example\n"
            "  Domain:            corp.example (organization)\n"
            "  Plan:              paid\n"
            f"  Created:           {NOW_ISO}\n"
            "  Primary password:  set\n"
            "  Two-factor:        required (not enrolled)\n"
            "  POP access:        enabled, mode new (mail received from "
            f"{NOW_ISO} on)\n"
            "  POP spam:          include (POP offers the Inbox and Spam)\n"
            "  POP deletion:      delete (a message deleted by a POP client "
            "moves to Trash)\n"
            "  POP queue:         shared (one POP queue for every device)\n"
            "  IMAP access:       on\n"
            "  Aliases:           none\n"
            "  App passwords:     0\n"
            "  Recovery address:  none\n"
            "\n"
            "Mail client settings\n"
            "  Incoming mail (POP3)\n"
            "    Server:          poppro.example.com\n"
            "    Port:            995\n"
            "    Security:        SSL/TLS (required)\n"
            "    Username:        bob@corp.example\n"
            "  Outgoing mail (SMTP)\n"
            "    Server:          smtp.example.com\n"
            "    Port:            465 with SSL/TLS, or 587 with STARTTLS\n"
            "    Authentication:  required (normal password)\n"
            "    Username:        bob@corp.example\n"
            "  Password:          an app-specific password is required "
            "(two-factor authentication is required)\n",
        )

    def test_show_password(self) -> None:
        """With a password and no two-factor the account password is used."""
        self.ok(
            "account",
            "add",
            "bob@corp.example",
            "--password-stdin",
            stdin=b"correct horse\n",
        )
        out = self.ok("account", "show", "bob@corp.example")
        self.assertIn("\n  Password:          the account password\n", out)

    def test_show_unknown(self) -> None:
        """show of an unknown account or of an alias is an error naming it."""
        self.fails(
            "no account nobody@example.org: create it with "
            "'zpop account add nobody@example.org'",
            "account",
            "show",
            "nobody@example.org",
        )
        self.ok("account", "add", "alice@example.org")
        self.ok("alias", "add", "alice@example.org", "al@example.org")
        self.fails(
            "al@example.org is an alias of alice@example.org, not an account",
            "account",
            "show",
            "al@example.org",
        )

    def test_list(self) -> None:
        """account list is a stable table sorted by address."""
        self.assertEqual(
            self.ok("account", "list"),
            "no accounts: add one with 'zpop account add ADDRESS'\n",
        )
        self.ok("account", "add", "zed@example.org", "--federated")
        self.ok("account", "add", "alice@example.org")
        self.ok(
            "account",
            "add",
            "bob@corp.example",
            "--plan",
            "paid",
            "--password-stdin",
            stdin=b"correct horse\n",
        )
        self.ok("pop", "enable", "bob@corp.example", "--mode", "all")
        self.ok("twofactor", "enable", "bob@corp.example")
        self.assertEqual(
            self.ok("account", "list"),
            "ADDRESS            PLAN  KIND          PASSWORD   2FA       POP  "
            "CREATED\n"
            "alice@example.org  free  personal      none       off       off  "
            f"{NOW_ISO}\n"
            "bob@corp.example   paid  organization  set        required  all  "
            f"{NOW_ISO}\n"
            "zed@example.org    free  personal      federated  off       off  "
            f"{NOW_ISO}\n",
        )

    def test_delete(self) -> None:
        """delete removes the account and its mail; twice is an error."""
        self.ok("account", "add", "alice@example.org")
        self.ok("deliver", "alice@example.org", stdin=MESSAGE)
        account = self.account("alice@example.org")
        self.assertEqual(
            self.ok("account", "delete", "alice@example.org"),
            "deleted account alice@example.org with its messages, aliases and "
            "app-specific passwords\n",
        )
        self.assertIsNone(self.account("alice@example.org"))
        self.assertEqual(admin.result_of(self.store().list_messages(account.id)), [])
        self.fails(
            "no account alice@example.org: create it with "
            "'zpop account add alice@example.org'",
            "account",
            "delete",
            "alice@example.org",
        )


class PopTests(AdminTestCase):
    config = CONFIG + "free_pop_cutoff = 2023-11-14\n"

    def setUp(self) -> None:
        super().setUp()
        self.ok("domain", "add", "example.org")
        self.ok("account", "add", "paid@example.org", "--plan", "paid")

    def test_enable_all(self) -> None:
        """enable --mode all prints the resulting state."""
        self.assertEqual(
            self.ok("pop", "enable", "paid@example.org", "--mode", "all"),
            "POP settings of paid@example.org\n"
            f"  POP access:        enabled, mode all (since {NOW_ISO})\n"
            "  POP spam:          exclude (POP offers the Inbox)\n"
            "  POP deletion:      keep (a message deleted by a POP client stays "
            "in its folder)\n"
            "  POP queue:         shared (one POP queue for every device)\n",
        )
        self.assertEqual(self.account("paid@example.org").pop.mode, "all")

    def test_enable_new_moves_start(self) -> None:
        """enable --mode new offers only mail stored afterwards."""
        self.ok("deliver", "paid@example.org", stdin=MESSAGE)
        self.ok("pop", "enable", "paid@example.org", "--mode", "new")
        pop = self.account("paid@example.org").pop
        self.assertEqual((pop.enabled, pop.mode, pop.start_uid), (True, "new", 2))

    def test_mode_required(self) -> None:
        """--mode is required and must be all or new."""
        self.assertEqual(
            self.usage("pop", "enable", "paid@example.org"),
            "zpop: error: the following arguments are required: --mode",
        )
        self.assertEqual(
            self.usage("pop", "enable", "paid@example.org", "--mode", "old"),
            "zpop: error: argument --mode: invalid choice: 'old' (choose from "
            "'all', 'new')",
        )

    def test_free_plan_cutoff(self) -> None:
        """A Free account created on or after the cut-off cannot enable POP;
        one created before can, and so can a paid one."""
        self.now = NOW - 86400 * 2
        self.ok("account", "add", "old@example.org")
        self.now = NOW
        self.ok("account", "add", "new@example.org")
        self.fails(
            "POP access is not available on the Free plan for accounts created "
            "on or after 2023-11-14",
            "pop",
            "enable",
            "new@example.org",
            "--mode",
            "all",
        )
        self.assertFalse(self.account("new@example.org").pop.enabled)
        self.ok("pop", "enable", "old@example.org", "--mode", "all")
        self.ok("pop", "enable", "paid@example.org", "--mode", "all")
        out = self.ok("account", "show", "new@example.org")
        self.assertIn(
            "\n  POP availability:  not on the Free plan for accounts created on "
            "or after 2023-11-14\n",
            out,
        )
        self.assertNotIn("pop enable", out)

    def test_disable(self) -> None:
        """disable turns POP off and prints the state."""
        self.ok("pop", "enable", "paid@example.org", "--mode", "all")
        out = self.ok("pop", "disable", "paid@example.org")
        self.assertEqual(
            out.splitlines()[:2],
            ["POP settings of paid@example.org", "  POP access:        disabled"],
        )
        self.assertFalse(self.account("paid@example.org").pop.enabled)

    def test_spam_and_deletion(self) -> None:
        """spam and deletion policies are stored and shown."""
        out = self.ok("pop", "spam", "paid@example.org", "only")
        self.assertIn("  POP spam:          only (POP offers Spam only)\n", out)
        out = self.ok("pop", "deletion", "paid@example.org", "delete")
        self.assertIn(
            "  POP deletion:      delete (a message deleted by a POP client moves "
            "to Trash)\n",
            out,
        )
        pop = self.account("paid@example.org").pop
        self.assertEqual((pop.spam, pop.deletion), ("only", "delete"))

    def test_queue(self) -> None:
        """pop queue switches between one shared POP queue and one per
        device, stores it and prints the whole POP settings block."""
        self.assertEqual(self.account("paid@example.org").pop.queue, "shared")
        self.assertEqual(
            self.ok("pop", "queue", "paid@example.org", "per-device"),
            "POP settings of paid@example.org\n"
            "  POP access:        disabled\n"
            "  POP spam:          exclude (POP offers the Inbox)\n"
            "  POP deletion:      keep (a message deleted by a POP client stays "
            "in its folder)\n"
            "  POP queue:         per-device (each app-specific password and the "
            "primary password has its own POP queue)\n",
        )
        self.assertEqual(self.account("paid@example.org").pop.queue, "per-device")
        self.assertIn(
            "\n  POP queue:         per-device (",
            self.ok("account", "show", "paid@example.org"),
        )
        out = self.ok("pop", "queue", "paid@example.org", "shared")
        self.assertIn(
            "\n  POP queue:         shared (one POP queue for every device)\n", out
        )
        self.assertEqual(self.account("paid@example.org").pop.queue, "shared")

    def test_bad_policies(self) -> None:
        """Unknown spam or deletion policies are usage errors."""
        self.assertEqual(
            self.usage("pop", "spam", "paid@example.org", "never"),
            "zpop: error: argument policy: invalid choice: 'never' (choose from "
            "'exclude', 'include', 'only')",
        )
        self.assertEqual(
            self.usage("pop", "deletion", "paid@example.org", "shred"),
            "zpop: error: argument policy: invalid choice: 'shred' (choose from "
            "'keep', 'delete')",
        )
        self.assertEqual(
            self.usage("pop", "spam", "paid@example.org"),
            "zpop: error: the following arguments are required: policy",
        )
        self.assertEqual(
            self.usage("pop", "queue", "paid@example.org", "per-client"),
            "zpop: error: argument queue: invalid choice: 'per-client' (choose "
            "from 'shared', 'per-device')",
        )
        self.assertEqual(
            self.usage("pop", "queue", "paid@example.org"),
            "zpop: error: the following arguments are required: queue",
        )

    def test_unknown_account(self) -> None:
        """POP commands on an unknown account fail with status 1."""
        for argv in (
            ("pop", "enable", "x@example.org", "--mode", "all"),
            ("pop", "disable", "x@example.org"),
            ("pop", "spam", "x@example.org", "include"),
            ("pop", "deletion", "x@example.org", "keep"),
            ("pop", "queue", "x@example.org", "per-device"),
        ):
            self.fails(
                "no account x@example.org: create it with "
                "'zpop account add x@example.org'",
                *argv,
            )


class AliceTestCase(AdminTestCase):
    """A hosted example.org with alice@example.org."""

    def setUp(self) -> None:
        super().setUp()
        self.ok("domain", "add", "example.org")
        self.ok("account", "add", "alice@example.org")


class TwoFactorTests(AliceTestCase):
    def test_enable_disable(self) -> None:
        """twofactor enable|disable ADDRESS toggles and says what it means."""
        self.assertEqual(
            self.ok("twofactor", "enable", "alice@example.org"),
            "two-factor authentication is required for alice@example.org: the "
            "account enrols at its next web sign-in, and mail clients need "
            "app-specific passwords\n"
            "it has none yet: create one with "
            "'zpop app-password create alice@example.org --label TEXT'\n",
        )
        self.assertTrue(self.account("alice@example.org").two_factor)
        self.assertEqual(
            self.ok("twofactor", "disable", "alice@example.org"),
            "two-factor authentication is off for alice@example.org\n",
        )
        self.assertFalse(self.account("alice@example.org").two_factor)

    def test_usage(self) -> None:
        """The action comes before the address; anything else is misuse."""
        self.assertEqual(
            self.usage("twofactor", "alice@example.org", "enable"),
            "zpop: error: argument state: invalid choice: 'alice@example.org' "
            "(choose from 'enable', 'disable')",
        )
        self.assertEqual(
            self.usage("twofactor", "on", "alice@example.org"),
            "zpop: error: argument state: invalid choice: 'on' (choose from "
            "'enable', 'disable')",
        )
        self.fails(
            "no account x@example.org: create it with 'zpop account add x@example.org'",
            "twofactor",
            "enable",
            "x@example.org",
        )


class ResetLinkTests(AliceTestCase):
    """``account reset-link`` and ``account recovery`` (DESIGN §3)."""

    def test_reset_link_on_the_web_host(self) -> None:
        """With ``[hosts] web`` and the web listener on 443, the link names
        that host and no port."""
        with open(os.path.join(self.data, "zpop.ini"), "a") as f:
            f.write("[hosts]\nweb = mail.example.com\n[listeners]\nweb = tcp:443\n")
        link = self.ok("account", "reset-link", "alice@example.org").strip()
        self.assertTrue(link.startswith("https://mail.example.com/reset?token="), link)

    def test_reset_link(self) -> None:
        """Only the link is printed, on the [server] hostname and the web
        listener's port; each is new, and the store keeps its keyed hash,
        live for an hour."""
        out = self.ok("account", "reset-link", "alice@example.org")
        link = out.strip()
        self.assertEqual(out, link + "\n")
        self.assertTrue(link.startswith("https://example.com:8443/reset?token="), link)
        token = link.partition("=")[2]
        key = passwords.load_or_create_key(self.data)
        digest = password_resets.token_digest(key, token)
        assert digest is not None
        store = self.store()
        found = admin.result_of(store.find_password_reset(digest, self.now))
        self.assertEqual(found, "alice@example.org")
        late = admin.result_of(store.find_password_reset(digest, self.now + 3600))
        self.assertIsNone(late)
        second = self.ok("account", "reset-link", "alice@example.org").strip()
        self.assertNotEqual(second, link)

    def test_reset_link_unknown(self) -> None:
        self.fails(
            "no account x@example.org: create it with 'zpop account add x@example.org'",
            "account",
            "reset-link",
            "x@example.org",
        )

    def test_recovery(self) -> None:
        """Set, replaced, shown by ``account show``; refused when not an
        address or the account's own."""
        self.assertEqual(
            self.ok("account", "recovery", "alice@example.org", "Al@Home.Example"),
            "reset links for alice@example.org go to al@home.example\n",
        )
        self.assertIn(
            "  Recovery address:  al@home.example\n",
            self.ok("account", "show", "alice@example.org"),
        )
        self.ok("account", "recovery", "alice@example.org", "al@work.example")
        self.assertIn(
            "  Recovery address:  al@work.example\n",
            self.ok("account", "show", "alice@example.org"),
        )
        status, out, err = self.zpop(
            "account", "recovery", "alice@example.org", "alice@example.org"
        )
        self.assertEqual((status, out), (1, ""))
        self.assertIn("another mailbox than the account's own", err)
        status, out, err = self.zpop(
            "account", "recovery", "alice@example.org", "not-an-address"
        )
        self.assertEqual((status, out), (1, ""))
        self.assertIn("not a full address", err)
        self.fails(
            "no account x@example.org: create it with 'zpop account add x@example.org'",
            "account",
            "recovery",
            "x@example.org",
            "al@home.example",
        )


class AppPasswordTests(AliceTestCase):
    def test_create(self) -> None:
        """create prints only the password, stored as the keyed digest."""
        out = self.ok("app-password", "create", "alice@example.org", "--label", "a")
        password = out[:-1]
        self.assertEqual(out, password + "\n")
        groups = password.split(" ")
        self.assertEqual([len(g) for g in groups], [4, 4, 4, 4])
        self.assertTrue(set("".join(groups)) <= set(passwords.APP_PASSWORD_ALPHABET))
        account = self.account("alice@example.org")
        key = passwords.load_or_create_key(self.data)
        digest = passwords.app_password_digest(key, account.id, password.upper())
        assert digest is not None
        used = admin.result_of(self.store().find_app_password(account.id, digest))
        self.assertEqual((used.label, used.account_id), ("a", account.id))
        self.assertEqual(used.pop_start, "setting")

    def test_create_pop_start(self) -> None:
        """--pop-start first-login is stored with the password (setting is
        the default); the output is still only the password, and list keeps
        its columns for the scripts that parse it."""
        out = self.ok(
            "app-password",
            "create",
            "alice@example.org",
            "--label",
            "phone",
            "--pop-start",
            "first-login",
        )
        self.assertRegex(out, r"^[a-z0-9]{4}( [a-z0-9]{4}){3}\n$")
        self.ok("app-password", "create", "alice@example.org", "--label", "laptop")
        found = admin.result_of(self.store().list_app_passwords("alice@example.org"))
        self.assertEqual(
            [(p.label, p.pop_start) for p in found],
            [("phone", "first-login"), ("laptop", "setting")],
        )
        self.assertEqual(
            self.ok("app-password", "list", "alice@example.org"),
            "ID  CREATED               LAST USED  LABEL\n"
            "1   2023-11-14T22:13:20Z  never      phone\n"
            "2   2023-11-14T22:13:20Z  never      laptop\n",
        )

    def test_list_and_revoke(self) -> None:
        """list shows id, created, last use and label; revoke removes one."""
        self.assertEqual(
            self.ok("app-password", "list", "alice@example.org"),
            "no app-specific passwords for alice@example.org\n",
        )
        self.ok("app-password", "create", "alice@example.org", "--label", "phone")
        self.now += 60
        self.ok("app-password", "create", "alice@example.org", "--label", "my  laptop")
        account = self.account("alice@example.org")
        store = self.store()
        (first, _) = admin.result_of(store.list_app_passwords(account.address))
        conn = sqlite3.connect(os.path.join(self.data, DATABASE_NAME))
        conn.execute(
            "UPDATE app_passwords SET last_used = ? WHERE id = ?", (NOW + 120, first.id)
        )
        conn.commit()
        conn.close()
        self.assertEqual(
            self.ok("app-password", "list", "alice@example.org"),
            "ID  CREATED               LAST USED             LABEL\n"
            "1   2023-11-14T22:13:20Z  2023-11-14T22:15:20Z  phone\n"
            "2   2023-11-14T22:14:20Z  never                 my laptop\n",
        )
        self.assertEqual(
            self.ok("app-password", "revoke", "alice@example.org", "1"),
            "revoked app-specific password 1 (phone) of alice@example.org\n",
        )
        self.assertEqual(
            [p.id for p in admin.result_of(store.list_app_passwords(account.address))],
            [2],
        )

    def test_revoke_errors(self) -> None:
        """revoke needs a positive integer id that belongs to the account."""
        self.assertEqual(
            self.usage("app-password", "revoke", "alice@example.org", "one"),
            "zpop: error: argument ID: 'one' is not a positive whole number",
        )
        self.assertEqual(
            self.usage("app-password", "revoke", "alice@example.org", "0"),
            "zpop: error: argument ID: '0' is not a positive whole number",
        )
        self.assertEqual(
            self.usage("app-password", "revoke", "alice@example.org", "-1"),
            "zpop: error: argument ID: '-1' is not a positive whole number",
        )
        self.fails(
            "alice@example.org has no app-specific password 7: see "
            "'zpop app-password list alice@example.org'",
            "app-password",
            "revoke",
            "alice@example.org",
            "7",
        )
        self.ok("account", "add", "bob@example.org")
        self.ok("app-password", "create", "bob@example.org", "--label", "b")
        self.fails(
            "alice@example.org has no app-specific password 1: see "
            "'zpop app-password list alice@example.org'",
            "app-password",
            "revoke",
            "alice@example.org",
            "1",
        )

    def test_create_errors(self) -> None:
        """create needs a label and an existing account."""
        self.assertEqual(
            self.usage("app-password", "create", "alice@example.org"),
            "zpop: error: the following arguments are required: --label",
        )
        self.assertEqual(
            self.usage("app-password", "create", "alice@example.org", "--label", " "),
            "zpop: error: argument --label: the label is empty",
        )
        self.assertEqual(
            self.usage(
                "app-password",
                "create",
                "alice@example.org",
                "--label",
                "x",
                "--pop-start",
                "later",
            ),
            "zpop: error: argument --pop-start: invalid choice: 'later' (choose "
            "from 'setting', 'first-login')",
        )
        self.fails(
            "no account x@example.org: create it with 'zpop account add x@example.org'",
            "app-password",
            "create",
            "x@example.org",
            "--label",
            "x",
        )


class AliasTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.setup_accounts()

    def test_add(self) -> None:
        """An alias in any hosted domain is added and receives mail."""
        self.assertEqual(
            self.ok("alias", "add", "alice@example.org", "Sales@Corp.Example"),
            "added alias sales@corp.example to alice@example.org: mail to it is "
            "delivered to alice@example.org, who may send as it\n",
        )
        self.assertEqual(
            admin.result_of(self.store().list_aliases("alice@example.org")),
            ["sales@corp.example"],
        )

    def test_errors(self) -> None:
        """Aliases must be in a hosted domain, unused, and of an account."""
        self.fails(
            "example.net is not a hosted domain: add it with "
            "'zpop domain add example.net'",
            "alias",
            "add",
            "alice@example.org",
            "a@example.net",
        )
        self.fails(
            "bob@corp.example is in use already as an account",
            "alias",
            "add",
            "alice@example.org",
            "bob@corp.example",
        )
        self.ok("alias", "add", "alice@example.org", "al@example.org")
        self.fails(
            "al@example.org is in use already as an alias of alice@example.org",
            "alias",
            "add",
            "bob@corp.example",
            "al@example.org",
        )
        self.fails(
            "no account x@example.org: create it with 'zpop account add x@example.org'",
            "alias",
            "add",
            "x@example.org",
            "y@example.org",
        )
        self.assertEqual(
            self.usage("alias", "add", "alice@example.org", "justalocalpart"),
            "zpop: error: argument ALIAS: 'justalocalpart' is not a full address: "
            "use user@domain (the login name is always the full address)",
        )


class DeliverTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.setup_accounts()

    def test_deliver(self) -> None:
        """deliver stores stdin normalised to CRLF and prints id and uid."""
        self.assertEqual(
            self.ok("deliver", "alice@example.org", stdin=MESSAGE),
            "delivered message 1 (uid 1, 67 bytes) to alice@example.org Inbox\n",
        )
        account = self.account("alice@example.org")
        (message,) = admin.result_of(self.store().list_messages(account.id))
        self.assertEqual(
            (message.folder, message.subject, message.received, message.seen),
            ("Inbox", "Hello", NOW, False),
        )
        body = admin.result_of(self.store().read_body(message.id, 0, 1000))
        self.assertEqual(body, MESSAGE.replace(b"\n", b"\r\n"))

    def test_deliver_spam_and_alias(self) -> None:
        """--folder Spam (any case) and alias recipients work."""
        self.ok("alias", "add", "alice@example.org", "al@example.org")
        self.assertEqual(
            self.ok("deliver", "AL@example.org", "--folder", "spam", stdin=MESSAGE),
            "delivered message 1 (uid 1, 67 bytes) to alice@example.org Spam\n",
        )

    def test_folder_choice(self) -> None:
        """Only Inbox and Spam are delivery folders."""
        self.assertEqual(
            self.usage("deliver", "alice@example.org", "--folder", "Trash"),
            "zpop: error: argument --folder: unknown folder 'Trash' (choose from "
            "Inbox, Spam)",
        )

    def test_malformed(self) -> None:
        """A malformed message is refused and nothing is stored."""
        for raw, why in (
            (b"", "the message is empty"),
            (b"Subject: x\n\nnul\0\n", "the message contains a NUL byte"),
            (
                b"not a header\n\nbody\n",
                "header line 1 is not a header field: b'not a header'",
            ),
        ):
            self.fails(
                f"malformed message: {why}: nothing stored",
                "deliver",
                "alice@example.org",
                stdin=raw,
            )
        account = self.account("alice@example.org")
        self.assertEqual(admin.result_of(self.store().list_messages(account.id)), [])

    def test_size_limit(self) -> None:
        """A message over the configured limit is refused, read bounded."""
        with open(os.path.join(self.data, "zpop.ini"), "a") as f:
            f.write("[limits]\nmessage_size = 1K\n")
        self.fails(
            "the message is over the size limit of 1024 bytes: nothing stored",
            "deliver",
            "alice@example.org",
            stdin=b"Subject: big\n\n" + b"x" * 2000,
        )
        # Just under the limit raw, over it once LF becomes CRLF.
        self.fails(
            "malformed message: the message is 1025 bytes, over the limit "
            "of 1024: nothing stored",
            "deliver",
            "alice@example.org",
            stdin=b"Subject: x\n\n" + b"y" * 1009 + b"\n",
        )

    def test_unknown_recipient(self) -> None:
        """deliver to an unknown address fails with status 1."""
        self.fails(
            "no account or alias x@example.org",
            "deliver",
            "x@example.org",
            stdin=MESSAGE,
        )


def write_maildir_file(root: str, sub: str, name: str, data: bytes) -> str:
    directory = os.path.join(root, sub)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def make_maildir(root: str) -> None:
    for folder in ("", ".Spam", ".Junk", ".Sent", ".Trash", ".Deleted Messages"):
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(root, folder, sub), exist_ok=True)


class ImportTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.setup_accounts()
        self.maildir = os.path.abspath(self.mktemp())
        make_maildir(self.maildir)

    def test_import_many(self) -> None:
        """2,000 messages across Maildir++ folders land in arrival order, with
        received from the file name and seen from the S flag, in batches."""
        folders = [
            ("", "Inbox"),
            (".Spam", "Spam"),
            (".Junk", "Spam"),
            (".Sent", "Sent"),
            (".Trash", "Trash"),
            (".Deleted Messages", "Trash"),
        ]
        expected = []
        count = 2000
        # Written in reverse so directory order is not arrival order.
        for i in reversed(range(count)):
            sub, folder = folders[i % len(folders)]
            seen = i % 3 == 0
            where = "cur" if seen or i % 2 else "new"
            name = f"{1600000000 + i}.M{i}P1.host,S=1" + (
                ":2,S" if seen else (":2," if where == "cur" else "")
            )
            write_maildir_file(
                self.maildir,
                os.path.join(sub, where),
                name,
                b"Subject: number %d\n\nbody %d\n" % (i, i),
            )
            expected.append((folder, 1600000000 + i, f"number {i}", seen))
        expected.reverse()
        self.patch(commands, "IMPORT_BATCH_MESSAGES", 300)
        calls = []
        store_messages = SQLiteStore.store_messages

        def counting(store: SQLiteStore, account_id: int, batch: list[Any]) -> Any:
            calls.append(len(batch))
            return store_messages(store, account_id, batch)

        self.patch(SQLiteStore, "store_messages", counting)
        out = self.ok("import", "alice@example.org", self.maildir)
        self.assertEqual(
            out,
            "imported 2000 messages into alice@example.org\n"
            "  Inbox  334\n"
            "  Spam   667\n"
            "  Sent   333\n"
            "  Trash  666\n"
            "  Drafts 0\n",
        )
        self.assertEqual(calls, [300] * 6 + [200])
        account = self.account("alice@example.org")
        stored = admin.result_of(self.store().list_messages(account.id))
        self.assertEqual(
            [(m.folder, m.received, m.subject, m.seen) for m in stored], expected
        )
        self.assertEqual([m.uid for m in stored], list(range(1, count + 1)))

    def test_order_and_fallbacks(self) -> None:
        """Same second orders by microseconds then name; a name without a
        time falls back to the file's mtime; other subfolders are skipped
        with a warning; bad files are skipped with a warning each."""
        write_maildir_file(
            self.maildir, "new", "1700000000.M20P1.h", b"Subject: b\n\nx"
        )
        write_maildir_file(self.maildir, "new", "1700000000.M3P1.h", b"Subject: a\n\nx")
        write_maildir_file(
            self.maildir, "cur", "1700000001.Z.h:2,S", b"Subject: c\n\nx"
        )
        odd = write_maildir_file(self.maildir, "cur", "noname:2,", b"Subject: d\n\nx")
        os.utime(odd, (1700000005, 1700000005))
        bad = write_maildir_file(self.maildir, "cur", "1700000002.bad", b"\0\0\0")
        empty = write_maildir_file(self.maildir, "new", "1700000003.empty", b"")
        write_maildir_file(self.maildir, "new", ".hidden", b"Subject: hidden\n\nx")
        write_maildir_file(self.maildir, "tmp", "1700000004.tmp", b"Subject: tmp\n\nx")
        make_maildir(os.path.join(self.maildir, ".Archive"))
        status, out, err = self.zpop("import", "alice@example.org", self.maildir)
        self.assertEqual(status, 0)
        self.assertEqual(
            out,
            "imported 4 messages into alice@example.org\n"
            "  Inbox  4\n"
            "  Spam   0\n"
            "  Sent   0\n"
            "  Trash  0\n"
            "  Drafts 0\n"
            "skipped 2 malformed files (see warnings)\n",
        )
        self.assertEqual(
            err,
            "zpop: warning: skipped Maildir folder .Archive: zpop has no folder "
            "for it (only Inbox, Spam, Sent, Trash, Drafts)\n"
            f"zpop: warning: skipped {bad}: malformed message: the message "
            "contains a NUL byte\n"
            f"zpop: warning: skipped {empty}: malformed message: the message is "
            "empty\n",
        )
        account = self.account("alice@example.org")
        stored = admin.result_of(self.store().list_messages(account.id))
        self.assertEqual(
            [(m.subject, m.received, m.seen) for m in stored],
            [
                ("a", 1700000000, False),
                ("b", 1700000000, False),
                ("c", 1700000001, True),
                ("d", 1700000005, False),
            ],
        )

    def test_unreadable_file(self) -> None:
        """A file that vanishes or cannot be read is reported, the rest is
        imported, and the exit status says something needs attention."""
        write_maildir_file(self.maildir, "new", "1700000000.a.h", b"Subject: a\n\nx")
        gone = os.path.join(self.maildir, "new", "1700000001.gone.h")
        found, skipped = maildir.arrival_order(self.maildir)
        ghost = maildir.Entry(
            path=gone,
            folder="Inbox",
            received=1700000001,
            microseconds=0,
            name="1700000001.gone.h",
            seen=False,
        )
        self.patch(maildir, "arrival_order", lambda root: ([*found, ghost], skipped))
        status, out, err = self.zpop("import", "alice@example.org", self.maildir)
        self.assertEqual(status, 1)
        self.assertEqual(
            out.splitlines()[0], "imported 1 messages into alice@example.org"
        )
        self.assertEqual(
            err,
            f"zpop: warning: cannot read {gone}: No such file or directory\n"
            "zpop: error: 1 files could not be read (see warnings); the other 1 "
            "messages were imported\n",
        )

    def test_not_a_maildir(self) -> None:
        """A directory without cur/ or new/ is refused, status 1."""
        other = os.path.abspath(self.mktemp())
        os.makedirs(other)
        self.fails(
            f"{other} is not a Maildir: it has no cur/ or new/ subdirectory",
            "import",
            "alice@example.org",
            other,
        )
        self.fails(
            f"{other}/missing is not a Maildir: it has no cur/ or new/ subdirectory",
            "import",
            "alice@example.org",
            os.path.join(other, "missing"),
        )

    def test_unknown_account(self) -> None:
        """import into an unknown account fails before reading anything."""
        self.fails(
            "no account x@example.org: create it with 'zpop account add x@example.org'",
            "import",
            "x@example.org",
            self.maildir,
        )


class MessagesTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.setup_accounts()

    def deliver(self, subject: str, folder: str = "Inbox") -> None:
        self.ok(
            "deliver",
            "alice@example.org",
            "--folder",
            folder,
            stdin=b"Subject: " + subject.encode() + b"\n\nx\n",
        )
        self.now += 60

    def test_pop_states(self) -> None:
        """messages shows whether the next POP session offers each message."""
        self.deliver("early")
        self.deliver("spam", "Spam")
        self.ok("pop", "enable", "alice@example.org", "--mode", "new")
        self.deliver("later")
        self.deliver("=?utf-8?q?caf=C3=A9_=1B[31m?=")
        conn = sqlite3.connect(os.path.join(self.data, DATABASE_NAME))
        conn.execute("UPDATE messages SET pop_removed = 1 WHERE uid = 3")
        conn.commit()
        conn.close()
        self.assertEqual(
            self.ok("messages", "alice@example.org"),
            "ID  FOLDER  RECEIVED              SIZE  POP                          "
            "SUBJECT\n"
            "1   Inbox   2023-11-14T22:13:20Z  21    not offered (before enable)  "
            "early\n"
            "2   Spam    2023-11-14T22:14:20Z  20    not offered (folder)         "
            "spam\n"
            "3   Inbox   2023-11-14T22:15:20Z  21    removed                      "
            "later\n"
            "4   Inbox   2023-11-14T22:16:20Z  45    queued                       "
            "café ?[31m\n",
        )
        self.assertEqual(
            self.ok("messages", "alice@example.org", "--folder", "spam"),
            "ID  FOLDER  RECEIVED              SIZE  POP                   SUBJECT\n"
            "2   Spam    2023-11-14T22:14:20Z  20    not offered (folder)  spam\n",
        )
        self.ok("pop", "spam", "alice@example.org", "only")
        self.ok("pop", "enable", "alice@example.org", "--mode", "all")
        self.assertIn(
            "\n2   Spam    2023-11-14T22:14:20Z  20    queued  spam\n",
            self.ok("messages", "alice@example.org", "--folder", "Spam"),
        )
        self.assertIn(
            "\n3   Inbox   2023-11-14T22:15:20Z  21    not offered (folder)  later\n",
            self.ok("messages", "alice@example.org"),
        )
        self.ok("pop", "disable", "alice@example.org")
        self.assertIn(
            "  POP disabled  spam\n",
            self.ok("messages", "alice@example.org", "--folder", "Spam"),
        )

    def test_empty_and_errors(self) -> None:
        """Empty listings say so; unknown folders are usage errors."""
        self.assertEqual(
            self.ok("messages", "alice@example.org"),
            "no messages for alice@example.org\n",
        )
        self.assertEqual(
            self.ok("messages", "alice@example.org", "--folder", "Trash"),
            "no messages in Trash for alice@example.org\n",
        )
        self.assertEqual(
            self.usage("messages", "alice@example.org", "--folder", "Archive"),
            "zpop: error: argument --folder: unknown folder 'Archive' (choose "
            "from Inbox, Spam, Sent, Trash, Drafts)",
        )
        self.fails(
            "no account x@example.org: create it with 'zpop account add x@example.org'",
            "messages",
            "x@example.org",
        )


class HelperTests(SynchronousTestCase):
    def test_result_of(self) -> None:
        """result_of returns a fired result and re-raises a failure's error."""
        from twisted.internet.defer import Deferred, fail, succeed

        self.assertEqual(admin.result_of(succeed(3)), 3)
        self.assertRaises(KeyError, admin.result_of, fail(KeyError("k")))
        self.assertRaises(RuntimeError, admin.result_of, Deferred())

    def test_parse_address(self) -> None:
        """Addresses are lower-cased; the domain may end in a dot."""
        self.assertEqual(admin.parse_address("A.B+c@Example.ORG."), "a.b+c@example.org")

    def test_table(self) -> None:
        """Tables align columns and never end lines with spaces."""
        self.assertEqual(
            admin.table(("A", "BB"), [("xxx", ""), ("y", "z")]),
            ["A    BB", "xxx", "y    z"],
        )


def zpop_process(*argv: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    """The real command, as the console script runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "zpop.admin", *argv],
        stdin=kwargs.pop("stdin", subprocess.DEVNULL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


class ProcessTests(AdminTestCase):
    def run_process(self, *argv: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
        proc = zpop_process("--data", self.data, *argv, stdin=subprocess.PIPE)
        out, err = proc.communicate(stdin, timeout=60)
        return proc.returncode, out, err

    def test_exit_codes(self) -> None:
        """The real command exits 0, 1 and 2 with one-line errors on stderr."""
        self.assertEqual(
            self.run_process("domain", "add", "example.org"),
            (0, b"added personal domain example.org (POP host pop.example.com)\n", b""),
        )
        self.assertEqual(
            self.run_process("domain", "add", "example.org"),
            (1, b"", b"zpop: error: domain example.org exists already\n"),
        )
        status, out, err = self.run_process("pop", "enable", "a@example.org")
        self.assertEqual((status, out), (2, b""))
        self.assertEqual(
            err.splitlines()[-1],
            b"zpop: error: the following arguments are required: --mode",
        )
        self.assertNotIn(b"Traceback", err)

    def test_console_script(self) -> None:
        """The installed ``zpop`` script passes main's status to the shell."""
        script = os.path.join(os.path.dirname(sys.executable), "zpop")
        if not os.path.exists(script):
            from twisted.trial.unittest import SkipTest

            raise SkipTest(f"no console script at {script}")
        proc = subprocess.run(
            [script, "--data", self.data, "account", "show", "x@example.org"],
            capture_output=True,
            timeout=60,
        )
        self.assertEqual(
            (proc.returncode, proc.stdout, proc.stderr),
            (
                1,
                b"",
                b"zpop: error: no account x@example.org: create it with "
                b"'zpop account add x@example.org'\n",
            ),
        )

    def test_kill_during_deliver(self) -> None:
        """SIGKILL while ``zpop deliver`` reads or writes a 30 MB message
        leaves a consistent database: the message is whole or absent, and
        the next delivery works."""
        self.ok("domain", "add", "example.org")
        self.ok("account", "add", "alice@example.org")
        line = b"x" * 998 + b"\n"
        big = b"Subject: big\n\n" + line * (30 * 1024 * 1024 // len(line))
        database = os.path.join(self.data, DATABASE_NAME)
        wal = database + "-wal"

        # 1. Killed while still reading stdin: nothing may be stored.
        proc = zpop_process(
            "--data", self.data, "deliver", "alice@example.org", stdin=subprocess.PIPE
        )
        assert proc.stdin is not None
        proc.stdin.write(big[: len(big) // 2])
        proc.stdin.flush()
        proc.kill()
        proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        self.assert_consistent(expected_sizes={0})

        # 2. Killed once the WAL grows: mid-transaction (or just after).
        start = os.path.getsize(wal) if os.path.exists(wal) else 0
        proc = zpop_process(
            "--data", self.data, "deliver", "alice@example.org", stdin=subprocess.PIPE
        )
        assert proc.stdin is not None
        proc.stdin.write(big)
        proc.stdin.close()
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if os.path.exists(wal) and os.path.getsize(wal) > start + 4 * 1024 * 1024:
                proc.kill()
                break
            time.sleep(0.001)
        proc.wait(timeout=60)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
        self.assertIn(proc.returncode, (0, -signal.SIGKILL))
        self.assert_consistent(expected_sizes={0, 1})

        # 3. The next delivery works.
        self.ok("deliver", "alice@example.org", stdin=MESSAGE)
        sizes = self.assert_consistent(expected_sizes={1, 2})
        self.assertEqual(sizes[-1], len(MESSAGE.replace(b"\n", b"\r\n")))

    def assert_consistent(self, expected_sizes: set[int]) -> list[int]:
        """integrity_check is ok and every stored body is whole."""
        conn = sqlite3.connect(os.path.join(self.data, DATABASE_NAME))
        try:
            self.assertEqual(
                conn.execute("PRAGMA integrity_check").fetchall(), [("ok",)]
            )
            rows = conn.execute(
                "SELECT m.size, (SELECT sum(length(c.data)) FROM body_chunks c"
                " WHERE c.message_id = m.id) FROM messages m ORDER BY m.uid"
            ).fetchall()
        finally:
            conn.close()
        self.assertIn(len(rows), expected_sizes)
        for size, length in rows:
            self.assertEqual(size, length)
        return [size for size, _ in rows]


class QueueTests(AdminTestCase):
    """``zpop queue list|retry|delete``: the outbound queue."""

    def enqueue(self, *recipients: str, sender: str = "bob@example.com") -> int:
        """Queue a message through the store, as SMTP submission does."""
        from zpop.store.records import QueuedMessage

        store = SQLiteStore(os.path.join(self.data, DATABASE_NAME), run_synchronously)
        try:
            accepted = admin.result_of(
                store.accept_message(
                    [],
                    QueuedMessage(
                        sender, recipients, b"Subject: x\r\n\r\nx\r\n", NOW, NOW + 99
                    ),
                )
            )
        finally:
            store.close()
        return int(accepted.queue_id)

    def test_list_empty(self) -> None:
        """An empty queue says so."""
        self.assertEqual(self.ok("queue", "list"), "the outbound queue is empty\n")

    def test_list(self) -> None:
        """One line per recipient: id, sender, recipient, state, attempts,
        next attempt and last error; the null sender shows as <>."""
        first = self.enqueue("a@remote.example", "b@remote.example")
        second = self.enqueue("c@remote.example", sender="")
        self.assertEqual(
            self.ok("queue", "list"),
            "ID  SENDER           RECIPIENT         STATE   ATTEMPTS"
            "  NEXT ATTEMPT          LAST ERROR\n"
            f"{first}   bob@example.com  a@remote.example  queued  0"
            f"         {NOW_ISO}  -\n"
            f"{first}   bob@example.com  b@remote.example  queued  0"
            f"         {NOW_ISO}  -\n"
            f"{second}   <>               c@remote.example  queued  0"
            f"         {NOW_ISO}  -\n",
        )

    def test_retry_one_and_all(self) -> None:
        """retry ID makes one message's recipients due now, --all every one."""
        first = self.enqueue("a@remote.example", "b@remote.example")
        self.enqueue("c@remote.example")
        self.now = NOW + 3600
        self.assertEqual(
            self.ok("queue", "retry", str(first)),
            f"2 recipients of message {first} due now;"
            " the server tries them at its next scan\n",
        )
        self.assertEqual(
            self.ok("queue", "retry", "--all"),
            "3 recipients in the queue due now;"
            " the server tries them at its next scan\n",
        )
        self.assertIn("2023-11-14T23:13:20Z", self.ok("queue", "list"))

    def test_retry_unknown_and_usage(self) -> None:
        """An unknown id fails naming the fix; no id and no --all is misuse."""
        self.fails("no queued message 7: see 'zpop queue list'", "queue", "retry", "7")
        self.assertEqual(
            self.usage("queue", "retry"),
            "zpop: error: one of the arguments ID --all is required",
        )

    def test_delete(self) -> None:
        """delete removes a message (no bounce); a second delete fails."""
        first = self.enqueue("a@remote.example", "b@remote.example")
        self.assertEqual(
            self.ok("queue", "delete", str(first)),
            f"deleted message {first} (2 recipients) from the outbound queue"
            " without a bounce\n",
        )
        self.assertEqual(self.ok("queue", "list"), "the outbound queue is empty\n")
        self.fails(
            f"no queued message {first}: see 'zpop queue list'",
            "queue",
            "delete",
            str(first),
        )
