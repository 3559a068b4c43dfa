-- Maildrop locks are kernel locks on the file <database>-pop-locks now
-- (zpop/store/locks.py): they end with the process that holds them, so
-- there is no lease to keep in the database. A row left by a server of an
-- older version locks nothing any more.

DROP TABLE pop_locks;
