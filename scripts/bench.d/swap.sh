# shellcheck shell=bash
# Figure 4: hot model swap on a live stream with `visionfleet-agent serve`
# (scripts/bench.d/swap.py drives one swap per run).

bench_swap() {
  step "Hot swap: frames dropped and result gaps while serve swaps models, $runs runs"
  reset_section swap
  if ! "$agent" serve --help >/dev/null 2>&1; then
    log "skipped: $agent has no serve command"
    return
  fi

  local models="$repo/assets/models/customvision" round old new
  for round in $(seq "$runs"); do
    # Alternate the direction: detector to classifier, then back.
    if [ $((round % 2)) -eq 1 ]; then
      old=face-detection-s1.zip new=orientation-classification.zip
    else
      old=orientation-classification.zip new=face-detection-s1.zip
    fi
    record swap "$(python3 "$bench_d/swap.py" --agent "$agent" --video "$video" \
      --old-model "$models/$old" --new-model "$models/$new" --threads "$threads" \
      --workdir "$out/tmp/swap/$round" | jq -c --arg old "$old" --arg new "$new" --argjson round "$round" \
      '. + {old_model: $old, new_model: $new, round: $round}')"
    log "swap $round ($old to $new): $(tail -1 "$out/raw/swap.jsonl" | jq -r '"\(.frames_dropped_at_swap) dropped at the swap, gap \(.swap_gap_ms | floor) ms, longest gap \(.max_gap_ms | floor) ms"')"
  done
}
