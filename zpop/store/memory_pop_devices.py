"""Per-device POP queues in the MemoryStore: the rule of
``zpop.store.sqlite_pop_devices`` (migration 017) over an account row's
``pop_devices``, each device with the messages it deleted."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from zpop.store.memory_mailboxes import folder_named, move_to
from zpop.store.records import Message, StoreError

_device_ids = itertools.count(1)


@dataclass(slots=True)
class PopDeviceRow:
    id: int
    #: None: the primary password.
    app_password_id: int | None
    start_uid: int
    first_login: float
    last_login: float | None = None
    #: Ids of the messages this device deleted that others still have.
    removed: set[int] = field(default_factory=set)


def find_device(row: Any, app_password_id: int | None) -> PopDeviceRow | None:
    """The device of the account row, or None before its first login."""
    for device in row.pop_devices.values():
        if device.app_password_id == app_password_id:
            return device  # type: ignore[no-any-return]
    return None


def register_device(row: Any, app_password_id: int | None, now: float) -> PopDeviceRow:
    """A device's first login: its queue starts where its app password's
    ``pop_start`` says."""
    start = 0
    if app_password_id is not None:
        password = row.app_passwords.get(app_password_id)
        if password is None:
            raise StoreError("the app password was revoked")
        if password.record.pop_start == "first-login":
            start = row.next_uid
    device = PopDeviceRow(next(_device_ids), app_password_id, start, float(now))
    row.pop_devices[device.id] = device
    return device


def device_queue(
    row: Any, folders: Sequence[str], device: PopDeviceRow
) -> list[Message]:
    """The device's POP queue, oldest first."""
    start = max(row.account.pop.start_uid, device.start_uid)
    return [
        stored.message
        for stored in row.messages.values()
        if stored.message.folder in folders
        and not stored.message.pop_removed
        and stored.message.uid >= start
        and stored.message.id not in device.removed
    ]


def remove_for_device(
    row: Any, device_id: int, message_ids: Sequence[int], to_trash: bool
) -> None:
    """A device's QUIT: the messages leave its queue; those no other device
    still has leave the POP queue (to Trash if ``to_trash``)."""
    device = row.pop_devices.get(device_id)
    if device is None:
        raise StoreError("the device's app password was revoked")
    device.removed.update(i for i in message_ids if i in row.messages)
    settle_deleted(row, message_ids, to_trash)


def forget_device(row: Any, app_password_id: int) -> None:
    """What ON DELETE CASCADE does when the app password goes."""
    device = find_device(row, app_password_id)
    if device is not None:
        del row.pop_devices[device.id]


def settle_deleted(row: Any, message_ids: Iterable[int] | None, to_trash: bool) -> None:
    """Of ``message_ids`` (None: every message some device deleted), those
    that no device still has in its queue leave the POP queue."""
    devices = list(row.pop_devices.values())
    if message_ids is None:
        message_ids = set().union(*(d.removed for d in devices))
    settled: list[int] = []
    for message_id in list(message_ids):
        stored = row.messages.get(message_id)
        if stored is None or stored.message.pop_removed:
            continue
        uid = stored.message.uid
        if any(uid >= d.start_uid and message_id not in d.removed for d in devices):
            continue
        stored.message = replace(stored.message, pop_removed=True)
        settled.append(message_id)
        for device in devices:
            device.removed.discard(message_id)
    if to_trash:
        move_to(row, folder_named(row, "Trash"), settled)
