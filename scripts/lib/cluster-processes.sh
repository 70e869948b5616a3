# shellcheck shell=bash
# Starts, checks and stops the local control plane processes. Sourced by
# scripts/local-cluster after lib/common.sh, lib/kube-build.sh and
# lib/cluster-pki.sh.

readonly ETCD_BINARY="/usr/bin/etcd"
# Components in start order; `down` stops them in reverse.
readonly CLUSTER_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler)
# Data only: no traffic is ever sent to service IPs, because nothing on this
# machine routes them.
readonly SERVICE_CLUSTER_IP_RANGE="10.0.0.0/24"
readonly SERVICE_ACCOUNT_ISSUER="https://kubernetes.default.svc.cluster.local"
# Seconds to wait for each component to become ready.
readonly READY_TIMEOUT=120
# Seconds to wait for a component to exit after SIGTERM before SIGKILL.
readonly STOP_TIMEOUT=15
# Ports are picked from below the kernel's default ephemeral range
# (32768-60999), so an outgoing connection cannot take one between the check
# and the bind.
readonly PORT_RANGE_START=20000
readonly PORT_RANGE_SIZE=12000

# Serializes `up` and `down` on one state directory, so two concurrent calls
# cannot start two control planes in it. The lock lives beside the directory
# because `down` deletes the directory.
lock_cluster_dir() {
  mkdir -p "$(dirname "$CLUSTER_DIR")"
  exec {cluster_lock_fd}>"$CLUSTER_DIR.lock"
  if ! flock --nonblock "$cluster_lock_fd"; then
    info "Another scripts/local-cluster call holds $CLUSTER_DIR.lock; waiting for it"
    flock "$cluster_lock_fd"
  fi
}

admin_kubeconfig() {
  printf '%s/admin.kubeconfig\n' "$CLUSTER_DIR"
}

pid_file() {
  printf '%s/run/%s.pid\n' "$CLUSTER_DIR" "$1"
}

log_file() {
  printf '%s/logs/%s.log\n' "$CLUSTER_DIR" "$1"
}

cluster_up() {
  lock_cluster_dir
  kube_build

  if [ -f "$CLUSTER_DIR/$CLUSTER_MARKER" ]; then
    if cluster_is_running && apiserver_is_ready; then
      info "The local cluster already runs (state in $CLUSTER_DIR)"
      cluster_print_env
      return 0
    fi
    info "Found a stopped or partly running cluster in $CLUSTER_DIR; removing it and starting a new one"
    cluster_down
  elif [ -d "$CLUSTER_DIR" ] && [ -n "$(ls -A "$CLUSTER_DIR")" ]; then
    die "$CLUSTER_DIR exists, is not empty and was not created by scripts/local-cluster" \
      "set VISIONFLEET_CLUSTER_DIR to another directory, or delete $CLUSTER_DIR yourself"
  fi

  mkdir -p "$CLUSTER_DIR/run" "$CLUSTER_DIR/logs" "$CLUSTER_DIR/etcd"
  touch "$CLUSTER_DIR/$CLUSTER_MARKER"
  cluster_pick_ports
  pki_generate

  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
  wait_for_controllers

  info "The local cluster is ready: kube-apiserver at https://127.0.0.1:$APISERVER_PORT"
  info "Kubeconfig: $(admin_kubeconfig)"
  cluster_print_env
}

# Picks three distinct free loopback ports and records them in ports.env.
cluster_pick_ports() {
  ETCD_CLIENT_PORT=$(pick_free_port)
  ETCD_PEER_PORT=$(pick_free_port "$ETCD_CLIENT_PORT")
  APISERVER_PORT=$(pick_free_port "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT")
  cat >"$CLUSTER_DIR/ports.env" <<EOF
ETCD_CLIENT_PORT=$ETCD_CLIENT_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
EOF
}

# Prints a TCP port with no socket on it in any state. Arguments: ports
# already picked by this run.
pick_free_port() {
  require_command ss iproute2
  local _ port picked
  for _ in $(seq 1 100); do
    port=$((PORT_RANGE_START + (RANDOM * 32768 + RANDOM) % PORT_RANGE_SIZE))
    for picked in "$@"; do
      [ "$port" != "$picked" ] || continue 2
    done
    if [ -z "$(ss -Htan "sport = :$port")" ]; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  die "found no free TCP port in $PORT_RANGE_START-$((PORT_RANGE_START + PORT_RANGE_SIZE - 1)) after 100 attempts" \
    "check what listens there with: ss -tanp"
}

load_ports() {
  [ -f "$CLUSTER_DIR/ports.env" ] || return 1
  # shellcheck source=/dev/null
  source "$CLUSTER_DIR/ports.env"
}

start_etcd() {
  local url_client="http://127.0.0.1:$ETCD_CLIENT_PORT" url_peer="http://127.0.0.1:$ETCD_PEER_PORT"
  start_component etcd "$ETCD_BINARY" \
    --name=visionfleet \
    --data-dir="$CLUSTER_DIR/etcd" \
    --listen-client-urls="$url_client" \
    --advertise-client-urls="$url_client" \
    --listen-peer-urls="$url_peer" \
    --initial-advertise-peer-urls="$url_peer" \
    --initial-cluster="visionfleet=$url_peer" \
    --initial-cluster-state=new \
    --logger=zap \
    --log-outputs=stderr

  wait_until "etcd to report healthy" etcd \
    curl --silent --fail --max-time 2 "$url_client/health"
}

start_apiserver() {
  local pki
  pki=$(pki_dir)
  start_component kube-apiserver "$KUBE_BIN_DIR/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$APISERVER_PORT" \
    --insecure-port=0 \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --service-account-issuer="$SERVICE_ACCOUNT_ISSUER" \
    --service-account-key-file="$pki/service-account.pub" \
    --service-account-signing-key-file="$pki/service-account.key" \
    --service-cluster-ip-range="$SERVICE_CLUSTER_IP_RANGE" \
    --authorization-mode=RBAC \
    --endpoint-reconciler-type=none \
    --allow-privileged=true \
    --profiling=false

  pki_write_kubeconfig admin "https://127.0.0.1:$APISERVER_PORT" "$(admin_kubeconfig)"
  pki_write_kubeconfig controller-manager "https://127.0.0.1:$APISERVER_PORT" "$CLUSTER_DIR/controller-manager.kubeconfig"
  pki_write_kubeconfig scheduler "https://127.0.0.1:$APISERVER_PORT" "$CLUSTER_DIR/scheduler.kubeconfig"

  wait_until "kube-apiserver to answer /readyz" kube-apiserver apiserver_is_ready
}

# --port=0 and --secure-port=0 turn off both of its HTTP listeners. All
# controllers run, including serviceaccount-token: in Kubernetes 1.20 the
# ServiceAccount admission plugin rejects every pod ("No API token found for
# service account") until that controller has created the account's token
# Secret.
start_controller_manager() {
  local pki
  pki=$(pki_dir)
  start_component kube-controller-manager "$KUBE_BIN_DIR/kube-controller-manager" \
    --kubeconfig="$CLUSTER_DIR/controller-manager.kubeconfig" \
    --leader-elect=false \
    --port=0 \
    --secure-port=0 \
    --address=127.0.0.1 \
    --bind-address=127.0.0.1 \
    --controllers='*' \
    --service-account-private-key-file="$pki/service-account.key" \
    --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" \
    --cluster-signing-key-file="$pki/ca.key" \
    --service-cluster-ip-range="$SERVICE_CLUSTER_IP_RANGE" \
    --profiling=false
}

start_scheduler() {
  start_component kube-scheduler "$KUBE_BIN_DIR/kube-scheduler" \
    --kubeconfig="$CLUSTER_DIR/scheduler.kubeconfig" \
    --leader-elect=false \
    --port=0 \
    --secure-port=0 \
    --address=127.0.0.1 \
    --bind-address=127.0.0.1 \
    --profiling=false
}

# The serviceaccount controller creates "default" in every namespace, so its
# appearance shows that the controller manager reaches the apiserver.
wait_for_controllers() {
  wait_until "kube-controller-manager to create ServiceAccount default/default" kube-controller-manager \
    "$KUBE_BIN_DIR/kubectl" --kubeconfig="$(admin_kubeconfig)" --request-timeout=5s \
    get serviceaccount default --namespace=default
  component_is_running kube-scheduler ||
    die_with_log kube-scheduler "kube-scheduler exited during startup"
}

# Starts a component in its own session, detached from the terminal, and
# records "<pid> <binary>" in its pid file so `down` can check it is still
# the same program before signalling it.
start_component() {
  local name=$1 binary=$2
  shift 2
  info "Starting $name (log: $(log_file "$name"))"
  # The component must not inherit the lock, or it would hold it while it runs.
  setsid "$binary" "$@" >"$(log_file "$name")" 2>&1 </dev/null {cluster_lock_fd}>&- &
  local pid=$!
  printf '%s %s\n' "$pid" "$binary" >"$(pid_file "$name")"

  # Until setsid has exec'd the binary, /proc/<pid>/exe still names bash.
  local _
  for _ in $(seq 1 50); do
    component_is_running "$name" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  die_with_log "$name" "$name (pid $pid) did not start"
}

# Runs a command every second until it succeeds. Fails with the component's
# log tail when the component exits or the timeout passes.
# Arguments: description, component, command...
wait_until() {
  local description=$1 component=$2
  shift 2
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    component_is_running "$component" || die_with_log "$component" "$component exited while waiting for $description"
    [ "$SECONDS" -lt "$deadline" ] || die_with_log "$component" "timed out after ${READY_TIMEOUT}s waiting for $description"
    sleep 1
  done
}

die_with_log() {
  local component=$1 message=$2
  tail -n 20 "$(log_file "$component")" >&2 || true
  die "$message (last log lines above; full log: $(log_file "$component"))" \
    "fix the cause, then run: scripts/local-cluster down && scripts/local-cluster up"
}

apiserver_is_ready() {
  load_ports || return 1
  local pki
  pki=$(pki_dir)
  curl --silent --fail --max-time 5 --cacert "$pki/ca.crt" \
    --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz" >/dev/null
}

# Prints the pid of a component when it still runs the recorded binary.
component_pid() {
  local file pid binary executable
  file=$(pid_file "$1")
  [ -f "$file" ] || return 1
  read -r pid binary <"$file"
  executable=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [ "${executable% (deleted)}" = "$(readlink -f "$binary")" ] || return 1
  printf '%s\n' "$pid"
}

component_is_running() {
  component_pid "$1" >/dev/null
}

cluster_is_running() {
  local component
  for component in "${CLUSTER_COMPONENTS[@]}"; do
    component_is_running "$component" || return 1
  done
}

cluster_down() {
  if [ ! -d "$CLUSTER_DIR" ]; then
    info "No local cluster state in $CLUSTER_DIR; nothing to stop"
    return 0
  fi
  [ -f "$CLUSTER_DIR/$CLUSTER_MARKER" ] ||
    die "$CLUSTER_DIR was not created by scripts/local-cluster; leaving it alone" \
      "check VISIONFLEET_CLUSTER_DIR, or delete the directory yourself"

  local index
  for ((index = ${#CLUSTER_COMPONENTS[@]} - 1; index >= 0; index--)); do
    stop_component "${CLUSTER_COMPONENTS[index]}"
  done
  rm -rf "$CLUSTER_DIR"
  info "Removed $CLUSTER_DIR"
}

# Stops kube-apiserver, compacts etcd to its current revision and starts
# kube-apiserver again with the same state. Clients see their connections
# drop, and every watch that resumes from a resourceVersion older than the
# restart gets "410 Gone: too old resource version", as after a long outage.
cluster_restart_apiserver() {
  lock_cluster_dir
  load_ports || die "no local cluster state in $CLUSTER_DIR" "start one: scripts/local-cluster up"
  cluster_is_running || die "the local cluster is not fully running" "restart it: scripts/local-cluster down && scripts/local-cluster up"

  stop_component kube-apiserver
  etcd_compact
  start_apiserver
  info "kube-apiserver restarted at https://127.0.0.1:$APISERVER_PORT"
}

# Compacts etcd's history up to its current revision through etcd's JSON
# gateway, so no watch can resume from before this point.
etcd_compact() {
  local url="http://127.0.0.1:$ETCD_CLIENT_PORT" revision
  revision=$(curl --silent --fail --max-time 5 -X POST -d '{"key":"AA=="}' "$url/v3/kv/range" | jq -r '.header.revision') ||
    die "could not read etcd's revision at $url" "check $(log_file etcd)"
  curl --silent --fail --max-time 30 -X POST -d "{\"revision\":\"$revision\",\"physical\":true}" "$url/v3/kv/compaction" >/dev/null ||
    die "could not compact etcd at revision $revision" "check $(log_file etcd)"
  info "Compacted etcd at revision $revision"
}

stop_component() {
  local name=$1 pid
  pid=$(component_pid "$name") || return 0
  info "Stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || return 0

  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      info "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
}

cluster_print_env() {
  if [ ! -f "$CLUSTER_DIR/$CLUSTER_MARKER" ] || ! cluster_is_running; then
    die "no local cluster runs (state dir: $CLUSTER_DIR)" "start one: scripts/local-cluster up"
  fi
  printf 'export KUBECONFIG=%q\n' "$(admin_kubeconfig)"
  printf 'export VISIONFLEET_KUBECTL=%q\n' "$KUBE_BIN_DIR/kubectl"
  # shellcheck disable=SC2016 # $PATH is expanded by the shell that evals this line
  printf 'export PATH=%q:"$PATH"\n' "$KUBE_BIN_DIR"
}

# Prints each component's pid, resident memory and listening sockets.
cluster_status() {
  [ -f "$CLUSTER_DIR/$CLUSTER_MARKER" ] ||
    die "no local cluster state in $CLUSTER_DIR" "start one: scripts/local-cluster up"

  local component pid rss listening
  printf '%-24s %-8s %-10s %s\n' COMPONENT PID RSS LISTENING
  for component in "${CLUSTER_COMPONENTS[@]}"; do
    if pid=$(component_pid "$component"); then
      rss=$(awk '/^VmRSS:/ { printf "%d MiB", $2 / 1024 }' "/proc/$pid/status")
      listening=$(ss -Hltnp | awk -v pid="pid=$pid," 'index($0, pid) { printf "%s ", $4 }')
      printf '%-24s %-8s %-10s %s\n' "$component" "$pid" "$rss" "${listening:-none}"
    else
      printf '%-24s %-8s %-10s %s\n' "$component" "-" "-" "not running"
    fi
  done
}
