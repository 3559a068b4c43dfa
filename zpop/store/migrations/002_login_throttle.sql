-- Failed logins and bans, shared by every process on this database so a
-- restart or a second front end does not reset them.

CREATE TABLE login_failures (
    id INTEGER PRIMARY KEY,
    client TEXT NOT NULL,
    account TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX login_failures_client ON login_failures (client, at);
CREATE INDEX login_failures_account ON login_failures (account, at);
CREATE INDEX login_failures_at ON login_failures (at);

CREATE TABLE login_bans (
    client TEXT PRIMARY KEY,
    until REAL NOT NULL
);
