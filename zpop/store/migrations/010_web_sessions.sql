-- Web settings sessions (DESIGN §1 "Self-service web settings"): server-side,
-- so every worker process and node sees them. The session id lives only in
-- the browser's cookie; the row holds its keyed hash (HMAC-SHA256 under the
-- server key). A session ends at `expires` (absolute) or `idle` seconds
-- after `last_seen`; `stage` is 'code' while the second factor is due.

CREATE TABLE web_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    digest BLOB NOT NULL UNIQUE,
    stage TEXT NOT NULL,
    client TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    created REAL NOT NULL,
    last_seen REAL NOT NULL,
    expires REAL NOT NULL,
    idle REAL NOT NULL
);
CREATE INDEX web_sessions_account ON web_sessions (account_id);
CREATE INDEX web_sessions_expires ON web_sessions (expires);
