"""The in-memory store: IStore in plain Python objects, for unit tests.

Protocol and service tests need a store that behaves exactly like
``SQLiteStore`` (same records, errors, ordering and id rules) but costs no
disk, thread or reactor: every Deferred here has fired by the time the
method returns, and a failed call changes nothing, as a rolled-back
transaction would. The conformance suite in ``zpop.test.test_store`` holds
it to that. It is shared by nothing: one MemoryStore is one "database" seen
by one process, so its change counter and maildrop locks are in-process.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from zpop.store.interface import IStore
from zpop.store.locks import lock_offset
from zpop.store.memory_api_tokens import MemoryApiTokens
from zpop.store.memory_app_passwords import AppPasswordRow, MemoryAppPasswords
from zpop.store.memory_imap import MemoryImap
from zpop.store.memory_login_events import MemoryLoginEvents
from zpop.store.memory_mailboxes import (
    FolderRow,
    MemoryMailboxes,
    create_built_in,
    folder_named,
    move_to,
)
from zpop.store.memory_pop_devices import (
    PopDeviceRow,
    device_queue,
    find_device,
    register_device,
    remove_for_device,
)
from zpop.store.memory_pop_log import MemoryPopLog
from zpop.store.memory_queue import MemoryOutboundQueue, check_in, schema_error, settle
from zpop.store.memory_resets import MemoryPasswordResets
from zpop.store.memory_two_factor import MemoryTwoFactor
from zpop.store.memory_web import MemoryWebSessions
from zpop.store.records import (
    DELETION_POLICIES,
    PLANS,
    POP_MODES,
    POP_QUEUES,
    REPEATED_FAILURES,
    SPAM_POLICIES,
    Accepted,
    Account,
    AlreadyExists,
    Domain,
    Message,
    NewMessage,
    NotFound,
    PopSession,
    PopSessionLog,
    PopSettings,
    PopSnapshot,
    QueuedMessage,
    QueuedRecipient,
    StoreError,
)


class MemoryChangeCounter:
    """``zpop.store.changes.ChangeCounter`` for one process: an integer.

    Same ``value()``/``bump()`` contract (64-bit, wraps), no file: there is
    no other process to tell.
    """

    def __init__(self) -> None:
        self._value = 0

    def value(self) -> int:
        return self._value

    def bump(self) -> None:
        self._value = (self._value + 1) % 2**64

    def close(self) -> None:
        """Nothing to release; here so it can stand in for ChangeCounter."""


class MemoryMaildropLocks:
    """``zpop.store.locks.MaildropLocks`` without the kernel: a dict.

    One holder per maildrop (``lock_offset``); a second acquire (by the
    holder too) is refused; only the holder releases. After ``close`` every
    lock is gone and acquiring fails StoreError, as with a closed lock file.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._holders: dict[int, str] = {}
        self._offsets: dict[tuple[int, str], int] = {}
        self._closed = False

    def acquire(
        self, account_id: int, owner: str, app_password_id: int | None = None
    ) -> bool:
        """Take the maildrop's lock for ``owner``; False if anyone holds it."""
        if self._closed:
            raise StoreError(f"the maildrop locks of {self.name} are closed")
        offset = lock_offset(account_id, app_password_id)
        if offset in self._holders or (account_id, owner) in self._offsets:
            return False
        self._holders[offset] = owner
        self._offsets[account_id, owner] = offset
        return True

    def holds(self, account_id: int, owner: str) -> bool:
        return (account_id, owner) in self._offsets

    def release(self, account_id: int, owner: str) -> bool:
        """Give the lock up if ``owner`` holds it; whether it did."""
        if not self.holds(account_id, owner):
            return False
        del self._holders[self._offsets.pop((account_id, owner))]
        return True

    def close(self) -> None:
        self._closed = True
        self._holders.clear()
        self._offsets.clear()


# -- rows: the mutable state behind the frozen records -----------------------


@dataclass(slots=True)
class _MessageRow:
    message: Message
    body: bytes
    folder_id: int


@dataclass(slots=True)
class _AccountRow:
    account: Account
    next_uid: int = 1
    #: id -> row, in uid order (uids only grow, so insertion order).
    messages: dict[int, _MessageRow] = field(default_factory=dict)
    app_passwords: dict[int, AppPasswordRow] = field(default_factory=dict)
    pop_devices: dict[int, PopDeviceRow] = field(default_factory=dict)
    folders: dict[int, FolderRow] = field(default_factory=dict)
    #: The last UIDVALIDITY given in the account.
    folder_validity: int = 0


@dataclass(slots=True)
class _Failure:
    client: str
    account: str
    secret: str | None
    at: float


@implementer(IStore)
class MemoryStore(
    MemoryApiTokens,
    MemoryAppPasswords,
    MemoryLoginEvents,
    MemoryMailboxes,
    MemoryPopLog,
    MemoryImap,
    MemoryPasswordResets,
    MemoryWebSessions,
    MemoryTwoFactor,
    MemoryOutboundQueue,
):
    """IStore in memory, behaving as SQLiteStore does (zpop.store.sqlite).

    Ids and uids are never reused. A check SQLite's schema makes (CHECK,
    UNIQUE, FOREIGN KEY) fails here with a StoreError too, before anything
    changes. StorageFull is never raised: there is no disk to fill.
    """

    def __init__(self, path: str = ":memory:") -> None:
        super().__init__(path)
        self._changes = MemoryChangeCounter()
        self._pop_locks = MemoryMaildropLocks(path)
        self._domains: dict[str, Domain] = {}
        self._accounts: dict[int, _AccountRow] = {}
        self._addresses: dict[str, int] = {}
        self._aliases: dict[str, int] = {}
        self._messages: dict[int, _MessageRow] = {}
        self._app_passwords: dict[int, AppPasswordRow] = {}
        self._digests: dict[bytes, int] = {}
        self._failures: list[_Failure] = []
        self._bans: dict[str, float] = {}
        self._domain_ids = itertools.count(1)
        self._account_ids = itertools.count(1)
        self._message_ids = itertools.count(1)

    def close(self) -> None:
        """Drop every maildrop lock, as closing SQLiteStore does."""
        self._pop_locks.close()
        self._changes.close()

    def changes(self) -> int:
        return self._changes.value()

    # -- helpers: look-ups and the checks the SQL schema makes -------------

    def _constraint(self, text: str) -> StoreError:
        return schema_error(self.path, text)

    def _check(self, column: str, value: object, allowed: Iterable[str]) -> None:
        check_in(self.path, column, value, allowed)

    def _row(self, address: str) -> _AccountRow:
        account_id = self._addresses.get(address.lower())
        if account_id is None:
            raise NotFound(f"no account {address.lower()}")
        return self._accounts[account_id]

    def _row_by_id(self, account_id: int) -> _AccountRow:
        row = self._accounts.get(account_id)
        if row is None:
            raise NotFound(f"no account with id {account_id}")
        return row

    def _claim_address(self, address: str) -> Domain:
        """``address``'s hosted domain, if no account or alias has the
        address; raises NotFound or AlreadyExists."""
        name = address.rpartition("@")[2]
        domain = self._domains.get(name)
        if domain is None:
            raise NotFound(f"no hosted domain {name}")
        if address in self._addresses or address in self._aliases:
            raise AlreadyExists(f"address {address} is taken already")
        return domain

    def _recipient_row(self, address: str) -> _AccountRow | None:
        """The account an address or alias delivers to."""
        address = address.lower()
        account_id = self._addresses.get(address, self._aliases.get(address))
        return None if account_id is None else self._accounts[account_id]

    def _update_account(
        self, address: str, change: Callable[[Account], Account]
    ) -> Deferred[Account]:
        """Change one account's record, bumping its generation and the
        change counter, as every credential or settings change does."""

        def apply() -> Account:
            row = self._row(address)
            changed = change(row.account)
            row.account = replace(changed, generation=changed.generation + 1)
            self._changes.bump()
            return row.account

        return settle(apply)

    # -- domains ------------------------------------------------------------

    def add_domain(self, name: str, organization: bool, now: float) -> Deferred[Domain]:
        def apply() -> Domain:
            key = name.lower()
            if key in self._domains:
                raise AlreadyExists(f"domain {key} exists already")
            domain = Domain(next(self._domain_ids), key, bool(organization), float(now))
            self._domains[key] = domain
            return domain

        return settle(apply)

    def get_domain(self, name: str) -> Deferred[Domain]:
        def look() -> Domain:
            domain = self._domains.get(name.lower())
            if domain is None:
                raise NotFound(f"no hosted domain {name.lower()}")
            return domain

        return settle(look)

    def list_domains(self) -> Deferred[list[Domain]]:
        return succeed([self._domains[name] for name in sorted(self._domains)])

    # -- accounts -----------------------------------------------------------

    def add_account(
        self,
        address: str,
        plan: str,
        federated: bool,
        password_hash: bytes | None,
        now: float,
    ) -> Deferred[Account]:
        address = address.lower()

        def apply() -> Account:
            domain = self._claim_address(address)
            self._check("plan", plan, PLANS)
            account = Account(
                id=next(self._account_ids),
                address=address,
                domain=domain.name,
                organization=domain.organization,
                plan=plan,
                created=float(now),
                password_hash=None if password_hash is None else bytes(password_hash),
                federated=bool(federated),
                two_factor=False,
                pop=PopSettings(
                    enabled=False,
                    mode=None,
                    enabled_at=None,
                    start_uid=0,
                    spam="exclude",
                    deletion="keep",
                ),
                generation=0,
                uid_validity=secrets.randbits(31),
            )
            row = _AccountRow(account)
            create_built_in(row, now)
            self._accounts[account.id] = row
            self._addresses[address] = account.id
            return account

        return settle(apply)

    def get_account(self, address: str) -> Deferred[Account | None]:
        account_id = self._addresses.get(address.lower())
        return succeed(
            None if account_id is None else self._accounts[account_id].account
        )

    def get_account_for_recipient(self, address: str) -> Deferred[Account | None]:
        row = self._recipient_row(address)
        return succeed(None if row is None else row.account)

    def list_accounts(self) -> Deferred[list[Account]]:
        return succeed(
            [
                self._accounts[self._addresses[address]].account
                for address in sorted(self._addresses)
            ]
        )

    def delete_account(self, address: str) -> Deferred[None]:
        def apply() -> None:
            row = self._row(address)
            account_id = row.account.id
            # What the schema's ON DELETE CASCADE / SET NULL do.
            del self._accounts[account_id]
            del self._addresses[row.account.address]
            for alias in [a for a, i in self._aliases.items() if i == account_id]:
                del self._aliases[alias]
            for message_id in row.messages:
                del self._messages[message_id]
            self._forget_app_passwords(row)
            for queued in self._queue.values():
                if queued.account_id == account_id:
                    queued.account_id = None
            self._changes.bump()

        return settle(apply)

    def set_password(
        self, address: str, password_hash: bytes | None
    ) -> Deferred[Account]:
        hashed = None if password_hash is None else bytes(password_hash)
        return self._update_account(address, lambda a: replace(a, password_hash=hashed))

    def set_two_factor(self, address: str, enabled: bool) -> Deferred[Account]:
        if not enabled:
            return self.reset_two_factor(address)
        return self._update_account(
            address, lambda a: replace(a, two_factor=True, two_factor_required=True)
        )

    def enable_pop(self, address: str, mode: str, now: float) -> Deferred[Account]:
        def apply() -> Account:
            row = self._row(address)
            self._check("pop_mode", mode, POP_MODES)
            if mode == "all":
                start = 0
                for message in row.messages.values():
                    if message.message.pop_removed:
                        message.message = replace(message.message, pop_removed=False)
                for device in row.pop_devices.values():
                    device.removed.clear()
            else:
                start = row.next_uid
            pop = replace(
                row.account.pop,
                enabled=True,
                mode=mode,
                enabled_at=float(now),
                start_uid=start,
            )
            row.account = replace(
                row.account, pop=pop, generation=row.account.generation + 1
            )
            self._changes.bump()
            return row.account

        return settle(apply)

    def disable_pop(self, address: str) -> Deferred[Account]:
        return self._update_account(
            address, lambda a: replace(a, pop=replace(a.pop, enabled=False))
        )

    def set_plan(self, address: str, plan: str) -> Deferred[Account]:
        def change(account: Account) -> Account:
            self._check("plan", plan, PLANS)
            return replace(account, plan=plan)

        return self._update_account(address, change)

    def set_pop_spam(self, address: str, policy: str) -> Deferred[Account]:
        def change(account: Account) -> Account:
            self._check("pop_spam", policy, SPAM_POLICIES)
            return replace(account, pop=replace(account.pop, spam=policy))

        return self._update_account(address, change)

    def set_pop_deletion(self, address: str, policy: str) -> Deferred[Account]:
        def change(account: Account) -> Account:
            self._check("pop_deletion", policy, DELETION_POLICIES)
            return replace(account, pop=replace(account.pop, deletion=policy))

        return self._update_account(address, change)

    def set_pop_queue(self, address: str, queue: str) -> Deferred[Account]:
        def change(account: Account) -> Account:
            self._check("pop_queue", queue, POP_QUEUES)
            return replace(account, pop=replace(account.pop, queue=queue))

        return self._update_account(address, change)

    # -- aliases --------------------------------------------------------------

    def add_alias(self, address: str, alias: str) -> Deferred[None]:
        alias = alias.lower()

        def apply() -> None:
            row = self._row(address)
            self._claim_address(alias)
            # Not a credential or setting: no generation, no change count.
            self._aliases[alias] = row.account.id

        return settle(apply)

    def list_aliases(self, address: str) -> Deferred[list[str]]:
        def look() -> list[str]:
            account_id = self._row(address).account.id
            return sorted(a for a, i in self._aliases.items() if i == account_id)

        return settle(look)

    # -- messages ---------------------------------------------------------------

    def store_messages(
        self, account_id: int, messages: list[NewMessage]
    ) -> Deferred[list[Message]]:
        def apply() -> list[Message]:
            for new in messages:
                self._check_new(account_id, new)
            return [self._insert_message(account_id, new) for new in messages]

        return settle(apply)

    def accept_message(
        self, local: list[tuple[int, NewMessage]], queued: QueuedMessage | None
    ) -> Deferred[Accepted]:
        # No group commit to share: each acceptance is applied at once, whole.
        def apply() -> Accepted:
            for account_id, new in local:
                self._check_new(account_id, new)
            if queued is None or not queued.recipients:
                stored = tuple(self._insert_message(i, new) for i, new in local)
                return Accepted(messages=stored, queue_id=None)
            owner = queued.account_id
            if owner is not None and owner not in self._accounts:
                raise self._constraint("FOREIGN KEY constraint failed")
            stored = tuple(self._insert_message(i, new) for i, new in local)
            row = self._enqueue(
                queued.sender,
                queued.account_id,
                queued.body,
                queued.created,
                queued.expires,
                list(dict.fromkeys(queued.recipients)),
            )
            return Accepted(
                messages=stored,
                queue_id=row.id,
                queued=tuple(
                    QueuedRecipient(
                        r.recipient, r.state, r.attempts, r.next_attempt, r.last_error
                    )
                    for r in row.recipients
                ),
            )

        return settle(apply)

    def _message_row(
        self, message: Message, body: bytes, folder_id: int
    ) -> _MessageRow:
        return _MessageRow(message, body, folder_id)

    def _account_messages(self, account_id: int) -> Iterable[Message]:
        row = self._accounts.get(account_id)
        return () if row is None else (m.message for m in row.messages.values())

    def list_messages(
        self, account_id: int, folder: str | None = None
    ) -> Deferred[list[Message]]:
        return succeed(
            [
                m
                for m in self._account_messages(account_id)
                if folder is None or m.folder == folder
            ]
        )

    def _pop_queue(
        self, account_id: int, folders: Sequence[str], min_uid: int
    ) -> list[Message]:
        return [
            m
            for m in self._account_messages(account_id)
            if m.folder in folders and not m.pop_removed and m.uid >= min_uid
        ]

    def read_body(self, message_id: int, offset: int, length: int) -> Deferred[bytes]:
        stored = self._messages.get(message_id)
        if stored is None:
            return fail(NotFound(f"message {message_id} no longer exists"))
        # A slice: at most ``length`` bytes are copied, whatever the size.
        return succeed(stored.body[offset : offset + length])

    def read_bodies(self, message_ids: Sequence[int]) -> Deferred[dict[int, bytes]]:
        found = {i: self._messages[i].body for i in message_ids if i in self._messages}
        return succeed({i: found[i] for i in sorted(found) if found[i]})

    # -- POP sessions -------------------------------------------------------------

    def open_pop_session(
        self,
        address: str,
        owner: str,
        folders_for: Mapping[str, tuple[str, ...]],
        app_password_id: int | None = None,
        now: float = 0.0,
    ) -> Deferred[PopSession | None]:
        def apply() -> PopSession | None:
            account_id = self._addresses.get(address.lower())
            if account_id is None:
                return None
            row = self._accounts[account_id]
            account = row.account
            per_device = account.pop.queue == "per-device"
            holder = app_password_id if per_device else None
            if not account.pop.enabled or not self._pop_locks.acquire(
                account.id, owner, holder
            ):
                return PopSession(account, False, PopSnapshot())
            try:
                folders = folders_for[account.pop.spam]
                if per_device:
                    device = find_device(row, app_password_id) or register_device(
                        row, app_password_id, now
                    )
            except BaseException:
                self._pop_locks.release(account.id, owner)
                raise
            if per_device:
                messages = device_queue(row, folders, device)
                last_login, device_id = device.last_login, device.id
            else:
                messages = self._pop_queue(account.id, folders, account.pop.start_uid)
                last_login, device_id = self._last_pop_login(account.id), None
            return PopSession(
                account,
                True,
                PopSnapshot(
                    [m.id for m in messages],
                    [m.uid for m in messages],
                    [m.size for m in messages],
                ),
                last_login,
                device_id,
            )

        return settle(apply)

    def release_pop_lock(self, account_id: int, owner: str) -> Deferred[None]:
        self._pop_locks.release(account_id, owner)
        return succeed(None)

    def finish_pop_session(
        self,
        account_id: int,
        owner: str,
        message_ids: list[int],
        to_trash: bool,
        log: PopSessionLog | None = None,
        device: int | None = None,
    ) -> Deferred[None]:
        def apply() -> None:
            if not self._pop_locks.holds(account_id, owner):
                raise StoreError("the maildrop lock was lost")
            self._check_pop_log(log)
            row = self._accounts.get(account_id)
            if device is not None and row is not None:
                if device not in row.pop_devices:
                    raise StoreError("the device's app password was revoked")
            # Before the move, as in SQL: the subjects are read from the rows.
            self._write_pop_log(account_id, log)
            if device is not None and row is not None:
                remove_for_device(row, device, message_ids, to_trash)
                self._pop_locks.release(account_id, owner)
                return
            # Only this account's messages: an id of another is ignored.
            owned = {} if row is None else row.messages
            for message_id in message_ids:
                stored = owned.get(message_id)
                if stored is not None:
                    stored.message = replace(stored.message, pop_removed=True)
            if to_trash and row is not None:
                move_to(row, folder_named(row, "Trash"), message_ids)
            self._pop_locks.release(account_id, owner)

        return settle(apply)

    # -- login throttling ----------------------------------------------------

    def note_login_failure(
        self, client: str, account: str, secret: str, now: float, window: float
    ) -> Deferred[tuple[int, int]]:
        since = now - window
        self._failures = [f for f in self._failures if f.at > since]
        latest = [f.secret for f in reversed(self._failures) if f.client == client]
        if secret not in latest[:REPEATED_FAILURES]:
            self._failures.append(_Failure(client, account, secret, float(now)))
        return succeed(
            (
                sum(1 for f in self._failures if f.client == client),
                sum(1 for f in self._failures if f.account == account),
            )
        )

    def ban_client(self, client: str, until: float) -> Deferred[None]:
        self._bans[client] = float(until)
        self._changes.bump()
        return succeed(None)

    def client_banned_until(self, client: str, now: float) -> Deferred[float | None]:
        until = self._bans.get(client)
        return succeed(until if until is not None and until > now else None)

    # -- outbound relay (the queue itself: zpop.store.memory_queue) --------

    def finish_outbound(
        self,
        message_id: int,
        local: tuple[int, NewMessage] | None = None,
        queued: QueuedMessage | None = None,
    ) -> Deferred[bool]:
        def apply() -> bool:
            if message_id not in self._queue:
                return False
            if local is not None and local[0] not in self._accounts:
                raise self._constraint("FOREIGN KEY constraint failed")
            del self._queue[message_id]
            if local is not None:
                self._insert_message(*local)
            if queued is not None:
                self._enqueue(
                    queued.sender,
                    queued.account_id,
                    queued.body,
                    queued.created,
                    queued.expires,
                    list(dict.fromkeys(queued.recipients)),
                )
            return True

        return settle(apply)
