-- A failed login remembers a keyed hash of the (address, secret) pair it
-- tried, never the secret: a client retrying one wrong password with each
-- mechanism it knows (PLAIN, LOGIN, USER/PASS) is counted once, as Dovecot
-- does. Rows from before carry none and never match.

ALTER TABLE login_failures ADD COLUMN secret TEXT;
