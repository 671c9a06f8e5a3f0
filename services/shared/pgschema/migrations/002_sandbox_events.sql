-- 002: what the event syncer writes. Every event a worker records lands in
-- exactly one log row: command events in command_logs (keyed by event_id, as
-- 001 made it), every other event (created, killed, timeout, error, pty_start,
-- pty_end) in sandbox_events. The event id is the worker's globally unique id
-- (also the JetStream message id), so a redelivered message inserts nothing.
-- sandbox_sessions status and pty_session_logs are derived from the same
-- events in the same transaction.

CREATE TABLE sandbox_events (
	event_id    text        PRIMARY KEY,
	type        text        NOT NULL,
	sandbox_id  text        NOT NULL,
	org_id      text,
	worker_id   text        NOT NULL,
	region      text        NOT NULL DEFAULT '',
	occurred_at timestamptz NOT NULL,
	synced_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
	payload     jsonb       NOT NULL
);
CREATE INDEX sandbox_events_sandbox ON sandbox_events (sandbox_id, occurred_at);

-- When the syncer committed the row: event lag is synced_at - created_at.
ALTER TABLE command_logs ADD COLUMN synced_at timestamptz NOT NULL DEFAULT clock_timestamp();

-- command_logs is the high-volume table: its event_id is its key, so the
-- surrogate id (a sequence and a second index per row) goes.
ALTER TABLE command_logs DROP COLUMN id;
ALTER TABLE command_logs DROP CONSTRAINT command_logs_event_id_key, ADD PRIMARY KEY (event_id);
