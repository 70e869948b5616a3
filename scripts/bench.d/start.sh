# shellcheck shell=bash
# Figure 3: agent start-up, cold (empty model and compile caches: download
# from 127.0.0.1, verify, unpack, compile) and warm (both caches hit), to the
# result of a single image.

bench_start() {
  step "Agent start: cold and warm, hyperfine with $start_runs runs each"
  reset_section start
  start_model_server "$repo/assets/models/customvision"
  local fixture provider work command
  local image="$repo/assets/frames/frame-04-astronaut.png"
  for fixture in orientation-classification.zip face-detection-s1.zip; do
    for provider in openvino cpu; do
      work="$out/tmp/start/${fixture%.zip}-$provider"
      rm -rf "$work" && mkdir -p "$work"
      # hyperfine runs commands through sh, so every path is quoted for it.
      command="'$agent' run --model '$server_url/$fixture' --sha256 $(fixture_sha256 "$fixture") \
--source '$image' --execution-provider $provider --threads $threads \
--cache-dir '$work/models' --compile-cache-dir '$work/compile'"

      hyperfine --style basic --runs "$start_runs" --output pipe \
        --prepare "rm -rf '$work/models' '$work/compile'" \
        --export-json "$work/cold.json" --command-name cold "$command" >&2
      hyperfine --style basic --runs "$start_runs" --warmup 1 --output pipe \
        --export-json "$work/warm.json" --command-name warm "$command" >&2

      local phase
      for phase in cold warm; do
        record start "$(jq -c --arg model "$fixture" --arg provider "$provider" --arg phase "$phase" \
          --arg command "$command" \
          '.results[0] | {model: $model, provider: $provider, phase: $phase, command: $command,
            times_s: .times, median_s: .median, min_s: .min, max_s: .max, mean_s: .mean, stddev_s: .stddev}' \
          "$work/$phase.json")"
      done
    done
  done
  stop_model_server
}
