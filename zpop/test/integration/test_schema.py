"""Schema versions: only init, upgrade and server start migrate, after a
backup; every other command refuses another version, naming the fix."""

from __future__ import annotations

import os
import re
import sqlite3
from unittest import mock

from twisted.trial.unittest import SynchronousTestCase

from zpop.store import DATABASE_NAME, SchemaError, records, schema
from zpop.test.integration.test_admin import AdminTestCase


def version_of(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT version FROM zpop_version").fetchone()[0])
    finally:
        conn.close()


class CommandTests(AdminTestCase):
    """The ``zpop`` command against a database one version behind."""

    def setUp(self) -> None:
        super().setUp()
        self.database = os.path.join(self.data, DATABASE_NAME)
        os.unlink(self.database)
        self.old = schema.latest_version() - 1
        schema.migrate(self.database, to_version=self.old)

    def backups(self) -> list[str]:
        return sorted(n for n in os.listdir(self.data) if n.endswith(".backup"))

    def test_other_commands_refuse(self) -> None:
        """A command other than init and upgrade changes nothing and names
        ``zpop upgrade``."""
        self.fails(
            f"database at {self.database} is version {self.old}, this zpop needs"
            f" {schema.latest_version()}: run 'zpop upgrade' (stop the server"
            " first; it upgrades at start too)",
            "domain",
            "list",
        )
        self.assertEqual((version_of(self.database), self.backups()), (self.old, []))

    def test_upgrade_backs_up_first(self) -> None:
        """``zpop upgrade`` copies the database beside it, then migrates; the
        copy is the old version, whole; a second run has nothing to do."""
        out = self.ok("upgrade")
        [backup] = self.backups()
        path = os.path.join(self.data, backup)
        self.assertEqual(
            out,
            f"upgraded database {self.database} from schema version {self.old} to"
            f" {schema.latest_version()}; the version {self.old} database was"
            f" copied to {path}\n",
        )
        self.assertEqual(
            (version_of(self.database), version_of(path)),
            (schema.latest_version(), self.old),
        )
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
        self.assertEqual(
            self.ok("upgrade"),
            f"database {self.database} is up to date (schema version"
            f" {schema.latest_version()})\n",
        )
        self.assertEqual(len(self.backups()), 1)
        self.assertEqual(
            self.ok("domain", "list"),
            "no hosted domains: add one with 'zpop domain add DOMAIN'\n",
        )

    def test_init_upgrades(self) -> None:
        """``zpop init`` on an old database upgrades it the same way."""
        out = self.ok("init")
        self.assertIn(
            f"upgraded database {self.database} from schema version {self.old}", out
        )
        self.assertEqual(len(self.backups()), 1)

    def test_upgrade_without_database(self) -> None:
        """``zpop upgrade`` with no database says to run init."""
        os.unlink(self.database)
        self.fails(f"no zpop database in {self.data}: run 'zpop init' first", "upgrade")


class SchemaTests(SynchronousTestCase):
    def path(self) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        return os.path.join(directory, DATABASE_NAME)

    def test_newer_refused(self) -> None:
        """A database newer than this zpop is refused by check and upgrade."""
        path = self.path()
        schema.migrate(path)
        newer = schema.latest_version() + 1
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE zpop_version SET version = ?", (newer,))
        message = (
            f"database at {path} is version {newer}, this zpop knows up to"
            f" {schema.latest_version()}: upgrade zpop"
        )
        for call in (schema.check, schema.upgrade):
            with self.assertRaises(SchemaError) as caught:
                call(path)
            self.assertEqual(str(caught.exception), message)

    def test_version_read_under_the_write_lock(self) -> None:
        """A migration applied by another upgrader meanwhile is not applied
        again: the version is read inside the write transaction."""
        path = self.path()
        schema.migrate(path, to_version=1)
        number, script = schema.migrations()[1]
        first, second = schema.connect(path), schema.connect(path)
        self.addCleanup(first.close)
        self.addCleanup(second.close)
        applied = [
            schema._apply(conn, path, number, script) for conn in (first, second)
        ]
        self.assertEqual(applied, [True, False])
        self.assertEqual(version_of(path), 2)

    def test_broken_references_refused(self) -> None:
        """A row whose reference is broken is reported by ``zpop upgrade``
        (check_references), by table; a plain open does not read the whole
        database for it."""
        path = self.path()
        schema.migrate(path)
        conn = sqlite3.connect(path)
        conn.execute(
            "INSERT INTO messages (account_id, folder_id, uid, imap_uid, modseq,"
            " received, size) VALUES (99, 99, 1, 1, 1, 0, 0)"
        )
        conn.commit()
        conn.close()
        self.assertEqual(schema.check(path), schema.latest_version())
        with self.assertRaises(SchemaError) as caught:
            schema.upgrade(path, check_references=True)
        self.assertEqual(
            str(caught.exception),
            f"database at {path} has 1 rows whose references are broken (in"
            " messages): restore it from a backup",
        )

    def test_broken_references_found_after_a_migration(self) -> None:
        """A migration checks every reference once it has run."""
        path = self.path()
        schema.migrate(path, to_version=schema.latest_version() - 1)
        conn = sqlite3.connect(path)
        conn.execute(
            "INSERT INTO messages (account_id, folder, uid, received, size)"
            " VALUES (99, 'Inbox', 1, 0, 0)"
        )
        conn.commit()
        conn.close()
        with self.assertRaises(SchemaError) as caught:
            schema.upgrade(path)
        self.assertIn("has 1 rows whose references are broken", str(caught.exception))

    def test_database_errors_are_schema_errors(self) -> None:
        """A locked or unreadable database is a SchemaError naming the file,
        never a bare sqlite3 error."""
        path = self.path()
        schema.migrate(path)
        with mock.patch.object(
            schema, "_version", side_effect=sqlite3.OperationalError("disk I/O error")
        ):
            with self.assertRaises(SchemaError) as caught:
                schema.check(path)
        self.assertEqual(
            str(caught.exception), f"database error in {path}: disk I/O error"
        )


class AppPasswordIdsTests(SynchronousTestCase):
    def test_migration_008_keeps_rows_and_stops_reuse(self) -> None:
        """Migration 008 keeps every app password as it was, and from then
        on a revoked id is never given to a new one."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, DATABASE_NAME)
        schema.migrate(path, to_version=7)
        # Rows straight into the old schema: today's store reads columns
        # (migration 009's) that a version 7 database does not have.
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(
                "INSERT INTO domains (name, organization, created)"
                " VALUES ('e.com', 0, 0)"
            )
            conn.execute(
                "INSERT INTO accounts (address, domain_id, plan, created,"
                " uid_validity) VALUES ('a@e.com', 1, 'paid', 0, 1)"
            )
            for label in ("phone", "mail"):
                conn.execute(
                    "INSERT INTO app_passwords (account_id, label, digest,"
                    " created) VALUES (1, ?, ?, 5.0)",
                    (label, label.encode() * 8),
                )
        conn.close()
        conn = sqlite3.connect(path)
        rows = conn.execute("SELECT * FROM app_passwords ORDER BY id").fetchall()
        conn.close()
        self.assertEqual([r[:3] for r in rows], [(1, 1, "phone"), (2, 1, "mail")])
        self.assertEqual(schema.migrate(path, to_version=8), 8)
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        self.assertEqual(
            conn.execute("SELECT * FROM app_passwords ORDER BY id").fetchall(), rows
        )
        conn.execute("DELETE FROM app_passwords WHERE id = 2")
        conn.execute(
            "INSERT INTO app_passwords (account_id, label, digest, created)"
            " VALUES (1, 'new', ?, 8.0)",
            (b"n" * 32,),
        )
        self.assertEqual(
            conn.execute("SELECT max(id) FROM app_passwords").fetchone(), (3,)
        )


class VocabularyTests(SynchronousTestCase):
    def test_check_lists_are_the_enums(self) -> None:
        """The schema's CHECK lists hold exactly the values of the record
        vocabularies (Plan, PopMode, SpamPolicy, DeletionPolicy, Folder,
        RecipientState, login event results, API token scopes, POP queues and
        starts), in order."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, DATABASE_NAME)
        schema.migrate(path)
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        rows = conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")
        text = " ".join(r[0] for r in rows)
        checks = {
            column: tuple(v.strip().strip("'") for v in values.split(","))
            for column, values in re.findall(r"CHECK \((\w+) IN \(([^)]*)\)\)", text)
            if "'" in values
        }
        self.assertEqual(
            checks,
            {
                "plan": records.PLANS,
                "pop_mode": records.POP_MODES,
                "pop_spam": records.SPAM_POLICIES,
                "pop_deletion": records.DELETION_POLICIES,
                "role": records.FOLDERS,
                "state": records.OUTBOUND_STATES,
                "result": records.LOGIN_RESULTS,
                "scope": records.API_SCOPES,
                "action": records.POP_ACTIONS,
                "pop_queue": records.POP_QUEUES,
                "pop_start": records.POP_STARTS,
            },
        )
