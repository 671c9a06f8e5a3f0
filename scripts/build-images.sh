#!/usr/bin/env bash
# Build the sandbox template images locally (no registry needed) and import
# them into Podman. An image is rebuilt only when its recipe changes.
source "$(dirname "$0")/lib.sh"

BASE_REF=${OPENSANDBOX_IMAGE_BASE:-localhost/opensandbox/base:latest}
BUSYBOX_REF=${OPENSANDBOX_IMAGE_BUSYBOX:-localhost/opensandbox/busybox:latest}
WORKER_REF=${OPENSANDBOX_IMAGE_WORKER:-localhost/opensandbox/worker-runtime:latest}
WORKER_PACKAGES=nftables,iptables,ca-certificates
MIRROR=${OPENSANDBOX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_PACKAGES=bash,coreutils,python3,curl,git,ca-certificates,procps
ENV_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# current REF RECIPE: succeed when REF exists and was built from RECIPE.
current() {
	local have
	have=$(podman image inspect --format '{{ index .Labels "opensandbox.recipe" }}' "$1" 2>/dev/null) || return 1
	[ "$have" = "$2" ]
}

# from_system_store REF RECIPE: copy REF from the host's default Podman
# store when that holds the same recipe (checkouts made before the project
# had a store of its own): seconds instead of a rebuild.
from_system_store() {
	local have
	have=$(env -u CONTAINERS_STORAGE_CONF podman image inspect --format '{{ index .Labels "opensandbox.recipe" }}' "$1" 2>/dev/null) || return 1
	[ "$have" = "$2" ] || return 1
	step "copying $1 from the system image store"
	env -u CONTAINERS_STORAGE_CONF podman save "$1" | podman load -q >/dev/null
}

build_busybox() {
	local bb recipe tmp
	bb=$(command -v busybox) || die "busybox not found (apt-get install busybox-static)"
	recipe=$(sha256sum "$bb" | cut -c1-16)-1
	if current "$BUSYBOX_REF" "$recipe"; then
		step "busybox image $BUSYBOX_REF is up to date"
		return
	fi
	from_system_store "$BUSYBOX_REF" "$recipe" && current "$BUSYBOX_REF" "$recipe" && return
	step "building busybox image $BUSYBOX_REF"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN
	mkdir -p "$tmp"/{bin,etc,root,tmp,proc,sys,dev}
	chmod 1777 "$tmp/tmp"
	cp "$bb" "$tmp/bin/busybox"
	for applet in $("$bb" --list); do
		[ "$applet" = busybox ] || ln -s busybox "$tmp/bin/$applet"
	done
	echo 'root:x:0:0:root:/root:/bin/sh' >"$tmp/etc/passwd"
	echo 'root:x:0:' >"$tmp/etc/group"
	tar -C "$tmp" -c . | podman import --quiet \
		--change "ENV PATH=$ENV_PATH" --change "ENV HOME=/root" \
		--change "LABEL opensandbox.recipe=$recipe" --change 'CMD ["/bin/sh"]' \
		- "$BUSYBOX_REF" >/dev/null
	step "busybox image ready"
}

build_base() {
	local recipe
	recipe=$(echo "bookworm minbase $BASE_PACKAGES" | sha256sum | cut -c1-16)
	if current "$BASE_REF" "$recipe"; then
		step "base image $BASE_REF is up to date"
		return
	fi
	from_system_store "$BASE_REF" "$recipe" && current "$BASE_REF" "$recipe" && return
	command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install mmdebstrap)"
	step "building base image $BASE_REF (Debian 12 with $BASE_PACKAGES; about a minute)"
	# mmdebstrap prints one line per stage; the tar goes straight into podman.
	mmdebstrap --variant=minbase --include="$BASE_PACKAGES" --format=tar \
		--customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
		bookworm - "$MIRROR" |
		podman import --quiet \
			--change "ENV PATH=$ENV_PATH" --change "ENV HOME=/root" --change "ENV LANG=C.UTF-8" \
			--change "LABEL opensandbox.recipe=$recipe" --change 'CMD ["/bin/bash"]' \
			- "$BASE_REF" >/dev/null
	step "base image ready"
}

# build_worker: the image the worker process itself runs in under Nomad's
# Podman driver (nomad/opensandbox-worker.nomad.hcl): Debian 12 minbase with
# nft (the egress firewall; iptables to remove an old release's chains) and
# CA certificates; the static worker
# binary comes from the release, mounted from the task directory.
build_worker() {
	local recipe
	recipe=$(echo "bookworm minbase $WORKER_PACKAGES" | sha256sum | cut -c1-16)
	if current "$WORKER_REF" "$recipe"; then
		step "worker runtime image $WORKER_REF is up to date"
		return
	fi
	command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install mmdebstrap)"
	step "building worker runtime image $WORKER_REF"
	mmdebstrap --variant=minbase --include="$WORKER_PACKAGES" --format=tar \
		--customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
		bookworm - "$MIRROR" |
		podman import --quiet --change "ENV PATH=$ENV_PATH" \
			--change "LABEL opensandbox.recipe=$recipe" - "$WORKER_REF" >/dev/null
	step "worker runtime image ready"
}

case "${1:-all}" in
busybox) build_busybox ;;
base) build_base ;;
all) build_busybox; build_base ;;
worker) build_worker ;;
*) die "usage: $0 [all|busybox|base|worker]" ;;
esac
