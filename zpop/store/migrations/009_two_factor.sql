-- Two-factor authentication with TOTP (RFC 6238; DESIGN §1 "Two-factor
-- authentication"). accounts.two_factor stays what the mail protocols read:
-- 1 while two-factor is required or on, and the primary password is then
-- refused. two_factor_required is the operator's 'zpop twofactor enable':
-- the account must enrol and cannot turn two-factor off itself. An account
-- is enrolled (two-factor "on") while it has a row in totp_secrets.

ALTER TABLE accounts ADD COLUMN two_factor_required INTEGER NOT NULL DEFAULT 0
    CHECK (two_factor_required IN (0, 1));
-- Accounts switched on before this version were switched by the operator.
UPDATE accounts SET two_factor_required = two_factor;

-- The secret is sealed (AES-256-GCM under a key derived from server.key,
-- bound to the account's address: zpop.accounts.totp), so a copy of the
-- database alone yields no second factor. last_step is the last time step
-- a code was accepted for: a code counts only for a later step, so each is
-- used once, by a compare-and-set on this column.
CREATE TABLE totp_secrets (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    sealed BLOB NOT NULL,
    last_step INTEGER,
    enrolled REAL NOT NULL
);

-- Ten single-use recovery codes per enrolment, stored as keyed hashes as
-- app passwords are; a used code keeps its row, with the time of use. They
-- belong to the enrolment: deleting the secret deletes them.
CREATE TABLE recovery_codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL
        REFERENCES totp_secrets (account_id) ON DELETE CASCADE,
    digest BLOB NOT NULL UNIQUE,
    created REAL NOT NULL,
    used REAL
);
CREATE INDEX recovery_codes_account ON recovery_codes (account_id);

-- Two-factor off keeps no second factor, whoever turns it off: the secret
-- and the recovery codes go, so switching it on again never revives an old
-- enrolment. Both by name, so it holds on a connection without foreign keys.
CREATE TRIGGER two_factor_off AFTER UPDATE OF two_factor ON accounts
    WHEN NEW.two_factor = 0
BEGIN
    DELETE FROM recovery_codes WHERE account_id = NEW.id;
    DELETE FROM totp_secrets WHERE account_id = NEW.id;
END;
