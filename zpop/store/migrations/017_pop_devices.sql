-- Per-device POP queues: with `pop_queue` 'per-device' every device (each
-- app password, and the primary password as one more) has its own POP
-- queue. A device has a queue from its first POP login in that mode (a
-- pop_devices row); `start_uid` is where it starts: 0 to follow the
-- account's all/new setting, or the account's next uid at that first login
-- for an app password made with `pop_start` 'first-login'. A DELE adds the
-- message to the device's pop_device_removed; once every device whose queue
-- holds the message has deleted it (or was revoked: the rows cascade), the
-- message gets `pop_removed` (and moves to Trash under deletion 'delete'),
-- and its pop_device_removed rows go. `last_login` is the device's, for
-- LOGIN-DELAY.

ALTER TABLE accounts ADD COLUMN pop_queue TEXT NOT NULL DEFAULT 'shared'
    CHECK (pop_queue IN ('shared', 'per-device'));

ALTER TABLE app_passwords ADD COLUMN pop_start TEXT NOT NULL DEFAULT 'setting'
    CHECK (pop_start IN ('setting', 'first-login'));

CREATE TABLE pop_devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- NULL: the primary password.
    app_password_id INTEGER REFERENCES app_passwords (id) ON DELETE CASCADE,
    start_uid INTEGER NOT NULL,
    first_login REAL NOT NULL,
    last_login REAL
);
CREATE UNIQUE INDEX pop_devices_app_password ON pop_devices (app_password_id)
    WHERE app_password_id IS NOT NULL;
CREATE UNIQUE INDEX pop_devices_primary ON pop_devices (account_id)
    WHERE app_password_id IS NULL;

CREATE TABLE pop_device_removed (
    device_id INTEGER NOT NULL REFERENCES pop_devices (id) ON DELETE CASCADE,
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (device_id, message_id)
) WITHOUT ROWID;
CREATE INDEX pop_device_removed_message ON pop_device_removed (message_id);
