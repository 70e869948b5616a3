//! `serve` swaps to a new model while frames stream, between two frames
//! and without reopening the source.
//!
//! The source is the image folder, which the live source hands over image
//! by image and `serve` replays when it ends, so every frame index must
//! reach the output. A video file plays at its own rate with only the
//! newest frame kept, so a debug build that falls behind 10 frames per
//! second would drop frames, swap or not.

mod common;
mod serve_support;

use serde_json::json;
use serve_support::{
    Agent, ConfigDir, Fixtures, agent_config, digest_of, file_model, file_source, wait_for,
};

#[test]
fn model_swap_drops_no_frames() {
    let Some(fixtures) = Fixtures::load() else {
        return;
    };
    let old_digest = digest_of(&fixtures.face_model);
    let new_digest = digest_of(&fixtures.orientation_model);
    let sinks = json!([{"type": "Stdout"}]);
    let mut config = ConfigDir::new(&agent_config(
        file_model(&fixtures.face_model),
        file_source(&fixtures.frames),
        sinks.clone(),
    ));
    let agent = Agent::start(&config.path(), &[]);
    let count_digest = |digest: &str| {
        agent
            .results()
            .iter()
            .filter(|result| result["model_digest"] == digest)
            .count()
    };

    wait_for("results from the first model", || {
        let count = count_digest(&old_digest);
        (count >= 20).then_some(()).ok_or(count.to_string())
    });
    config.update(&agent_config(
        file_model(&fixtures.orientation_model),
        file_source(&fixtures.frames),
        sinks,
    ));
    wait_for("results from the new model", || {
        let count = count_digest(&new_digest);
        (count >= 20).then_some(()).ok_or(count.to_string())
    });
    let metrics = agent.get("/metrics").text();
    let latest = agent.get("/results/latest").json();
    let results = agent.results();
    let logs = agent.logs();
    let status = agent.stop();

    let frames: Vec<u64> = results
        .iter()
        .map(|result| result["frame"].as_u64().unwrap())
        .collect();
    let first = frames[0];
    assert_eq!(first, 0, "the first result is the first frame");
    for (position, frame) in frames.iter().enumerate() {
        assert_eq!(
            *frame,
            first + position as u64,
            "frame indices must increase by one; stale drops: {:?}\n{logs}",
            serve_support::metric_value(
                &metrics,
                "visionfleet_agent_frames_dropped_total{reason=\"stale\",source=\"file\"}"
            )
        );
    }
    serve_support::assert_one_model_switch(&results, &old_digest, &new_digest);
    assert_eq!(latest["model_digest"], new_digest.as_str());
    assert_eq!(
        serve_support::metric_value(&metrics, "visionfleet_agent_model_swaps_total"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&old_digest),
        "old model info series removed:\n{metrics}"
    );
    assert!(
        !metrics.contains("visionfleet_agent_detections_total{label=\"face\"}"),
        "the old model's labels removed:\n{metrics}"
    );
    assert_eq!(
        serve_support::metric_value(
            &metrics,
            "visionfleet_agent_source_reopens_total{reason=\"config\"}"
        ),
        None,
        "the swap did not reopen the source:\n{metrics}"
    );
    assert!(
        status.success(),
        "the agent exits cleanly on SIGTERM:\n{logs}"
    );
}
