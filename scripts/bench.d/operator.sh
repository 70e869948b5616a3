# shellcheck shell=bash
# Figure 5: the operator at scale on the local kube-apiserver, measured by
# tests/benches/operator_scale with the real operator binary.

bench_operator() {
  step "Operator at scale: building the operator and the scale bench (release)"
  cargo build --release --locked -p visionfleet-operator >&2
  local target_dir scale
  target_dir=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
  scale=$(cargo bench --locked -p visionfleet-e2e --bench operator_scale --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "operator_scale" and .executable != null) | .executable' | tail -1)
  [ -x "$scale" ] || die "cargo built no operator_scale executable; run 'cargo bench -p visionfleet-e2e --bench operator_scale --no-run' to see why"

  step "Starting the local Kubernetes"
  local started_cluster=false
  scripts/local-cluster status 2>/dev/null | grep -q '^kube-apiserver *[0-9]' || started_cluster=true
  scripts/local-cluster up >&2
  eval "$(scripts/local-cluster env)"

  local load_before
  load_before=$(load_average)
  "$scale" --operator "$target_dir/release/visionfleet-operator" \
    --nodes "${BENCH_OPERATOR_NODES:-200}" --models "${BENCH_OPERATOR_MODELS:-100}" \
    --sites "${BENCH_OPERATOR_SITES:-20}" --relabel "${BENCH_OPERATOR_RELABEL:-50}" \
    --output "$out/raw/operator.json.partial"
  jq --argjson before "$load_before" --argjson after "$(load_average)" \
    '. + {load_average: {before: $before, after: $after}}' "$out/raw/operator.json.partial" >"$out/raw/operator.json"
  rm -f "$out/raw/operator.json.partial"

  if $started_cluster; then
    scripts/local-cluster down >&2
  fi
}
