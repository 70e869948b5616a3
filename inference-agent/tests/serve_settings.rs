//! Settings that need no new session (threshold, sinks) apply between two
//! frames: no model swap, no second compile, no source reopen.

mod common;
mod serve_support;

use serde_json::json;
use serve_support::{Agent, ConfigDir, Fixtures, agent_config, file_model, file_source, wait_for};

#[test]
fn settings_change_applies_without_swap() {
    let Some(fixtures) = Fixtures::load() else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let results_file = scratch.path().join("results.jsonl");
    let mut config = agent_config(
        file_model(&fixtures.face_model),
        file_source(&fixtures.frames),
        json!([{"type": "Stdout"}]),
    );
    let mut config_dir = ConfigDir::new(&config);
    let agent = Agent::start(&config_dir.path(), &[]);
    wait_for("a face on stdout", || {
        let faces = agent
            .results()
            .iter()
            .filter(|result| {
                result["predictions"]
                    .as_array()
                    .is_some_and(|p| !p.is_empty())
            })
            .count();
        (faces > 0).then_some(()).ok_or(faces.to_string())
    });

    // No score reaches 1, so every prediction is filtered out from now on.
    config["inference"]["confidenceThreshold"] = json!(1.0);
    config["output"]["sinks"] = json!([{"type": "File", "path": results_file}]);
    config_dir.update(&config);
    let written = wait_for("16 results in the file sink", || {
        let text = std::fs::read_to_string(&results_file).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        (lines.len() >= 16).then_some(lines).ok_or(text)
    });
    let metrics = agent.get("/metrics").text();
    let last_on_stdout = agent
        .results()
        .iter()
        .filter_map(|result| result["frame"].as_u64())
        .max();
    let first_in_file = written[0]["frame"].as_u64();

    for line in &written {
        assert_eq!(line["predictions"], json!([]), "{line}");
    }
    assert!(
        last_on_stdout < first_in_file,
        "after the switch results go to the file only: stdout up to {last_on_stdout:?}, file from {first_in_file:?}"
    );
    assert_eq!(
        serve_support::metric_value(&metrics, "visionfleet_agent_model_swaps_total"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        serve_support::metric_value(
            &metrics,
            "visionfleet_agent_model_load_duration_seconds_count{phase=\"compile\"}"
        ),
        Some(1.0),
        "one session compiled:\n{metrics}"
    );
    assert_eq!(
        serve_support::metric_value(
            &metrics,
            "visionfleet_agent_source_reopens_total{reason=\"config\"}"
        ),
        None,
        "{metrics}"
    );
}
