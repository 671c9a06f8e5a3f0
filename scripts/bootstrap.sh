#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine: install what is missing, start the
# project's Podman service and build the template images. Idempotent; writes
# nothing outside the repository except packages and Podman's image store.
source "$(dirname "$0")/lib.sh"

need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v busybox >/dev/null || need+=(busybox-static)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v curl >/dev/null || need+=(curl)
# The worker's egress firewall is an nftables table loaded with nft.
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || need+=(nftables)
if [ ${#need[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing ${need[*]}; run as root or install them"
	step "installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

"$ROOT/scripts/podman-service.sh" start
"$ROOT/scripts/build-images.sh" all
