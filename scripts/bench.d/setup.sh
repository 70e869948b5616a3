# shellcheck shell=bash
# Set-up steps of scripts/bench: release builds, the reference pipeline's
# venv and the long benchmark video. Each step is idempotent.

# Prints the path of a bench executable of the agent, building it first.
bench_executable() {
  cargo bench --locked -p visionfleet-agent --bench "$1" --no-run --message-format=json 2>/dev/null |
    jq -r --arg name "$1" 'select(.reason == "compiler-artifact" and .target.name == $name and .executable != null) | .executable' | tail -1
}

# Builds the agent and its ceiling and stages benches (release profile) and
# sets $agent, $ceiling and $stages to their paths. BENCH_AGENT,
# BENCH_CEILING and BENCH_STAGES name prebuilt executables to measure
# instead, and skip the build.
build_agent() {
  if [ -n "${BENCH_AGENT:-}" ] && [ -n "${BENCH_CEILING:-}" ] && [ -n "${BENCH_STAGES:-}" ]; then
    agent="$BENCH_AGENT"
    ceiling="$BENCH_CEILING"
    stages="$BENCH_STAGES"
    log "measuring the prebuilt $agent, $ceiling and $stages"
    return
  fi
  step "Building the agent and its ceiling and stages benches (release)"
  cargo build --release --locked -p visionfleet-agent >&2
  local target_dir
  target_dir=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
  agent="$target_dir/release/visionfleet-agent"
  ceiling=$(bench_executable ceiling)
  stages=$(bench_executable stages)
  [ -x "$ceiling" ] && [ -x "$stages" ] ||
    die "cargo built no ceiling or stages bench executable; run 'cargo bench -p visionfleet-agent --no-run' to see why"
}

# Creates the reference pipeline's venv from scripts/bench.d/requirements.lock,
# unless it already contains exactly the locked files.
ensure_reference_venv() {
  local venv="$cache/bench-venv" lock="$bench_d/requirements.lock" stamp
  stamp="$venv/.visionfleet-lock-sha256"
  reference_python="$venv/bin/python"
  if [ -x "$reference_python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$(sha256sum "$lock" | cut -d' ' -f1)" ]; then
    log "reference venv $venv is up to date"
    return
  fi

  step "Installing the reference pipeline's packages into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "'python3 -m venv' failed; run scripts/install-deps"
  # The downloads folder of scripts/fetch-assets already contains the pinned
  # onnxruntime-openvino and numpy wheels; --require-hashes checks every file.
  "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps \
    --only-binary=:all: --find-links "$cache/downloads" -r "$lock" ||
    die "pip could not install $lock; check the connection to PyPI and run again"
  sha256sum "$lock" | cut -d' ' -f1 >"$stamp"
}

# Encodes $out/video/photos-10fps-xN.mp4: the frames of
# assets/video/photos-10fps.mp4 (each of assets/frames shown for one second
# at 10 frames per second) repeated BENCH_VIDEO_LOOPS times (default 5), with
# the same GStreamer encoder and settings as scripts/fetch-assets. Sets $video.
ensure_long_video() {
  local loops="${BENCH_VIDEO_LOOPS:-5}"
  video="$out/video/photos-10fps-x$loops.mp4"
  video_frames=$((loops * 80))
  [ -f "$video" ] && return

  step "Encoding a $video_frames-frame video ($loops loops of assets/video/photos-10fps.mp4)"
  mkdir -p "$out/video"
  local numbered index=0 frame
  numbered=$(mktemp -d)
  for _ in $(seq "$loops"); do
    for frame in "$repo"/assets/frames/frame-*.png; do
      for _ in $(seq 10); do
        ln -s "$frame" "$numbered/$(printf '%05d' "$index").png"
        index=$((index + 1))
      done
    done
  done
  gst-launch-1.0 -q multifilesrc location="$numbered/%05d.png" index=0 stop-index=$((index - 1)) \
    caps="image/png,framerate=10/1" ! pngdec ! videoconvert ! "video/x-raw,format=I420" ! \
    x264enc ! mp4mux ! filesink location="$video.partial" ||
    die "gst-launch-1.0 could not encode $video"
  rm -rf "$numbered"
  mv "$video.partial" "$video"
}
