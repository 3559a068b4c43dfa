-- Where an app password was last used (DESIGN §1 "Self-service web
-- settings": "list with created and last-used time and where from"), and
-- which app password a login event used. Both are written with the sign-in
-- activity batch (zpop.accounts.activity), so no login waits for them; a
-- login event keeps no reference to a revoked password.

ALTER TABLE app_passwords ADD COLUMN last_used_from TEXT;
ALTER TABLE login_events ADD COLUMN app_password_id INTEGER
    REFERENCES app_passwords (id) ON DELETE SET NULL;
