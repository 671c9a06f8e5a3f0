#!/usr/bin/env bash
# Bootstraps the secrets, certificates, ACLs and Nomad variables of one
# region. Every step is idempotent: it creates what is missing and leaves
# what exists, so re-running after a failure (or to add a newer policy) is
# safe. docs/deploy.md walks through it.
#
#   scripts/bootstrap-region.sh CLUSTER REGION pki     # before terraform apply
#   scripts/bootstrap-region.sh CLUSTER REGION acl     # after: Consul ACLs, then converge
#   scripts/bootstrap-region.sh CLUSTER REGION nomad   # Nomad ACLs, policies, variables
#   scripts/bootstrap-region.sh CLUSTER REGION all     # acl + nomad (after apply)
#
# Needs: aws (with session-manager-plugin), consul, nomad, openssl, jq, and
# bin/opensandbox-server (make build) for the NATS credentials.
#
# Where things go (SSM SecureString under /opensandbox/CLUSTER):
#   common/   read by every host (CAs, Consul gossip key, DNS token)
#   control/  read by control hosts (server certificates, their tokens)
#   worker/   read by workers (Nomad client certificate, their tokens, drain token)
#   operator/ read by no host: CA keys and the management tokens
set -euo pipefail
[ $# -eq 3 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
CLUSTER=$1 REGION=$2 PHASE=$3
P=/opensandbox/$CLUSTER
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export AWS_REGION=$REGION
WORK=$(mktemp -d)
chmod 0700 "$WORK"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '==> %s\n' "$*" >&2; }

# ssm_get NAME prints the parameter's value, or nothing when it is missing.
ssm_get() {
	aws ssm get-parameter --name "$P/$1" --with-decryption --query Parameter.Value --output text 2>/dev/null || true
}
# ssm_put NAME VALUE stores a SecureString (never on the command line:
# values go through a file so they do not show in `ps`).
ssm_put() {
	printf '%s' "$2" >"$WORK/value"
	aws ssm put-parameter --name "$P/$1" --type SecureString --overwrite \
		--value "file://$WORK/value" >/dev/null
	rm -f "$WORK/value"
	say "stored $P/$1"
}
# ensure NAME COMMAND...: stores COMMAND's output as NAME unless it exists.
ensure() {
	local name=$1
	shift
	if [ -n "$(ssm_get "$name")" ]; then
		say "$P/$name exists"
		return
	fi
	ssm_put "$name" "$("$@")"
}

pki() {
	cd "$WORK"
	ensure common/consul_gossip_key consul keygen
	ensure control/nomad_gossip_key nomad operator gossip keyring generate

	# Consul: CA, server certificate (server.REGION.consul); clients get
	# theirs from the servers (auto_encrypt).
	if [ -z "$(ssm_get operator/consul_ca_key_pem)" ]; then
		consul tls ca create -domain consul -days 3650 >/dev/null
		consul tls cert create -server -dc "$REGION" -domain consul -days 1825 >/dev/null
		ssm_put common/consul_ca_pem "$(cat consul-agent-ca.pem)"
		ssm_put control/consul_server_cert_pem "$(cat "$REGION-server-consul-0.pem")"
		ssm_put control/consul_server_key_pem "$(cat "$REGION-server-consul-0-key.pem")"
		ssm_put operator/consul_ca_key_pem "$(cat consul-agent-ca-key.pem)"
	else
		say "Consul CA exists"
	fi

	# Nomad: CA, server and client certificates (both also cover localhost
	# and 127.0.0.1 for local CLIs and the UI through SSM forwarding).
	if [ -z "$(ssm_get operator/nomad_ca_key_pem)" ]; then
		nomad tls ca create -days 3650 >/dev/null
		nomad tls cert create -server -region "$REGION" -days 1825 >/dev/null
		nomad tls cert create -client -region "$REGION" -days 1825 >/dev/null
		ssm_put common/nomad_ca_pem "$(cat nomad-agent-ca.pem)"
		ssm_put control/nomad_agent_cert_pem "$(cat "$REGION-server-nomad.pem")"
		ssm_put control/nomad_agent_key_pem "$(cat "$REGION-server-nomad-key.pem")"
		ssm_put worker/nomad_agent_cert_pem "$(cat "$REGION-client-nomad.pem")"
		ssm_put worker/nomad_agent_key_pem "$(cat "$REGION-client-nomad-key.pem")"
		ssm_put operator/nomad_ca_key_pem "$(cat nomad-agent-ca-key.pem)"
	else
		say "Nomad CA exists"
	fi

	# Control plane -> worker gRPC: a CA of its own that signs the control
	# plane's client certificate (the workers' server side uses their ACME
	# certificates). Written to Nomad variables in the nomad phase.
	if [ -z "$(ssm_get operator/grpc_ca_key_pem)" ]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
			-subj "/CN=opensandbox $CLUSTER grpc client CA" -keyout grpc-ca-key.pem -out grpc-ca.pem 2>/dev/null
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-subj "/CN=opensandbox-controlplane.$CLUSTER" -keyout grpc-client-key.pem -out grpc-client.csr 2>/dev/null
		printf 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n' >ext.cnf
		openssl x509 -req -in grpc-client.csr -CA grpc-ca.pem -CAkey grpc-ca-key.pem -CAcreateserial \
			-days 825 -extfile ext.cnf -out grpc-client.pem 2>/dev/null
		ssm_put operator/grpc_ca_pem "$(cat grpc-ca.pem)"
		ssm_put operator/grpc_ca_key_pem "$(cat grpc-ca-key.pem)"
		ssm_put operator/grpc_client_cert_pem "$(cat grpc-client.pem)"
		ssm_put operator/grpc_client_key_pem "$(cat grpc-client-key.pem)"
	else
		say "gRPC client CA exists"
	fi
	rm -f ./*.pem ./*.csr ./*.srl ext.cnf
	cd - >/dev/null
}

# control_instance prints a running control host of the cluster.
control_instance() {
	aws ec2 describe-instances --filters "Name=tag:Cluster,Values=$CLUSTER" Name=tag:opensandbox-role,Values=control \
		Name=instance-state-name,Values=running --query 'Reservations[0].Instances[0].InstanceId' --output text
}

# tunnel REMOTE LOCAL forwards a control host's loopback port through SSM.
tunnel() {
	local id
	id=$(control_instance)
	[ "$id" != "None" ] || { echo "no running control host in $CLUSTER" >&2; exit 1; }
	aws ssm start-session --target "$id" --document-name AWS-StartPortForwardingSession \
		--parameters "portNumber=$1,localPortNumber=$2" >"$WORK/tunnel-$2.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 1 60); do
		(exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
		sleep 1
	done
	echo "SSM port forwarding to $id:$1 did not come up (see $WORK/tunnel-$2.log)" >&2
	exit 1
}

consul_policy() { # NAME: scripts/consul-acl/NAME.hcl, created or updated
	local rules=$ROOT/scripts/consul-acl/$1.hcl
	if consul acl policy read -name "$1" >/dev/null 2>&1; then
		consul acl policy update -name "$1" -rules "@$rules" >/dev/null
	else
		consul acl policy create -name "$1" -rules "@$rules" >/dev/null
	fi
}

consul_token() { # POLICY...: prints a new token's secret
	local args=()
	for p in "$@"; do args+=(-policy-name "$p"); done
	consul acl token create -description "opensandbox $CLUSTER $*" "${args[@]}" -format json | jq -r .SecretID
}

acl() {
	tunnel 8500 18500
	export CONSUL_HTTP_ADDR=127.0.0.1:18500
	if [ -z "$(ssm_get operator/consul_management_token)" ]; then
		ssm_put operator/consul_management_token "$(consul acl bootstrap -format json | jq -r .SecretID)"
	fi
	CONSUL_HTTP_TOKEN=$(ssm_get operator/consul_management_token)
	export CONSUL_HTTP_TOKEN
	for p in agent dns nomad-server nomad-client-control nomad-client-worker opensandbox-worker opensandbox-controlplane prometheus snapshot; do
		consul_policy "$p"
	done
	ensure common/consul_dns_token consul_token dns
	ensure control/consul_agent_token consul_token agent
	ensure worker/consul_agent_token consul_token agent
	# Control hosts run a Nomad server and a client: one token with both.
	ensure control/nomad_consul_token consul_token nomad-server nomad-client-control
	ensure worker/nomad_consul_token consul_token nomad-client-worker
	ensure control/consul_snapshot_token consul_token snapshot
	ensure operator/consul_token_opensandbox-worker consul_token opensandbox-worker
	ensure operator/consul_token_opensandbox-controlplane consul_token opensandbox-controlplane
	ensure operator/consul_token_prometheus consul_token prometheus
	converge
}

# converge re-runs the hosts' playbook (new tokens, new certificates).
converge() {
	say "converging every host of $CLUSTER (SSM Run Command)"
	aws ssm send-command --document-name AWS-RunShellScript \
		--targets "Key=tag:Cluster,Values=$CLUSTER" \
		--parameters 'commands=["/usr/local/sbin/opensandbox-converge"]' \
		--comment "opensandbox bootstrap: converge" --query Command.CommandId --output text
}

# var_merge PATH KEY=VALUE...: sets keys of a Nomad variable, keeping the
# others (nomad var put replaces a variable whole).
var_merge() {
	local path=$1
	shift
	local items='{}'
	if nomad var get -out json "$path" >"$WORK/var.json" 2>/dev/null; then
		items=$(jq '.Items' "$WORK/var.json")
	fi
	for kv in "$@"; do
		items=$(jq --arg k "${kv%%=*}" --arg v "${kv#*=}" '. + {($k): $v}' <<<"$items")
	done
	jq -n --arg p "$path" --argjson i "$items" '{Path: $p, Items: $i}' >"$WORK/var.json"
	nomad var put -force -in json - <"$WORK/var.json" >/dev/null
	rm -f "$WORK/var.json"
	say "nomad variable $path: set $(printf '%s ' "${@%%=*}")"
}

# put_var PATH KEY=VALUE...: creates a Nomad variable unless it exists.
put_var() {
	if nomad var get "$1" >/dev/null 2>&1; then
		say "nomad variable $1 exists"
		return
	fi
	var_merge "$@"
}

nomad_phase() {
	tunnel 4646 14646
	ssm_get common/nomad_ca_pem >"$WORK/nomad-ca.pem"
	export NOMAD_ADDR=https://127.0.0.1:14646 NOMAD_CACERT=$WORK/nomad-ca.pem
	if [ -z "$(ssm_get operator/nomad_management_token)" ]; then
		ssm_put operator/nomad_management_token "$(nomad acl bootstrap -json | jq -r .SecretID)"
	fi
	NOMAD_TOKEN=$(ssm_get operator/nomad_management_token)
	export NOMAD_TOKEN
	cd "$ROOT/nomad"
	local j
	for j in opensandbox-worker opensandbox-controlplane; do
		nomad acl policy apply -namespace default -job "$j" "$j-shared" acl/opensandbox-shared.policy.hcl
		nomad acl policy apply -namespace default -job "$j" "$j-grpc" acl/opensandbox-grpc.policy.hcl
	done
	for j in opensandbox-worker opensandbox-controlplane prometheus; do
		nomad acl policy apply -namespace default -job "$j" "$j-metrics" acl/opensandbox-metrics.policy.hcl
	done
	for j in opensandbox-controlplane opensandbox-syncer; do
		nomad acl policy apply -namespace default -job "$j" "$j-database" acl/opensandbox-database.policy.hcl
	done
	nomad acl policy apply -namespace default -job opensandbox-controlplane opensandbox-controlplane-workos acl/opensandbox-workos.policy.hcl
	nomad acl policy apply -namespace default -job prometheus prometheus-tls acl/opensandbox-tls.policy.hcl
	nomad acl policy apply node-drain acl/node-drain.policy.hcl
	cd - >/dev/null
	ensure worker/nomad_drain_token sh -c 'nomad acl token create -name worker-drain -policy node-drain -json | jq -r .SecretID'
	# Nomad's snapshot API takes a management token only.
	ensure control/nomad_snapshot_token sh -c 'nomad acl token create -name raft-snapshots -type management -json | jq -r .SecretID'

	put_var opensandbox/shared jwt_secret="$(openssl rand -hex 32)" worker_secret="$(openssl rand -hex 32)"
	put_var opensandbox/metrics token="$(openssl rand -hex 32)"
	put_var opensandbox/tls nomad_ca_pem="$(ssm_get common/nomad_ca_pem)"
	put_var opensandbox/grpc client_ca_pem="$(ssm_get operator/grpc_ca_pem)" \
		client_cert_pem="$(ssm_get operator/grpc_client_cert_pem)" client_key_pem="$(ssm_get operator/grpc_client_key_pem)"
	put_var nomad/jobs/grafana admin_password="$(openssl rand -base64 24)"
	# NATS: one user per role; the server keeps bcrypt hashes, each service
	# its own password. Made once: new passwords would lock out running jobs.
	if ! nomad var get nomad/jobs/nats >/dev/null 2>&1; then
		"$ROOT/bin/opensandbox-server" admin nats-credentials | sh
	fi
	# The Consul tokens of the jobs that talk to Consul themselves (kept
	# current on every run: they live beside the NATS passwords).
	var_merge nomad/jobs/opensandbox-worker consul_token="$(ssm_get operator/consul_token_opensandbox-worker)"
	var_merge nomad/jobs/opensandbox-controlplane consul_token="$(ssm_get operator/consul_token_opensandbox-controlplane)"
	var_merge nomad/jobs/prometheus consul_token="$(ssm_get operator/consul_token_prometheus)"
	if ! nomad var get opensandbox/database >/dev/null 2>&1; then
		say "opensandbox/database is not set: put the PostgreSQL URL there (docs/deploy.md, step 4)"
	fi
	converge
}

case $PHASE in
pki) pki ;;
acl) acl ;;
nomad) nomad_phase ;;
all) acl && nomad_phase ;;
*) echo "unknown phase $PHASE (pki, acl, nomad, all)" >&2; exit 2 ;;
esac
