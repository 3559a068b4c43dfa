-- Forgot password (DESIGN §1 "Self-service web settings"): the address an
-- account's reset links are sent to, and the one-time links themselves. The
-- token lives only in the link; the row holds its keyed hash (HMAC-SHA256
-- under the server key). A link is good until `expires` and only once:
-- `used` is set by one conditional UPDATE, so of two uses exactly one wins.

ALTER TABLE accounts ADD COLUMN recovery_address TEXT;

CREATE TABLE password_resets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    digest BLOB NOT NULL UNIQUE,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    used REAL
);
CREATE INDEX password_resets_account ON password_resets (account_id);
