-- zpop: foreign keys off
-- IMAP's mailbox model (DESIGN §1 "IMAP"), one mailbox for POP and IMAP.
--
-- Folders are rows now: the five built-in ones (role set; INBOX's IMAP name
-- is 'INBOX') and the user's own (role NULL, '/' as delimiter). Each has
-- its own UIDs (next_uid), a UIDVALIDITY and a MODSEQ counter
-- (highest_modseq, RFC 7162). accounts.folder_validity is the last
-- UIDVALIDITY given in the account: a new one is max(now, last + 1), so a
-- name deleted and created again never gets one it had.
--
-- A message keeps messages.uid, the account-wide uid its POP UIDL is made
-- of, wherever IMAP moves it: POP clients never download mail again after
-- this upgrade or after a move. imap_uid is its UID in its folder; an
-- existing message's imap_uid is its uid (ascending in every folder
-- already), so IMAP clients start from the same numbers POP has.
--
-- flags: \Seen 1, \Answered 2, \Flagged 4, \Deleted 8, \Draft 16
-- (zpop.store.mailbox); keywords: the message's keywords, space-separated.
-- A message leaving a folder (EXPUNGE, MOVE, POP's move to Trash) leaves a
-- folder_expunges row, so a session catches up from a MODSEQ without
-- reading the whole folder.
--
-- messages is rebuilt (its folder CHECK goes), hence foreign keys off for
-- this migration (SQLite's documented table rebuild); the migration runner
-- checks every reference before it commits, so a message of no account
-- (folder 0 here) stops the upgrade instead of being lost. The AUTOINCREMENT sequence is
-- carried over, so no message id is ever given twice.

ALTER TABLE accounts ADD COLUMN folder_validity INTEGER NOT NULL DEFAULT 0;

CREATE TABLE folders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    role TEXT CHECK (role IN ('Inbox', 'Spam', 'Sent', 'Trash', 'Drafts')),
    uid_validity INTEGER NOT NULL,
    next_uid INTEGER NOT NULL,
    highest_modseq INTEGER NOT NULL,
    subscribed INTEGER NOT NULL DEFAULT 1 CHECK (subscribed IN (0, 1)),
    UNIQUE (account_id, name),
    UNIQUE (account_id, role)
);

INSERT INTO folders (account_id, name, role, uid_validity, next_uid, highest_modseq)
SELECT a.id, CASE r.role WHEN 'Inbox' THEN 'INBOX' ELSE r.role END, r.role,
       CAST(strftime('%s', 'now') AS INTEGER), a.next_uid, 1
FROM accounts a,
     (SELECT 'Inbox' AS role UNION ALL SELECT 'Spam' UNION ALL SELECT 'Sent'
      UNION ALL SELECT 'Trash' UNION ALL SELECT 'Drafts') r
ORDER BY a.id, r.role;

UPDATE accounts SET folder_validity = (
    SELECT COALESCE(MAX(uid_validity), 0) FROM folders WHERE account_id = accounts.id
);

CREATE TABLE messages_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    folder_id INTEGER NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    imap_uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    received REAL NOT NULL,
    size INTEGER NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    flags INTEGER NOT NULL DEFAULT 0 CHECK (flags BETWEEN 0 AND 31),
    keywords TEXT NOT NULL DEFAULT '',
    pop_removed INTEGER NOT NULL DEFAULT 0 CHECK (pop_removed IN (0, 1)),
    UNIQUE (account_id, uid),
    UNIQUE (folder_id, imap_uid)
);

INSERT INTO messages_new (id, account_id, folder_id, uid, imap_uid, modseq,
                          received, size, subject, flags, pop_removed)
SELECT m.id, m.account_id, COALESCE(f.id, 0), m.uid, m.uid, 1, m.received,
       m.size, m.subject, m.seen, m.pop_removed
FROM messages m LEFT JOIN folders f
    ON f.account_id = m.account_id AND f.role = m.folder;

DELETE FROM sqlite_sequence WHERE name = 'messages_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'messages_new', seq FROM sqlite_sequence WHERE name = 'messages';

DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE INDEX messages_modseq ON messages (folder_id, modseq);

CREATE TABLE folder_expunges (
    folder_id INTEGER NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    modseq INTEGER NOT NULL,
    imap_uid INTEGER NOT NULL,
    PRIMARY KEY (folder_id, modseq, imap_uid)
) WITHOUT ROWID;
