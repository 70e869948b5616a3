"""Hot model swap on a live stream with `visionfleet-agent serve`.

Starts `serve` on an AgentConfig file whose source is a video file, which
`serve` plays at the video's own rate (10 frames per second here) keeping
only the newest frame, as it does for a camera. After --before seconds of
results it rewrites the config with the other model, and after --after
seconds more it stops the agent. Every result line is timestamped on
arrival. Prints one JSON object: the frames missing from the result
sequence, the longest gap between two results and the time from the config
write to the first result of the new model.
"""

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", required=True)
    parser.add_argument("--video", required=True)
    parser.add_argument("--old-model", required=True, type=Path)
    parser.add_argument("--new-model", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--threads", required=True, type=int)
    parser.add_argument("--before", type=float, default=10.0, help="seconds of results before the swap")
    parser.add_argument("--after", type=float, default=10.0, help="seconds of results after the swap")
    parser.add_argument("--poll", type=float, default=0.5, help="--config-poll-interval of serve")
    return parser.parse_args()


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def agent_config(model, video):
    return {
        "apiVersion": "visionfleet.dev/v1alpha1",
        "kind": "AgentConfig",
        "visionModel": {"namespace": "bench", "name": "swap"},
        "model": {"url": str(model), "sha256": sha256_of(model)},
        "accelerator": {"preference": ["CPU"], "allowCpuFallback": True},
        "source": {"file": video, "maxFps": 1000.0},
        "inference": {"confidenceThreshold": 0.5},
        "output": {"sinks": [{"type": "Stdout"}], "messagesPerMinute": 1000000},
    }


def write_config(path, config):
    """Replaces the file atomically, as a ConfigMap volume update does."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(config))
    os.replace(partial, path)


def read_results(stream, results):
    for line in stream:
        arrived = time.monotonic()
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue
        results.append((arrived, result))


def run(args):
    args.workdir.mkdir(parents=True, exist_ok=True)
    config_path = args.workdir / "agent-config.json"
    write_config(config_path, agent_config(args.old_model, args.video))

    command = [
        args.agent, "serve", "--config", str(config_path), "--http-addr", "127.0.0.1:0",
        "--cache-dir", str(args.workdir / "models"), "--compile-cache-dir", str(args.workdir / "compile"),
        "--config-poll-interval", str(args.poll), "--threads", str(args.threads),
    ]
    with open(args.workdir / "serve.stderr", "w") as stderr:
        agent = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    results = []
    reader = threading.Thread(target=read_results, args=(agent.stdout, results), daemon=True)
    reader.start()

    try:
        deadline = time.monotonic() + 60
        while not results:
            if agent.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"swap: serve gave no result; see {args.workdir / 'serve.stderr'}")
            time.sleep(0.05)
        time.sleep(args.before)
        swapped_at = time.monotonic()
        write_config(config_path, agent_config(args.new_model, args.video))
        time.sleep(args.after)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        reader.join(timeout=5)

    return summarize(results, swapped_at, "sha256:" + sha256_of(args.new_model))


def summarize(results, swapped_at, new_digest):
    frames = [result["frame"] for _, result in results]
    times = [arrived for arrived, _ in results]
    gaps = [(later - earlier) * 1000 for earlier, later in zip(times, times[1:])]
    first_new = next(
        (index for index, (_, result) in enumerate(results) if result.get("model_digest") == new_digest),
        None,
    )
    if first_new is None:
        sys.exit("swap: no result of the new model arrived")

    # gaps[i] lies between results i and i + 1, so the swap's gap is the one
    # before the first result of the new model.
    swap_gap_ms = gaps[first_new - 1] if first_new > 0 else 0.0
    missing = [
        frame for earlier, later in zip(frames, frames[1:]) for frame in range(earlier + 1, later)
    ]
    swap_frame = frames[first_new]
    return {
        "results": len(results),
        "first_frame": frames[0],
        "last_frame": frames[-1],
        "frames_dropped": len(missing),
        "frames_dropped_at_swap": sum(1 for frame in missing if frames[first_new - 1] < frame < swap_frame),
        "max_gap_ms": max(gaps),
        "swap_gap_ms": swap_gap_ms,
        "median_gap_ms": statistics.median(gaps),
        "swap_to_first_new_result_ms": (times[first_new] - swapped_at) * 1000,
        "out_of_order": sum(1 for earlier, later in zip(frames, frames[1:]) if later <= earlier),
    }


if __name__ == "__main__":
    print(json.dumps(run(parse_args())))
