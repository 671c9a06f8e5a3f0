#!/usr/bin/env bash
# Local PostgreSQL and NATS JetStream for the PostgreSQL and server modes,
# without Docker: processes under .data/ (PostgreSQL runs as the postgres user
# when we are root). `up` writes their addresses to .env.local, which the
# Makefile reads.
#   scripts/infra.sh up|down|reset|status
source "$(dirname "$0")/lib.sh"

PG_PORT=${OSB_PG_PORT:-5433}
NATS_PORT=${OSB_NATS_PORT:-4222}
PG_DIR=$DATA/pg
NATS_DIR=$DATA/nats
ENV_FILE=$ROOT/.env.local

pg_bin() {
	local v
	for v in 17 16 15; do
		[ -x /usr/lib/postgresql/$v/bin/pg_ctl ] && { echo /usr/lib/postgresql/$v/bin; return; }
	done
	return 1
}

as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

ensure_pg_installed() {
	pg_bin >/dev/null && return
	[ "$(id -u)" = 0 ] || die "PostgreSQL is not installed: apt-get install postgresql"
	step "installing postgresql"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

pg_up() {
	ensure_pg_installed
	local bin; bin=$(pg_bin)
	mkdir -p "$PG_DIR"
	[ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR"
	if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
		step "initdb $PG_DIR/data"
		as_pg "$bin/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 >"$PG_DIR/initdb.log"
	fi
	if as_pg "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
		step "PostgreSQL already running on 127.0.0.1:$PG_PORT"
	else
		step "starting PostgreSQL on 127.0.0.1:$PG_PORT"
		as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 60 \
			-o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1" start >/dev/null ||
			{ tail -20 "$PG_DIR/log" >&2; die "PostgreSQL did not start"; }
	fi
	if ! as_pg "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='opensandbox'" | grep -q 1; then
		as_pg "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres opensandbox
	fi
}

pg_down() {
	local bin; bin=$(pg_bin) || return 0
	[ -f "$PG_DIR/data/PG_VERSION" ] || return 0
	if as_pg "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
		step "stopping PostgreSQL"
		as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null
	fi
}

nats_pid() {
	local pid
	pid=$(cat "$NATS_DIR/pid" 2>/dev/null) || return 1
	kill -0 "$pid" 2>/dev/null && echo "$pid"
}

nats_up() {
	if nats_pid >/dev/null; then
		step "NATS already running on 127.0.0.1:$NATS_PORT"
		return
	fi
	[ -x "$ROOT/bin/osb-nats" ] || die "bin/osb-nats is missing: run make build"
	mkdir -p "$NATS_DIR/store"
	step "starting NATS JetStream on 127.0.0.1:$NATS_PORT (a user per role, from .env.local)"
	# osb-nats takes each role's user and password from these URLs.
	(set -a; . "$ENV_FILE"; set +a
		exec nohup "$ROOT/bin/osb-nats" -port "$NATS_PORT" -store "$NATS_DIR/store") >"$NATS_DIR/log" 2>&1 &
	echo $! >"$NATS_DIR/pid"
	for _ in $(seq 50); do
		grep -q "JetStream on" "$NATS_DIR/log" 2>/dev/null && return
		nats_pid >/dev/null || break
		sleep 0.1
	done
	cat "$NATS_DIR/log" >&2
	die "NATS did not start"
}

nats_down() {
	local pid
	pid=$(nats_pid) || return 0
	step "stopping NATS"
	kill "$pid"
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	rm -f "$NATS_DIR/pid"
}

# secret NAME: the value already in .env.local, or a new random one.
secret() {
	local v
	v=$(grep -s "^$1=" "$ENV_FILE" | cut -d= -f2-)
	[ -n "$v" ] || v=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
	echo "$v"
}

# nats_password ROLE: the role's password in .env.local's NATS URLs, or a
# new random one.
nats_password() {
	local var=NATS_URL v
	[ "$1" = controlplane ] || var=NATS_$(echo "$1" | tr a-z A-Z)_URL
	v=$(grep -s "^$var=" "$ENV_FILE" | sed -n 's|^[^=]*=nats://[^:]*:\([^@]*\)@.*|\1|p')
	[ -n "$v" ] || v=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	echo "$v"
}

write_env() {
	local jwt worker metrics cp wk sy
	jwt=$(secret OPENSANDBOX_JWT_SECRET)
	worker=$(secret OPENSANDBOX_WORKER_SECRET)
	metrics=$(secret OPENSANDBOX_METRICS_TOKEN)
	cp=$(nats_password controlplane)
	wk=$(nats_password worker)
	sy=$(nats_password syncer)
	cat >"$ENV_FILE.tmp" <<EOT
# Written by make infra-up; read by the Makefile. Local development only.
DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/opensandbox?sslmode=disable
# NATS: one user per role (make run-full-worker and run-syncer pass theirs as NATS_URL).
NATS_URL=nats://controlplane:$cp@127.0.0.1:$NATS_PORT
NATS_WORKER_URL=nats://worker:$wk@127.0.0.1:$NATS_PORT
NATS_SYNCER_URL=nats://syncer:$sy@127.0.0.1:$NATS_PORT
OPENSANDBOX_JWT_SECRET=$jwt
OPENSANDBOX_WORKER_SECRET=$worker
# Bearer token of GET /metrics on the control plane and workers.
OPENSANDBOX_METRICS_TOKEN=$metrics
EOT
	chmod 600 "$ENV_FILE.tmp"
	mv "$ENV_FILE.tmp" "$ENV_FILE"
	step "wrote .env.local (DATABASE_URL, NATS URLs with credentials, secrets)"
}

case ${1:-} in
up)
	pg_up
	write_env
	nats_up
	;;
down)
	nats_down
	pg_down
	;;
reset)
	nats_down
	pg_down
	step "removing $PG_DIR, $NATS_DIR and .env.local"
	rm -rf "$PG_DIR" "$NATS_DIR" "$ENV_FILE"
	;;
status)
	bin=$(pg_bin) && as_pg "$bin/pg_ctl" -D "$PG_DIR/data" status 2>/dev/null | head -1 || echo "PostgreSQL: not running"
	if pid=$(nats_pid); then echo "NATS: running (pid $pid)"; else echo "NATS: not running"; fi
	;;
*)
	echo "usage: $0 up|down|reset|status" >&2
	exit 2
	;;
esac
