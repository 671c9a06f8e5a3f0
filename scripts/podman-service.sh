#!/usr/bin/env bash
# Start, stop or check the project's Podman API service on $RUN_DIR/podman.sock.
source "$(dirname "$0")/lib.sh"
pidfile=$RUN_DIR/podman.pid

running() {
	[ -S "$PODMAN_SOCK" ] && curl -sf --max-time 2 --unix-socket "$PODMAN_SOCK" http://d/_ping >/dev/null 2>&1
}

# graph_root prints the store of the running service.
graph_root() {
	curl -sf --max-time 5 --unix-socket "$PODMAN_SOCK" http://d/v4.0.0/libpod/info |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["store"]["graphRoot"])'
}

stop() {
	[ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
	rm -f "$pidfile" "$PODMAN_SOCK"
}

case "${1:-start}" in
start)
	want=$(sed -n 's/^graphroot = "\(.*\)"$/\1/p' "$CONTAINERS_STORAGE_CONF" 2>/dev/null || true)
	if running; then
		have=$(graph_root || true)
		if [ -z "$want" ] || [ "$have" = "$want" ]; then exit 0; fi
		# Started before this checkout had a store of its own: the
		# containers it runs keep running; new ones go to the new store.
		step "restarting the podman service (store $have, want $want)"
		stop
	fi
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
	stop
	;;
status)
	running && echo "running on $PODMAN_SOCK" || { echo "not running"; exit 1; }
	;;
*)
	die "usage: $0 start|stop|status"
	;;
esac
