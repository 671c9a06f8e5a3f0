#!/usr/bin/env bash
# Start, stop or check the project's Podman API service on $RUN_DIR/podman.sock.
source "$(dirname "$0")/lib.sh"
pidfile=$RUN_DIR/podman.pid

running() {
	[ -S "$PODMAN_SOCK" ] && curl -sf --max-time 2 --unix-socket "$PODMAN_SOCK" http://d/_ping >/dev/null 2>&1
}

case "${1:-start}" in
start)
	if running; then exit 0; fi
	mkdir -p "$RUN_DIR"
	rm -f "$PODMAN_SOCK"
	# setsid: the service must outlive the make target that starts it.
	setsid podman system service --time=0 "unix://$PODMAN_SOCK" >"$RUN_DIR/podman.log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	for _ in $(seq 100); do
		running && { step "podman service on $PODMAN_SOCK"; exit 0; }
		sleep 0.1
	done
	cat "$RUN_DIR/podman.log" >&2
	die "podman service did not start"
	;;
stop)
	[ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
	rm -f "$pidfile" "$PODMAN_SOCK"
	;;
status)
	running && echo "running on $PODMAN_SOCK" || { echo "not running"; exit 1; }
	;;
*)
	die "usage: $0 start|stop|status"
	;;
esac
