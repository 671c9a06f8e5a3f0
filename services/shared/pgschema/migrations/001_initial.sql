-- 001: the control plane's tables. Sandbox history tables (command_logs,
-- pty_session_logs) are written idempotently by the event syncer: each row
-- carries a unique id from the worker, so a redelivered event is a no-op.

CREATE TABLE orgs (
	id                       uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
	name                     text        NOT NULL,
	slug                     text        NOT NULL UNIQUE,
	plan                     text        NOT NULL DEFAULT 'free',
	max_concurrent_sandboxes integer     NOT NULL DEFAULT 10 CHECK (max_concurrent_sandboxes >= 0),
	max_sandbox_timeout_sec  integer     NOT NULL DEFAULT 3600 CHECK (max_sandbox_timeout_sec > 0),
	created_at               timestamptz NOT NULL DEFAULT now(),
	updated_at               timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
	id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
	org_id     uuid        NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
	email      text        NOT NULL UNIQUE,
	name       text        NOT NULL DEFAULT '',
	role       text        NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_org_id ON users (org_id);

CREATE TABLE api_keys (
	id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
	org_id     uuid        NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
	created_by uuid        REFERENCES users(id) ON DELETE SET NULL,
	key_hash   text        NOT NULL UNIQUE, -- hex SHA-256 of the whole key
	key_prefix text        NOT NULL,        -- first characters, shown to people
	name       text        NOT NULL DEFAULT '',
	scopes     text[]      NOT NULL DEFAULT '{sandboxes:write}',
	last_used  timestamptz,
	expires_at timestamptz,
	revoked_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_org_id ON api_keys (org_id);
CREATE INDEX api_keys_key_prefix ON api_keys (key_prefix);

CREATE TABLE sandbox_sessions (
	id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
	sandbox_id text        NOT NULL UNIQUE,
	org_id     uuid        REFERENCES orgs(id) ON DELETE CASCADE, -- NULL: created with the static key
	user_id    uuid        REFERENCES users(id) ON DELETE SET NULL,
	template   text        NOT NULL,
	region     text        NOT NULL,
	worker_id  text        NOT NULL,
	status     text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'stopped', 'error')),
	config     jsonb       NOT NULL DEFAULT '{}',
	metadata   jsonb       NOT NULL DEFAULT '{}',
	started_at timestamptz NOT NULL DEFAULT now(),
	end_at     timestamptz,
	stopped_at timestamptz,
	error_msg  text
);
-- GET /sessions?status= and the concurrent-sandbox quota.
CREATE INDEX sandbox_sessions_org_status ON sandbox_sessions (org_id, status, started_at DESC);
-- Failing the running sessions of a lost worker.
CREATE INDEX sandbox_sessions_worker_running ON sandbox_sessions (worker_id) WHERE status = 'running';
-- Sweeping sessions whose end passed.
CREATE INDEX sandbox_sessions_running_end ON sandbox_sessions (end_at) WHERE status = 'running';

CREATE TABLE command_logs (
	id          bigserial   PRIMARY KEY,
	event_id    text        NOT NULL UNIQUE,
	sandbox_id  text        NOT NULL,
	command     text        NOT NULL,
	args        text[]      NOT NULL DEFAULT '{}',
	cwd         text        NOT NULL DEFAULT '',
	exit_code   integer     NOT NULL,
	duration_ms bigint      NOT NULL,
	stdout_len  bigint      NOT NULL DEFAULT 0,
	stderr_len  bigint      NOT NULL DEFAULT 0,
	created_at  timestamptz NOT NULL
);
CREATE INDEX command_logs_sandbox ON command_logs (sandbox_id, created_at);

CREATE TABLE pty_session_logs (
	id             bigserial   PRIMARY KEY,
	sandbox_id     text        NOT NULL,
	pty_session_id text        NOT NULL UNIQUE,
	started_at     timestamptz NOT NULL,
	ended_at       timestamptz,
	bytes_in       bigint      NOT NULL DEFAULT 0,
	bytes_out      bigint      NOT NULL DEFAULT 0
);
CREATE INDEX pty_session_logs_sandbox ON pty_session_logs (sandbox_id);

CREATE TABLE workers (
	id             text        PRIMARY KEY,
	region         text        NOT NULL,
	grpc_addr      text        NOT NULL,
	http_addr      text        NOT NULL,
	capacity       integer     NOT NULL DEFAULT 0,
	current_count  integer     NOT NULL DEFAULT 0,
	status         text        NOT NULL DEFAULT 'healthy' CHECK (status IN ('healthy', 'stale', 'draining')),
	last_heartbeat timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workers_region_status ON workers (region, status);

CREATE TABLE templates (
	id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
	org_id     uuid        REFERENCES orgs(id) ON DELETE CASCADE, -- NULL: built in
	name       text        NOT NULL,
	tag        text        NOT NULL DEFAULT 'latest',
	image_ref  text        NOT NULL,
	dockerfile text        NOT NULL DEFAULT '',
	is_public  boolean     NOT NULL DEFAULT false,
	status     text        NOT NULL DEFAULT 'ready' CHECK (status IN ('ready', 'building', 'error')),
	created_at timestamptz NOT NULL DEFAULT now()
);
-- One template per org, name and tag; NULL org (built-in) counts as one org.
CREATE UNIQUE INDEX templates_org_name_tag ON templates (COALESCE(org_id, '00000000-0000-0000-0000-000000000000'::uuid), name, tag);
