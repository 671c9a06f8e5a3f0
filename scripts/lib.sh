# Shared settings for the scripts; sourced, not run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${OPENSANDBOX_DATA_DIR:-$ROOT/.data}
RUN_DIR=${OPENSANDBOX_RUN_DIR:-$DATA/run}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/scripts/containers.conf}
# The project's own Podman store (written by bootstrap.sh): overlay under the
# data directory with skip_mount_home, so that per-sandbox disk images can be
# bound over container layers (docs/security.md, Disk quotas).
export CONTAINERS_STORAGE_CONF=${CONTAINERS_STORAGE_CONF:-$DATA/containers/storage.conf}
PODMAN_SOCK=$RUN_DIR/podman.sock

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
