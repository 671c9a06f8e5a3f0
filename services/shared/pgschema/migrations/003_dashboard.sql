-- 003: signing in to the web dashboard through WorkOS. Users and orgs keep
-- their WorkOS ids; a signed-in browser holds a session whose random token
-- is stored only as its SHA-256.

ALTER TABLE orgs ADD COLUMN workos_org_id text UNIQUE;
ALTER TABLE users ADD COLUMN workos_user_id text UNIQUE;

CREATE TABLE dashboard_sessions (
	token_hash text        PRIMARY KEY,
	user_id    uuid        NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_user ON dashboard_sessions (user_id);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);
