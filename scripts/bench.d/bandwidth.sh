# shellcheck shell=bash
# Figure 6: bytes fetched from a model's origin. N simulated nodes are N
# agent runs with caches of their own against one counting HTTP server on
# 127.0.0.1; each node then restarts with its cache kept. Two model versions
# roll out one after the other, as an upgrade does.

# Prints the bytes and requests the server has served for PATH so far.
served_for() {
  model_server_stats | jq -c --arg path "/$1" '.[$path] // {requests: 0, bytes: 0} | {requests, bytes}'
}

# Runs the agent of every node once on a single image with MODEL_ARGS.
run_fleet() {
  local fixture="$1" phase="$2"
  shift 2
  local node
  for node in $(seq "$bandwidth_nodes"); do
    "$agent" run --model "$server_url/$fixture" "$@" \
      --source "$repo/assets/frames/frame-04-astronaut.png" --threads "$threads" \
      --cache-dir "$out/tmp/bandwidth/node-$node/models" \
      --compile-cache-dir "$out/tmp/bandwidth/node-$node/compile" \
      >/dev/null 2>"$out/tmp/bandwidth/node-$node/$phase.stderr" ||
      die "node $node's agent failed; see $out/tmp/bandwidth/node-$node/$phase.stderr"
  done
}

# Runs one phase on every node and records the bytes it fetched.
measure_phase() {
  local fixture="$1" phase="$2"
  shift 2
  local before after
  before=$(served_for "$fixture")
  run_fleet "$fixture" "$phase" "$@"
  after=$(served_for "$fixture")
  record bandwidth "$(jq -nc --arg model "$fixture" --arg phase "$phase" \
    --argjson nodes "$bandwidth_nodes" --argjson before "$before" --argjson after "$after" \
    --argjson file_bytes "$(stat -c %s "$repo/assets/models/customvision/$fixture")" \
    '{model: $model, phase: $phase, nodes: $nodes, file_bytes: $file_bytes,
      bytes: ($after.bytes - $before.bytes), requests: ($after.requests - $before.requests)}
     | . + {bytes_per_node: (.bytes / .nodes), downloads_per_node: (.bytes / .nodes / .file_bytes)}')"
  log "$fixture $phase: $(tail -1 "$out/raw/bandwidth.jsonl" | jq -r '"\(.bytes) bytes in \(.requests) requests for \(.nodes) nodes"')"
}

bench_bandwidth() {
  step "Fleet bandwidth: $bandwidth_nodes nodes, two model versions, restarts with warm caches"
  reset_section bandwidth
  rm -rf "$out/tmp/bandwidth"
  local node
  for node in $(seq "$bandwidth_nodes"); do mkdir -p "$out/tmp/bandwidth/node-$node"; done
  start_model_server "$repo/assets/models/customvision"

  local fixture sha
  for fixture in orientation-classification.zip face-detection-s1.zip; do
    sha=$(fixture_sha256 "$fixture")
    measure_phase "$fixture" first-start --sha256 "$sha"
    measure_phase "$fixture" restart-pinned-digest --sha256 "$sha"
    measure_phase "$fixture" restart-url-only
  done
  stop_model_server
}
