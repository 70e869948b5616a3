# shellcheck shell=bash
# Shared helpers of scripts/bench: logging, raw records, the machine
# description, the load-average gate and the counting model server.
# Sourced by scripts/bench, which sets $repo, $cache, $out and $bench_d.

step() { printf '\n==> %s\n' "$*" >&2; }
log() { printf 'bench: %s\n' "$*" >&2; }
die() {
  printf 'bench: error: %s\n' "$*" >&2
  exit 1
}

# One-minute load average, as uptime prints it.
load_average() { cut -d' ' -f1 /proc/loadavg; }

# Appends one JSON record to $out/raw/SECTION.jsonl. Arguments after the
# section are a JSON object; the load average and the time are added.
record() {
  local section="$1" json="$2"
  jq -c --arg load "$(load_average)" --arg at "$(date -u +%FT%TZ)" \
    '. + {load_average: ($load | tonumber), recorded_at: $at}' <<<"$json" >>"$out/raw/$section.jsonl"
}

# Starts a section's raw file afresh, so that a rerun replaces its records.
reset_section() { : >"$out/raw/$1.jsonl"; }

# Writes $out/machine.json: cores, CPU model, memory, kernel, commit, date.
describe_machine() {
  local commit dirty=false
  commit=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
  [ -z "$(git -C "$repo" status --porcelain 2>/dev/null)" ] || dirty=true
  jq -n \
    --arg nproc "$(nproc)" \
    --arg cpu "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
    --arg memory_kib "$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)" \
    --arg kernel "$(uname -r)" \
    --arg commit "$commit" \
    --argjson dirty "$dirty" \
    --arg date "$(date -u +%FT%TZ)" \
    '{nproc: ($nproc | tonumber), cpu_model: $cpu, memory_kib: ($memory_kib | tonumber),
      kernel: $kernel, commit: $commit, uncommitted_changes: $dirty, date: $date}' >"$out/machine.json"
}

# Waits up to BENCH_IDLE_WAIT seconds (default 0) for the one-minute load
# average to drop below BENCH_IDLE_LOAD (default 1.0), checking every 30 s.
# Called once before the first measurement, because the benchmarks' own
# processes raise the load average. Measurements go ahead either way, and
# every record carries the load average.
wait_for_idle() {
  local limit="${BENCH_IDLE_WAIT:-0}" threshold="${BENCH_IDLE_LOAD:-1.0}" waited=0
  while awk -v load="$(load_average)" -v max="$threshold" 'BEGIN { exit !(load >= max) }'; do
    if [ "$waited" -ge "$limit" ]; then
      [ "$limit" -eq 0 ] || log "load average still $(load_average) after ${waited}s; measuring anyway"
      return
    fi
    log "load average $(load_average) >= $threshold, waiting (${waited}s of ${limit}s)"
    sleep 30
    waited=$((waited + 30))
  done
}

# Starts scripts/bench.d/model_server.py on 127.0.0.1 serving DIRECTORY and
# sets $server_pid and $server_url. stop_model_server ends it.
start_model_server() {
  local directory="$1" port_file
  port_file=$(mktemp)
  python3 -u "$bench_d/model_server.py" --directory "$directory" --port-file "$port_file" &
  server_pid=$!
  for _ in $(seq 50); do
    [ -s "$port_file" ] && break
    sleep 0.1
  done
  [ -s "$port_file" ] || die "the model server did not start"
  server_url="http://127.0.0.1:$(cat "$port_file")"
  rm -f "$port_file"
}

stop_model_server() {
  if [ -n "${server_pid:-}" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}

# Prints the server's per-path counts as JSON.
model_server_stats() { curl -fsS "$server_url/_stats"; }

# Prints the sha256 of a fixture in assets/models/customvision.
fixture_sha256() { sha256sum "$repo/assets/models/customvision/$1" | cut -d' ' -f1; }

# Parses the agent's closing summary line from a stderr log into JSON.
agent_summary_json() {
  local line
  line=$(grep '^summary: ' "$1" | tail -1)
  [ -n "$line" ] || return 1
  sed -e 's/^summary: //' <<<"$line" | tr ' ' '\n' | jq -R -s '
    split("\n") | map(select(length > 0) | split("=") | {(.[0]): (.[1:] | join("="))}) | add
    | .frames = (.frames | tonumber) | .skipped = (.skipped | tonumber)
    | .elapsed_s = (.elapsed_s | tonumber) | .fps = (.fps | tonumber)
    | .mean_inference_ms = (.mean_inference_ms | tonumber)'
}

# Prints the maximum resident set size in KiB from a `/usr/bin/time -v` log.
max_rss_kib() { sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$1"; }
