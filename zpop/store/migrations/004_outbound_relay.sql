-- What the outbound relay keeps per recipient beyond 003.
--
-- A lease: the process delivering a recipient claims it (lease_owner) until
-- lease_until, renewing while it works. A process that dies holding a claim
-- loses it when the lease runs out, and the recipient is retried: a crash
-- never loses a recipient, and two processes never deliver one at once.
ALTER TABLE outbound_recipients ADD COLUMN lease_owner TEXT;
ALTER TABLE outbound_recipients ADD COLUMN lease_until REAL;
-- The last result, for the DSN (RFC 3464) of a failed recipient: the
-- enhanced status code (RFC 3463, "5.1.1"), the host that answered, and its
-- SMTP reply (NULL when no server answered: DNS or connection failures).
ALTER TABLE outbound_recipients ADD COLUMN status TEXT;
ALTER TABLE outbound_recipients ADD COLUMN remote_mta TEXT;
ALTER TABLE outbound_recipients ADD COLUMN diagnostic TEXT;
