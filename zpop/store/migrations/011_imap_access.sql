-- IMAP access on/off per account (DESIGN §1 "IMAP": "Per-account IMAP
-- access setting (on by default; zpop imap enable|disable ADDRESS, the web
-- and the API)"). Stored and shown before zpop serves IMAP, so the choice
-- an account's owner makes now is the one the IMAP listener will find.
--
-- Default 1 (on), for new and existing accounts alike: the contract says on
-- by default, as in the seed's service, where IMAP needs no opt-in. The
-- switch protects nothing yet (no IMAP listener exists), and when one is
-- added it applies the same checker, throttle, two-factor rule and
-- Free-plan cut-off as POP, so on-by-default opens no path POP does not.
-- An operator who wants IMAP opt-in runs 'zpop imap disable' per account
-- before enabling the listener.
ALTER TABLE accounts ADD COLUMN imap_enabled INTEGER NOT NULL DEFAULT 1
    CHECK (imap_enabled IN (0, 1));
