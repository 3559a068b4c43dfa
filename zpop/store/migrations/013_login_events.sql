-- Sign-in activity (DESIGN §1 "Self-service web settings"): each account's
-- recent logins over every protocol, written in batches by
-- zpop.accounts.activity; at most the last 100 per account are kept (the
-- writer prunes older ones in the same transaction). Rows go with their
-- account.

CREATE TABLE login_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    at REAL NOT NULL,
    protocol TEXT NOT NULL,
    client TEXT NOT NULL,
    credential TEXT NOT NULL,
    result TEXT NOT NULL CHECK (result IN ('succeeded', 'failed', 'refused')),
    reason TEXT NOT NULL
);
CREATE INDEX login_events_account ON login_events (account_id, id);
