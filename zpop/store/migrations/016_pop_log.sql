-- The POP download log (DESIGN §1 "POP access settings"): every message a
-- POP client retrieved whole and every DELE applied, with the device (the
-- login's credential label), client address and time, written once per
-- session as it ends (with its deletions, in their transaction); entries
-- older than `[pop] log_days` are pruned by the same write. The subject is
-- copied from the message then, so the log outlives the message. Rows go
-- with their account.

CREATE TABLE pop_downloads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    at REAL NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('retr', 'dele')),
    credential TEXT NOT NULL,
    client TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    uidl TEXT NOT NULL,
    subject TEXT NOT NULL
);
CREATE INDEX pop_downloads_account ON pop_downloads (account_id, at);

-- Each account's last POP login, for RFC 2449 LOGIN-DELAY: written by the
-- session as it ends, only while a delay is configured for the plan.
CREATE TABLE pop_logins (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    at REAL NOT NULL
);
