# shellcheck shell=bash
# Figures 1 and 2: agent throughput against the raw ONNX Runtime ceiling and
# the Python reference pipeline, and the agent's memory above the ceiling's.

bench_models=(orientation-classification.zip face-detection-s1.zip)
bench_providers=(openvino cpu)

# Runs the agent on the long video and prints its summary as JSON, with the
# maximum resident memory from /usr/bin/time -v.
run_agent_on_video() {
  local fixture="$1" provider="$2" work="$3"
  local stderr_log="$work/agent.stderr" time_log="$work/agent.time"
  /usr/bin/time -v -o "$time_log" "$agent" run \
    --model "$server_url/$fixture" --sha256 "$(fixture_sha256 "$fixture")" \
    --source "$video" --execution-provider "$provider" --threads "$threads" \
    --cache-dir "$work/models" --compile-cache-dir "$work/compile" \
    >"$work/agent.jsonl" 2>"$stderr_log" || die "the agent failed; see $stderr_log"
  agent_summary_json "$stderr_log" | jq -c \
    --argjson lines "$(wc -l <"$work/agent.jsonl")" --argjson rss "$(max_rss_kib "$time_log")" \
    '. + {output_lines: $lines, max_rss_kib: $rss}'
}

run_reference_on_video() {
  local fixture="$1" provider="$2" work="$3"
  "$reference_python" "$bench_d/reference.py" \
    --model "$repo/assets/models/customvision/$fixture" --source "$video" \
    --execution-provider "$provider" --threads "$threads" \
    --compile-cache-dir "$work/reference-compile" --summary "$work/reference.json" \
    >"$work/reference.jsonl" 2>"$work/reference.stderr" ||
    die "the reference pipeline failed; see $work/reference.stderr"
  jq -c --argjson lines "$(wc -l <"$work/reference.jsonl")" '. + {output_lines: $lines}' "$work/reference.json"
}

# Runs the ceiling loop; FRAMES is a folder (throughput) or one image (memory).
run_ceiling() {
  local fixture="$1" provider="$2" work="$3" frames="$4"
  /usr/bin/time -v -o "$work/ceiling.time" "$ceiling" \
    --model "$repo/assets/models/customvision/$fixture" --frames "$frames" \
    --execution-provider "$provider" --threads "$threads" --iterations "$video_frames" \
    --cache-dir "$work/ceiling-cache" >"$work/ceiling.json" 2>"$work/ceiling.stderr" ||
    die "the ceiling bench failed; see $work/ceiling.stderr"
  jq -c --argjson rss "$(max_rss_kib "$work/ceiling.time")" '. + {max_rss_kib: $rss}' "$work/ceiling.json"
}

# Times each step of the agent's frame loop once (inference-agent/benches/stages.rs).
run_stages() {
  local fixture="$1" provider="$2" work="$3"
  "$stages" --model "$repo/assets/models/customvision/$fixture" --source "$video" \
    --execution-provider "$provider" --threads "$threads" 2>"$work/stages.stderr" ||
    die "the stages bench failed; see $work/stages.stderr"
}

# Figure 1. Each round runs the agent, the reference and the ceiling once, so
# that a change of load during the section affects all three alike.
bench_agent() {
  step "Agent throughput: agent, reference pipeline and ceiling, $runs rounds each"
  reset_section agent
  start_model_server "$repo/assets/models/customvision"
  local fixture provider round work
  for fixture in "${bench_models[@]}"; do
    for provider in "${bench_providers[@]}"; do
      work="$out/tmp/agent/${fixture%.zip}-$provider"
      rm -rf "$work" && mkdir -p "$work"
      log "$fixture with $provider: one untimed run of each to fill the model and compile caches"
      run_agent_on_video "$fixture" "$provider" "$work" >/dev/null
      run_reference_on_video "$fixture" "$provider" "$work" >/dev/null
      for round in $(seq "$runs"); do
        local labels
        labels=$(jq -nc --arg model "$fixture" --arg provider "$provider" --argjson round "$round" \
          --argjson threads "$threads" --arg video "${video#"$repo"/}" \
          '{model: $model, provider: $provider, round: $round, threads: $threads, video: $video}')
        record agent "$(jq -c --argjson labels "$labels" '. + $labels + {kind: "agent"}' <<<"$(run_agent_on_video "$fixture" "$provider" "$work")")"
        record agent "$(jq -c --argjson labels "$labels" '. + $labels + {kind: "reference"}' <<<"$(run_reference_on_video "$fixture" "$provider" "$work")")"
        record agent "$(jq -c --argjson labels "$labels" '. + $labels + {kind: "ceiling"}' <<<"$(run_ceiling "$fixture" "$provider" "$work" "$repo/assets/frames")")"
        log "$fixture $provider round $round: $(tail -3 "$out/raw/agent.jsonl" | jq -r '"\(.kind) \(.fps | floor) fps"' | paste -sd' ')"
      done
      record agent "$(run_stages "$fixture" "$provider" "$work" | jq -c --arg model "$fixture" --arg provider "$provider" \
        '. + {model: $model, provider: $provider, kind: "stages"}')"
    done
  done
  stop_model_server
}

# Figure 2. The ceiling keeps one prepared tensor here, so its memory is the
# session's plus one input.
bench_memory() {
  step "Agent memory: maximum RSS of the agent run and of the ceiling, $runs runs each"
  reset_section memory
  start_model_server "$repo/assets/models/customvision"
  local fixture provider round work one_frame="$repo/assets/frames/frame-04-astronaut.png"
  for fixture in "${bench_models[@]}"; do
    for provider in "${bench_providers[@]}"; do
      work="$out/tmp/memory/${fixture%.zip}-$provider"
      rm -rf "$work" && mkdir -p "$work"
      run_agent_on_video "$fixture" "$provider" "$work" >/dev/null
      for round in $(seq "$runs"); do
        local labels
        labels=$(jq -nc --arg model "$fixture" --arg provider "$provider" --argjson round "$round" \
          '{model: $model, provider: $provider, round: $round}')
        record memory "$(jq -c --argjson labels "$labels" '{max_rss_kib} + $labels + {kind: "agent"}' <<<"$(run_agent_on_video "$fixture" "$provider" "$work")")"
        record memory "$(jq -c --argjson labels "$labels" '{max_rss_kib} + $labels + {kind: "ceiling"}' <<<"$(run_ceiling "$fixture" "$provider" "$work" "$one_frame")")"
      done
      log "$fixture $provider: $(tail -2 "$out/raw/memory.jsonl" | jq -r '"\(.kind) \(.max_rss_kib / 1024 | floor) MiB"' | paste -sd' ')"
    done
  done
  stop_model_server
}
