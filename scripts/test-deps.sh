#!/usr/bin/env bash
# What only the tests need, installed when missing (as root) so that `make test`
# on a fresh machine needs nothing that CI adds: Debian's Chromium (the
# dashboard's browser test), PostgreSQL's server binaries (tests start their
# own), a Distribution registry (image pull and release tests), protoc (make
# proto) and ansible-lint (deploycheck runs its production profile).
source "$(dirname "$0")/lib.sh"

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v ansible-lint >/dev/null || need+=(ansible-lint)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
[ "$(id -u)" = 0 ] || die "the tests need ${need[*]}: install them (apt-get install ${need[*]}) or run as root"
step "installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
