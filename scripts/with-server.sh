#!/usr/bin/env bash
# Run a command against a fresh combined server (real Podman) on a free port.
# The command sees OPENSANDBOX_API_URL and OPENSANDBOX_API_KEY. Afterwards every
# sandbox the command left is killed and the server is stopped; leftovers fail
# the run. Used by the SDK and CLI test suites: scripts/with-server.sh make -C sdks/python test
source "$(dirname "$0")/lib.sh"
[ $# -gt 0 ] || die "usage: $0 command [args...]"
server=${OPENSANDBOX_SERVER_BIN:-$ROOT/bin/opensandbox-server}
[ -x "$server" ] || die "$server not built (make build)"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
tmp=$(mktemp -d /tmp/osbsrvXXXX)
worker=sdktest-$RANDOM$RANDOM
key=key-$RANDOM$RANDOM$RANDOM
OPENSANDBOX_PORT=$port OPENSANDBOX_DATA_DIR=$tmp/data OPENSANDBOX_WORKER_ID=$worker \
	OPENSANDBOX_API_KEY=$key OPENSANDBOX_PODMAN_URI=${OPENSANDBOX_PODMAN_URI:-unix://$PODMAN_SOCK} \
	OPENSANDBOX_AGENT_BINARY=${OPENSANDBOX_AGENT_BINARY:-$ROOT/bin/osb-agent} \
	"$server" >"$tmp/server.log" 2>&1 &
pid=$!
url=http://127.0.0.1:$port

cleanup() {
	local rc=$?
	for id in $(curl -sf -H "X-API-Key: $key" "$url/sandboxes" | python3 -c 'import json,sys; [print(s["sandboxID"]) for s in json.load(sys.stdin)]' 2>/dev/null); do
		echo "with-server: killing leftover sandbox $id" >&2
		curl -sf -X DELETE -H "X-API-Key: $key" "$url/sandboxes/$id" >/dev/null || true
	done
	kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
	left=$(podman ps -aq --filter "label=opensandbox.worker=$worker" | wc -l)
	if [ "$left" -gt 0 ]; then
		echo "with-server: $left container(s) left behind" >&2
		podman rm -f $(podman ps -aq --filter "label=opensandbox.worker=$worker") >/dev/null
		rc=1
	fi
	[ $rc -eq 0 ] || { echo "--- server log (last 40 lines)" >&2; tail -n 40 "$tmp/server.log" >&2; }
	# sandbox disks left mounted are unmounted, never deleted through
	awk -v d="$tmp/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | xargs -r umount -l
	rm -rf "$tmp"
	exit $rc
}
trap cleanup EXIT

for _ in $(seq 100); do
	curl -sf "$url/health" >/dev/null && break
	kill -0 "$pid" 2>/dev/null || die "server exited: $(tail -n 20 "$tmp/server.log")"
	sleep 0.1
done
OPENSANDBOX_API_URL=$url OPENSANDBOX_API_KEY=$key "$@"
