-- AUTOINCREMENT, as messages have: a revoked app password's id is never
-- given to a new one, so a session started with the revoked password
-- (which checks that its id still exists) never takes the new one for it.
-- Nothing references app_passwords, so the table is rebuilt in place.

CREATE TABLE app_passwords_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    digest BLOB NOT NULL UNIQUE,
    created REAL NOT NULL,
    last_used REAL
);
INSERT INTO app_passwords_new (id, account_id, label, digest, created, last_used)
    SELECT id, account_id, label, digest, created, last_used FROM app_passwords;
DROP TABLE app_passwords;
ALTER TABLE app_passwords_new RENAME TO app_passwords;
CREATE INDEX app_passwords_account ON app_passwords (account_id);
