-- Settings API tokens (DESIGN §1 "Settings API"): a user's personal tokens
-- (account_id set) and the operator's admin tokens (account_id NULL), each
-- with a scope and a label. Only a keyed hash of the token is stored
-- (HMAC-SHA256 under the server key), unique across all tokens, so a
-- token is found by its hash alone. A user's tokens go with the account.

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER REFERENCES accounts (id) ON DELETE CASCADE,
    scope TEXT NOT NULL CHECK (scope IN ('read', 'write')),
    label TEXT NOT NULL,
    digest BLOB NOT NULL UNIQUE,
    created REAL NOT NULL,
    last_used REAL
);
CREATE INDEX api_tokens_account ON api_tokens (account_id);
