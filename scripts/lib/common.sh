# shellcheck shell=bash
# Shared settings and messages for scripts/local-cluster. Sourced, not run.
# shellcheck disable=SC2034 # the variables are used by the files that source this one

# Debian bookworm's `kubernetes` source package: upstream Kubernetes v1.20.2.
readonly KUBE_DEBIAN_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
readonly KUBE_GIT_VERSION_TAG="v1.20.2"
readonly KUBE_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

# The cache lives outside the clone so that a fresh clone (or CI checkout)
# reuses binaries that took minutes to build.
readonly VISIONFLEET_CACHE_DIR="${VISIONFLEET_CACHE:-$HOME/.cache/visionfleet}"
readonly KUBE_CACHE_DIR="$VISIONFLEET_CACHE_DIR/kubernetes/$KUBE_DEBIAN_VERSION"
readonly KUBE_BIN_DIR="$KUBE_CACHE_DIR/bin"
readonly KUBE_BUILD_LOG="$KUBE_CACHE_DIR/build.log"
readonly CLUSTER_DIR="${VISIONFLEET_CLUSTER_DIR:-$VISIONFLEET_CACHE_DIR/local-cluster}"

# Written into the state directory so that `down` only ever deletes a
# directory that `up` created.
readonly CLUSTER_MARKER=".visionfleet-local-cluster"

log_prefix="local-cluster"

info() {
  printf '%s: %s\n' "$log_prefix" "$*" >&2
}

# Prints an error and what to do about it, then exits.
die() {
  printf '%s: error: %s\n' "$log_prefix" "$1" >&2
  shift
  local hint
  for hint in "$@"; do
    printf '%s:   %s\n' "$log_prefix" "$hint" >&2
  done
  exit 1
}

require_command() {
  local command=$1 package=$2
  command -v "$command" >/dev/null 2>&1 ||
    die "missing command '$command'" "install it: run scripts/install-deps (Debian package $package)"
}

# Formats a number of seconds as e.g. "4m07s".
format_duration() {
  printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
}
