-- The outbound queue: mail submitted for recipients outside the hosted
-- domains. Written in the same transaction as the message's local copies,
-- so the 250 after DATA promises both. The outbound relay (its own issue)
-- picks rows whose state is 'queued' and next_attempt is due, records each
-- attempt, and bounces the message once a recipient fails or expires.

-- One row per submitted message. AUTOINCREMENT: a queue id is never reused,
-- so a log line naming one always means one message.
CREATE TABLE outbound_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Envelope sender (MAIL FROM), '' for the null sender; bounces go here.
    sender TEXT NOT NULL,
    -- The submitting account, for its Sent folder and per-account limits.
    account_id INTEGER REFERENCES accounts (id) ON DELETE SET NULL,
    -- The message as it leaves: CRLF line ends, Received: already added.
    body BLOB NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    -- Give up (and bounce) after this time (default: created + 5 days).
    expires REAL NOT NULL
);

-- One row per remote recipient, each delivered and retried on its own.
CREATE TABLE outbound_recipients (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES outbound_messages (id) ON DELETE CASCADE,
    recipient TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    -- The last SMTP reply or connection error, for the bounce and the log.
    last_error TEXT,
    UNIQUE (message_id, recipient)
);
CREATE INDEX outbound_recipients_due ON outbound_recipients (state, next_attempt);
