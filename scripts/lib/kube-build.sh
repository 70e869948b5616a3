# shellcheck shell=bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler and kubectl
# v1.20.2 from Debian bookworm's `kubernetes` source package. Sourced by
# scripts/local-cluster after lib/common.sh.

readonly KUBE_SOURCE_SUITES="bookworm bookworm-security"
readonly KUBE_GO_BIN_DIR="/usr/lib/go-1.19/bin"
readonly DEBIAN_REFLECT2_DIR="/usr/share/gocode/src/github.com/modern-go/reflect2"
readonly KUBE_APT_DIR="$KUBE_CACHE_DIR/apt"
readonly KUBE_SOURCE_PARENT="$KUBE_CACHE_DIR/source"
# Seconds between "still building" messages.
readonly KUBE_BUILD_PROGRESS_INTERVAL=30

kube_binaries_present() {
  local binary
  for binary in "${KUBE_BINARIES[@]}"; do
    [ -x "$KUBE_BIN_DIR/$binary" ] || return 1
  done
}

# Builds the binaries unless they are already cached. Holds a lock so that
# two concurrent `up` calls do not build into the same tree, and releases it
# before returning so the control plane processes do not inherit it.
kube_build() {
  if kube_binaries_present; then
    info "Kubernetes $KUBE_GIT_VERSION_TAG binaries are cached in $KUBE_BIN_DIR"
    return 0
  fi

  mkdir -p "$KUBE_CACHE_DIR"
  local build_lock_fd
  exec {build_lock_fd}>"$KUBE_CACHE_DIR/build.lock"
  if ! flock --nonblock "$build_lock_fd"; then
    info "Another build holds $KUBE_CACHE_DIR/build.lock; waiting for it"
    flock "$build_lock_fd"
  fi

  if kube_binaries_present; then
    info "Kubernetes $KUBE_GIT_VERSION_TAG binaries were built by the other process"
  else
    kube_build_locked
  fi
  exec {build_lock_fd}>&-
}

kube_build_locked() {
  kube_check_build_tools
  local source_dir
  source_dir=$(kube_fetch_source)
  kube_replace_reflect2 "$source_dir"
  kube_make "$source_dir"
  kube_install_binaries "$source_dir"
}

kube_check_build_tools() {
  require_command apt-get apt
  require_command dpkg-source dpkg-dev
  require_command make build-essential
  require_command rsync rsync
  [ -x "$KUBE_GO_BIN_DIR/go" ] ||
    die "Go 1.19 is missing at $KUBE_GO_BIN_DIR/go" "install it: run scripts/install-deps (Debian package golang-1.19-go)"
  [ -f "$DEBIAN_REFLECT2_DIR/reflect2.go" ] ||
    die "reflect2 1.0.2 sources are missing at $DEBIAN_REFLECT2_DIR" \
      "install them: run scripts/install-deps (Debian package golang-github-modern-go-reflect2-dev)"
}

# Prints deb822 stanzas of deb-src entries for $KUBE_SOURCE_SUITES, derived
# from the deb entries this machine's apt is configured with, so the same
# mirror and keyring are used.
kube_write_source_entries() {
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    awk -v wanted_suites="$KUBE_SOURCE_SUITES" '
      BEGIN { RS = ""; FS = "\n"; split(wanted_suites, wanted, " "); for (i in wanted) is_wanted[wanted[i]] = 1 }
      {
        types = ""; suites = ""; enabled = "yes"; fields = ""; keep = 1
        for (i = 1; i <= NF; i++) {
          line = $i
          if (line ~ /^#/) continue
          if (line ~ /^[ \t]/) { if (keep) fields = fields line "\n"; continue }
          colon = index(line, ":")
          key = tolower(substr(line, 1, colon - 1))
          value = substr(line, colon + 1)
          gsub(/^[ \t]+|[ \t]+$/, "", value)
          keep = 0
          if (key == "types") types = value
          else if (key == "suites") suites = value
          else if (key == "enabled") enabled = tolower(value)
          else if (key != "architectures") { keep = 1; fields = fields line "\n" }
        }
        if (enabled == "no" || (" " types " ") !~ / deb /) next
        selected = ""
        count = split(suites, suite_list, /[ \t]+/)
        for (j = 1; j <= count; j++)
          if (suite_list[j] in is_wanted) selected = selected (selected == "" ? "" : " ") suite_list[j]
        if (selected == "") next
        printf "Types: deb-src\nSuites: %s\n%s\n", selected, fields
      }' "$file"
  done

  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    awk -v wanted_suites="$KUBE_SOURCE_SUITES" '
      BEGIN { split(wanted_suites, wanted, " "); for (i in wanted) is_wanted[wanted[i]] = 1 }
      $1 == "deb" {
        signed_by = ""; field = 2
        if ($2 ~ /^\[/) {
          while (field <= NF) {
            if ($field ~ /^\[?signed-by=/) { signed_by = $field; sub(/^\[?signed-by=/, "", signed_by); sub(/\]$/, "", signed_by) }
            if ($field ~ /\]$/) { field++; break }
            field++
          }
        }
        uri = $field; suite = $(field + 1)
        if (!(suite in is_wanted)) next
        components = ""
        for (j = field + 2; j <= NF; j++) components = components (components == "" ? "" : " ") $j
        printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents: %s\n", uri, suite, components
        if (signed_by != "") printf "Signed-By: %s\n", signed_by
        printf "\n"
      }' "$file"
  done
}

# Downloads and unpacks the source package with a private apt configuration
# (sources, lists and caches under the cache dir), so the system's apt state
# is not changed. Prints the unpacked tree's path.
kube_fetch_source() {
  local unpacked_marker="$KUBE_SOURCE_PARENT/.unpacked"
  if [ -f "$unpacked_marker" ]; then
    cat "$unpacked_marker"
    return 0
  fi

  local source_list="$KUBE_APT_DIR/deb-src.sources"
  mkdir -p "$KUBE_APT_DIR/lists/partial" "$KUBE_APT_DIR/cache/archives/partial"
  kube_write_source_entries >"$source_list"
  grep -q '^URIs:' "$source_list" ||
    die "no Debian entry for suites '$KUBE_SOURCE_SUITES' found in /etc/apt/sources.list or /etc/apt/sources.list.d/" \
      "add a bookworm and bookworm-security deb entry to the system's apt sources, then rerun"

  local apt_options=(
    -o "Dir::Etc::SourceList=$source_list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$KUBE_APT_DIR/lists"
    -o "Dir::Cache=$KUBE_APT_DIR/cache"
    -o "APT::Sandbox::User=$(id -un)"
  )
  info "Updating the private deb-src package lists ($source_list)"
  apt-get "${apt_options[@]}" -qq update >&2 ||
    die "apt-get update for the deb-src entries in $source_list failed" \
      "check the output above and the machine's network access to its Debian mirror"

  rm -rf "$KUBE_SOURCE_PARENT"
  mkdir -p "$KUBE_SOURCE_PARENT"
  info "Downloading and unpacking source package kubernetes=$KUBE_DEBIAN_VERSION"
  (cd "$KUBE_SOURCE_PARENT" && apt-get "${apt_options[@]}" -q source --only-source "kubernetes=$KUBE_DEBIAN_VERSION") >&2 ||
    die "apt-get source kubernetes=$KUBE_DEBIAN_VERSION failed" \
      "check that suites '$KUBE_SOURCE_SUITES' in $source_list still carry this version"

  local source_dir
  source_dir=$(find "$KUBE_SOURCE_PARENT" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)
  if [ -z "$source_dir" ] || [ ! -f "$source_dir/Makefile" ]; then
    die "the unpacked source tree in $KUBE_SOURCE_PARENT has no Makefile" "delete $KUBE_SOURCE_PARENT and rerun"
  fi
  printf '%s\n' "$source_dir" >"$unpacked_marker"
  printf '%s\n' "$source_dir"
}

# reflect2 1.0.1, vendored by Kubernetes 1.20, iterates maps through Go
# runtime internals that changed in Go 1.18, so an apiserver built with Go
# 1.19 crashes as soon as a CustomResourceDefinition exists. Debian ships
# reflect2 1.0.2, which supports Go 1.18 and later.
kube_replace_reflect2() {
  local vendored="$1/vendor/github.com/modern-go/reflect2"
  [ -d "$vendored" ] || die "the source tree has no vendored reflect2 at $vendored" "delete $KUBE_SOURCE_PARENT and rerun"
  rsync -a --delete --delete-excluded --exclude=go.mod "$DEBIAN_REFLECT2_DIR/" "$vendored/"
}

# Runs `make WHAT=...` in the background and prints progress, because the
# apiserver alone takes minutes. Plain `go build` does not work: make
# generates the OpenAPI definitions first.
kube_make() {
  local source_dir=$1
  local started=$SECONDS
  : >"$KUBE_BUILD_LOG"
  info "Building Kubernetes $KUBE_GIT_VERSION_TAG in $source_dir (several minutes; log: $KUBE_BUILD_LOG)"

  local targets
  for targets in "cmd/kube-apiserver" "cmd/kube-controller-manager cmd/kube-scheduler cmd/kubectl"; do
    kube_make_targets "$source_dir" "$targets" "$started"
  done
  info "Built Kubernetes $KUBE_GIT_VERSION_TAG in $(format_duration $((SECONDS - started)))"
}

kube_make_targets() {
  local source_dir=$1 targets=$2 started=$3
  (
    cd "$source_dir" || exit
    # The tree is an unpacked archive, not a git checkout, so the version
    # stamped into the binaries comes from these variables.
    export KUBE_GIT_VERSION="$KUBE_GIT_VERSION_TAG" KUBE_GIT_TREE_STATE=archive KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20
    # Kubernetes' build scripts keep Go's build cache in _output/ of the tree.
    export PATH="$KUBE_GO_BIN_DIR:$PATH" GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off CGO_ENABLED=0
    exec make WHAT="$targets"
  ) >>"$KUBE_BUILD_LOG" 2>&1 &
  local make_pid=$!

  while kill -0 "$make_pid" 2>/dev/null; do
    sleep 5
    if (((SECONDS - started) % KUBE_BUILD_PROGRESS_INTERVAL < 5)); then
      info "Still building $targets ($(format_duration $((SECONDS - started))) so far)"
    fi
  done

  if ! wait "$make_pid"; then
    tail -n 30 "$KUBE_BUILD_LOG" >&2
    die "make WHAT=\"$targets\" failed (last lines above; full log: $KUBE_BUILD_LOG)" \
      "fix the cause shown there (often: missing Debian packages, run scripts/install-deps), then run scripts/local-cluster build" \
      "to start from a clean source tree, delete $KUBE_SOURCE_PARENT first"
  fi
}

# Copies the binaries into a temporary directory and renames it into place, so
# an interrupted install never looks like a complete cache.
kube_install_binaries() {
  local output_dir="$1/_output/bin"
  local staging_dir="$KUBE_BIN_DIR.partial"
  rm -rf "$staging_dir"
  mkdir -p "$staging_dir"

  local binary
  for binary in "${KUBE_BINARIES[@]}"; do
    [ -x "$output_dir/$binary" ] || die "make finished but $output_dir/$binary is missing" "see $KUBE_BUILD_LOG"
    install -m 0755 "$output_dir/$binary" "$staging_dir/$binary"
  done

  local version
  version=$("$staging_dir/kube-apiserver" --version)
  [ "$version" = "Kubernetes $KUBE_GIT_VERSION_TAG" ] ||
    die "the built kube-apiserver reports '$version', expected 'Kubernetes $KUBE_GIT_VERSION_TAG'" "see $KUBE_BUILD_LOG"

  rm -rf "$KUBE_BIN_DIR"
  mv "$staging_dir" "$KUBE_BIN_DIR"
  info "Installed ${KUBE_BINARIES[*]} into $KUBE_BIN_DIR"
}
