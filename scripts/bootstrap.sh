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
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing ${need[*]}; run as root or install them"
	step "installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Every sandbox runs in its own user namespace (Podman --userns=auto), which
# takes host id ranges from the `containers` entries of /etc/subuid and
# /etc/subgid: 1,000,000 + 2^28 ids = 4,096 sandboxes of 65,536 ids, twice the
# 2,000 per node we aim for, all above the ranges useradd hands out.
for f in /etc/subuid /etc/subgid; do
	grep -q '^containers:' "$f" 2>/dev/null && continue
	[ "$(id -u)" = 0 ] || die "$f has no range for user namespaces; run as root or add 'containers:1000000:268435456'"
	step "adding containers:1000000:268435456 to $f (sandbox user namespaces)"
	echo 'containers:1000000:268435456' >>"$f"
done

# The kernel charges each sandbox's inotify use to host root too (the owner
# of every sandbox's user namespace). The worker caps a sandbox at 128
# instances and 65,536 watches; host root's own limits must hold a full
# worker's worth (200 sandboxes) besides the host's use. Runtime sysctls,
# raised only, never lowered; the Ansible role persists them in production.
raise_sysctl() {
	local f=/proc/sys/${1//.//} have
	have=$(cat "$f" 2>/dev/null) || return 0
	[ "$have" -ge "$2" ] && return 0
	[ "$(id -u)" = 0 ] || die "$1 is $have, sandboxes need $2; run as root or: sysctl -w $1=$2"
	step "raising $1 from $have to $2 (per-sandbox inotify caps)"
	echo "$2" >"$f"
}
raise_sysctl fs.inotify.max_user_instances 65536
raise_sysctl fs.inotify.max_user_watches 16777216

# The project's own Podman store: overlay, like the system's, but under the
# data directory and without the overlay driver's bind of its home onto
# itself, which would hide the per-sandbox disk images the worker binds over
# container layers. The system-wide storage.conf is never touched.
mkdir -p "$(dirname "$CONTAINERS_STORAGE_CONF")"
cat >"$CONTAINERS_STORAGE_CONF.tmp" <<EOF
# Written by scripts/bootstrap.sh: the Podman store of this checkout.
[storage]
driver = "overlay"
graphroot = "$DATA/containers/storage"
runroot = "$RUN_DIR/storage"

[storage.options.overlay]
skip_mount_home = "true"
EOF
mv "$CONTAINERS_STORAGE_CONF.tmp" "$CONTAINERS_STORAGE_CONF"

"$ROOT/scripts/podman-service.sh" start
"$ROOT/scripts/build-images.sh" all
