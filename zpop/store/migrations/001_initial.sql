-- zpop schema version 1. Migrations are immutable: change the schema with a
-- new numbered file, never by editing this one.

CREATE TABLE domains (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    organization INTEGER NOT NULL CHECK (organization IN (0, 1)),
    created REAL NOT NULL
);

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    domain_id INTEGER NOT NULL REFERENCES domains (id),
    plan TEXT NOT NULL CHECK (plan IN ('free', 'paid')),
    created REAL NOT NULL,
    password_hash BLOB,
    federated INTEGER NOT NULL DEFAULT 0 CHECK (federated IN (0, 1)),
    two_factor INTEGER NOT NULL DEFAULT 0 CHECK (two_factor IN (0, 1)),
    pop_enabled INTEGER NOT NULL DEFAULT 0 CHECK (pop_enabled IN (0, 1)),
    pop_mode TEXT CHECK (pop_mode IN ('all', 'new')),
    pop_enabled_at REAL,
    pop_start_uid INTEGER NOT NULL DEFAULT 0,
    pop_spam TEXT NOT NULL DEFAULT 'exclude'
        CHECK (pop_spam IN ('exclude', 'include', 'only')),
    pop_deletion TEXT NOT NULL DEFAULT 'keep'
        CHECK (pop_deletion IN ('keep', 'delete')),
    generation INTEGER NOT NULL DEFAULT 0,
    uid_validity INTEGER NOT NULL,
    next_uid INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE app_passwords (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    digest BLOB NOT NULL UNIQUE,
    created REAL NOT NULL,
    last_used REAL
);
CREATE INDEX app_passwords_account ON app_passwords (account_id);

CREATE TABLE aliases (
    alias TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE
);
CREATE INDEX aliases_account ON aliases (account_id);

-- AUTOINCREMENT: a message id is never reused, so a session holding an old
-- id can never read another message.
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    folder TEXT NOT NULL CHECK (folder IN ('Inbox', 'Spam', 'Sent', 'Trash')),
    uid INTEGER NOT NULL,
    received REAL NOT NULL,
    size INTEGER NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    seen INTEGER NOT NULL DEFAULT 0 CHECK (seen IN (0, 1)),
    pop_removed INTEGER NOT NULL DEFAULT 0 CHECK (pop_removed IN (0, 1)),
    UNIQUE (account_id, uid)
);
CREATE INDEX messages_folder ON messages (account_id, folder, uid);

-- Bodies apart from their metadata, so listing a large mailbox never reads
-- them; stored with CRLF line ends, exactly the octets RETR sends.
CREATE TABLE bodies (
    message_id INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    data BLOB NOT NULL
);

CREATE TABLE pop_locks (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    expires REAL NOT NULL
);
