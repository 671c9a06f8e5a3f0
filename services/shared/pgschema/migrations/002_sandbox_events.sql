-- 002: every sandbox event the syncer received, once. The event id is the
-- worker's globally unique id (also the JetStream message id), so a redelivered
-- message inserts nothing. command_logs, pty_session_logs and the status of
-- sandbox_sessions are derived from these events in the same transaction.

CREATE TABLE sandbox_events (
	event_id    text        PRIMARY KEY,
	type        text        NOT NULL,
	sandbox_id  text        NOT NULL,
	org_id      text,
	worker_id   text        NOT NULL,
	region      text        NOT NULL DEFAULT '',
	occurred_at timestamptz NOT NULL,
	inserted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	payload     jsonb       NOT NULL
);
CREATE INDEX sandbox_events_sandbox ON sandbox_events (sandbox_id, occurred_at);
CREATE INDEX sandbox_events_inserted ON sandbox_events (inserted_at);
