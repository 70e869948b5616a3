"""Summarise the raw records of scripts/bench into figures with verdicts.

Reads DIR/raw/*.jsonl and DIR/raw/operator.json, writes DIR/summary.json
and prints one table per figure. Only the standard library is used, so the
system python3 runs it.
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

THROUGHPUT_CEILING_TARGET = 0.95
REFERENCE_SPEEDUP_TARGET = 2.0
MEMORY_TARGET_MB = 30.0


def percentile(values, fraction):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


def spread(values):
    return {
        "n": len(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "p10": percentile(values, 0.10),
        "p90": percentile(values, 0.90),
    }


def read_records(raw, section):
    path = raw / f"{section}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def group(records, *keys):
    groups = defaultdict(list)
    for record in records:
        groups[tuple(record[key] for key in keys)].append(record)
    return groups


def load_range(records):
    loads = [record["load_average"] for record in records if "load_average" in record]
    return {"min": min(loads), "max": max(loads)} if loads else None


def summarize_agent(records):
    figures = []
    for (model, provider), rows in sorted(group(records, "model", "provider").items()):
        by_round = group([row for row in rows if row["kind"] != "stages"], "round")
        kinds = {kind: [row["fps"] for row in rows if row["kind"] == kind] for kind in ("agent", "reference", "ceiling")}
        vs_ceiling, vs_reference = [], []
        for round_rows in by_round.values():
            fps = {row["kind"]: row["fps"] for row in round_rows}
            if {"agent", "ceiling", "reference"} <= fps.keys():
                vs_ceiling.append(fps["agent"] / fps["ceiling"])
                vs_reference.append(fps["agent"] / fps["reference"])
        if not vs_ceiling:
            continue
        figure = {
            "model": model,
            "provider": provider,
            "threads": rows[0]["threads"],
            "video": rows[0]["video"],
            "frames": rows[0].get("frames"),
            "agent_fps": spread(kinds["agent"]),
            "reference_fps": spread(kinds["reference"]),
            "ceiling_fps": spread(kinds["ceiling"]),
            "agent_over_ceiling": spread(vs_ceiling),
            "agent_over_reference": spread(vs_reference),
            "agent_mean_inference_ms": spread([row["mean_inference_ms"] for row in rows if row["kind"] == "agent"]),
            "reference_stage_s": {
                stage: statistics.median(row[stage] for row in rows if row["kind"] == "reference")
                for stage in ("decode_s", "preprocess_s", "inference_s", "postprocess_s")
            },
            "load_average": load_range(rows),
        }
        stages = [row for row in rows if row["kind"] == "stages"]
        if stages:
            figure["agent_stage_s"] = {
                key: stages[-1][key]
                for key in ("frames", "elapsed_s", "next_frame_s", "prepare_s", "inference_s", "decode_s", "json_s")
            }
        figure["ceiling_met"] = figure["agent_over_ceiling"]["median"] >= THROUGHPUT_CEILING_TARGET
        figure["reference_met"] = figure["agent_over_reference"]["median"] >= REFERENCE_SPEEDUP_TARGET
        figures.append(figure)
    return figures


def summarize_memory(records):
    figures = []
    for (model, provider), rows in sorted(group(records, "model", "provider").items()):
        differences = []
        for round_rows in group(rows, "round").values():
            rss = {row["kind"]: row["max_rss_kib"] for row in round_rows}
            if {"agent", "ceiling"} <= rss.keys():
                differences.append((rss["agent"] - rss["ceiling"]) * 1024 / 1e6)
        if not differences:
            continue
        figure = {
            "model": model,
            "provider": provider,
            "agent_max_rss_mb": spread([row["max_rss_kib"] * 1024 / 1e6 for row in rows if row["kind"] == "agent"]),
            "ceiling_max_rss_mb": spread([row["max_rss_kib"] * 1024 / 1e6 for row in rows if row["kind"] == "ceiling"]),
            "difference_mb": spread(differences),
            "load_average": load_range(rows),
        }
        figure["met"] = figure["difference_mb"]["median"] <= MEMORY_TARGET_MB
        figures.append(figure)
    return figures


def summarize_start(records):
    return [
        {
            "model": row["model"],
            "provider": row["provider"],
            "phase": row["phase"],
            "seconds": spread(row["times_s"]),
            "load_average": row["load_average"],
        }
        for row in records
    ]


def summarize_bandwidth(records):
    figures = [
        {key: row[key] for key in ("model", "phase", "nodes", "file_bytes", "bytes", "requests", "downloads_per_node")}
        for row in records
    ]
    for figure in figures:
        expected = 1.0 if figure["phase"] == "first-start" else 0.0
        figure["met"] = abs(figure["downloads_per_node"] - expected) < 1e-9
    return figures


def summarize_swap(records):
    if not records:
        return []
    return [{
        "runs": len(records),
        "frames_dropped": spread([row["frames_dropped"] for row in records]),
        "frames_dropped_at_swap": spread([row["frames_dropped_at_swap"] for row in records]),
        "max_gap_ms": spread([row["max_gap_ms"] for row in records]),
        "swap_gap_ms": spread([row["swap_gap_ms"] for row in records]),
        "median_gap_ms": spread([row["median_gap_ms"] for row in records]),
        "swap_to_first_new_result_ms": spread([row["swap_to_first_new_result_ms"] for row in records]),
        "load_average": load_range(records),
    }]


def fmt(figure, unit="", digits=1):
    return (
        f"{figure['median']:.{digits}f}{unit} "
        f"(min {figure['min']:.{digits}f}, max {figure['max']:.{digits}f}, n={figure['n']})"
    )


def verdict(met):
    return "met" if met else "MISSED"


def print_tables(summary):
    machine = summary.get("machine", {})
    print(f"machine: {machine.get('nproc')} cores, {machine.get('cpu_model')}, "
          f"{machine.get('memory_kib', 0) / 1048576:.1f} GiB, commit {machine.get('commit', '?')[:12]}")

    for figure in summary["agent"]:
        print(f"\nthroughput {figure['model']} {figure['provider']} ({figure['threads']} threads, "
              f"load {figure['load_average']['min']:.2f}-{figure['load_average']['max']:.2f})")
        print(f"  agent      {fmt(figure['agent_fps'], ' fps')}")
        print(f"  ceiling    {fmt(figure['ceiling_fps'], ' fps')}")
        print(f"  reference  {fmt(figure['reference_fps'], ' fps')}")
        print(f"  agent/ceiling    {fmt(figure['agent_over_ceiling'], digits=3)}  target >= {THROUGHPUT_CEILING_TARGET}: {verdict(figure['ceiling_met'])}")
        print(f"  agent/reference  {fmt(figure['agent_over_reference'], digits=2)}  target >= {REFERENCE_SPEEDUP_TARGET}: {verdict(figure['reference_met'])}")
        stage = figure.get("agent_stage_s")
        if stage:
            per_frame = {key: stage[key] * 1000 / stage["frames"] for key in stage if key.endswith("_s")}
            print("  agent ms/frame: " + ", ".join(f"{key[:-2]} {value:.2f}" for key, value in per_frame.items()))
        reference = figure["reference_stage_s"]
        frames = figure["frames"] or 1
        print("  reference ms/frame: " + ", ".join(f"{key[:-2]} {value * 1000 / frames:.2f}" for key, value in reference.items()))

    for figure in summary["memory"]:
        print(f"\nmemory {figure['model']} {figure['provider']}")
        print(f"  agent max RSS    {fmt(figure['agent_max_rss_mb'], ' MB')}")
        print(f"  ceiling max RSS  {fmt(figure['ceiling_max_rss_mb'], ' MB')}")
        print(f"  difference       {fmt(figure['difference_mb'], ' MB')}  target <= {MEMORY_TARGET_MB} MB: {verdict(figure['met'])}")

    if summary["start"]:
        print("\nstart to the first result (single image)")
    for figure in summary["start"]:
        print(f"  {figure['model']:<34} {figure['provider']:<9} {figure['phase']:<5} {fmt(figure['seconds'], ' s', 3)}")

    if summary["bandwidth"]:
        print("\nfleet bandwidth (bytes from the origin)")
    for figure in summary["bandwidth"]:
        print(f"  {figure['model']:<34} {figure['phase']:<22} {figure['bytes']:>10} bytes, "
              f"{figure['downloads_per_node']:.2f} downloads/node: {verdict(figure['met'])}")

    for figure in summary["swap"]:
        print("\nhot swap (10 fps live file source)")
        print(f"  frames dropped in the run    {fmt(figure['frames_dropped'], digits=0)}")
        print(f"  frames dropped at the swap   {fmt(figure['frames_dropped_at_swap'], digits=0)}")
        print(f"  gap at the swap              {fmt(figure['swap_gap_ms'], ' ms')}")
        print(f"  longest gap in the run       {fmt(figure['max_gap_ms'], ' ms')}")
        print(f"  median gap                   {fmt(figure['median_gap_ms'], ' ms')}")
        print(f"  config write to new result   {fmt(figure['swap_to_first_new_result_ms'], ' ms')}")

    operator = summary.get("operator")
    if operator:
        print("\noperator at scale")
        print(json.dumps(operator["figures"], indent=2))


def main():
    directory = Path(sys.argv[1])
    raw = directory / "raw"
    summary = {
        "agent": summarize_agent(read_records(raw, "agent")),
        "memory": summarize_memory(read_records(raw, "memory")),
        "start": summarize_start(read_records(raw, "start")),
        "bandwidth": summarize_bandwidth(read_records(raw, "bandwidth")),
        "swap": summarize_swap(read_records(raw, "swap")),
    }
    machine = directory / "machine.json"
    if machine.exists():
        summary["machine"] = json.loads(machine.read_text())
    operator = raw / "operator.json"
    if operator.exists():
        summary["operator"] = json.loads(operator.read_text())

    (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_tables(summary)


if __name__ == "__main__":
    main()
