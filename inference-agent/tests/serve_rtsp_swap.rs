//! `serve` swaps models while it reads a live RTSP camera, and loses no
//! frame of the stream to the swap.
//!
//! A live source counts every frame it receives, so a frame replaced before
//! the inference loop took it leaves a gap in the result indices. This test
//! has a binary of its own because a live stream at 10 frames per second
//! must not compete with other tests for the CPU.

mod common;
mod serve_support;

#[path = "common/rtsp.rs"]
mod rtsp;

use serde_json::{Value, json};
use serve_support::{Agent, ConfigDir, Fixtures, agent_config, digest_of, file_model, wait_for};

/// Results each model must publish, at the camera's 10 frames per second.
const RESULTS_PER_MODEL: usize = 30;

#[test]
fn rtsp_model_swap_drops_no_frames() {
    let Some(fixtures) = Fixtures::load() else {
        return;
    };
    let camera = rtsp::RtspServer::start(rtsp::ServerConfig::default());
    let old_digest = digest_of(&fixtures.face_model);
    let new_digest = digest_of(&fixtures.orientation_model);
    let source = json!({"url": camera.url(), "maxFps": 1000.0});
    let sinks = json!([{"type": "Stdout"}]);
    let mut config = ConfigDir::new(&agent_config(
        file_model(&fixtures.face_model),
        source.clone(),
        sinks.clone(),
    ));
    let agent = Agent::start(&config.path(), &[]);

    wait_for_results(&agent, &old_digest);
    config.update(&agent_config(
        file_model(&fixtures.orientation_model),
        source,
        sinks,
    ));
    wait_for_results(&agent, &new_digest);
    let metrics = agent.get("/metrics").text();
    let results = agent.results();
    let logs = agent.logs();
    let status = agent.stop();

    let frames: Vec<u64> = results
        .iter()
        .map(|result| result["frame"].as_u64().expect("a frame index"))
        .collect();
    for pair in frames.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "a frame was skipped at index {}\n{metrics}\n{logs}",
            pair[0] + 1
        );
    }

    serve_support::assert_one_model_switch(&results, &old_digest, &new_digest);

    assert!(
        results
            .iter()
            .all(|result| result["source"] == camera.url().as_str()),
        "every result names the camera"
    );
    assert_eq!(
        serve_support::metric_value(&metrics, "visionfleet_agent_model_swaps_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        serve_support::metric_value(
            &metrics,
            "visionfleet_agent_source_reopens_total{reason=\"config\"}"
        ),
        None,
        "the swap did not reopen the stream:\n{metrics}"
    );
    assert_eq!(
        serve_support::metric_value(&metrics, "visionfleet_agent_stream_up{source=\"rtsp\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        status.success(),
        "the agent exits cleanly on SIGTERM:\n{logs}"
    );
}

fn digest(result: &Value) -> &str {
    result["model_digest"].as_str().expect("a model digest")
}

fn wait_for_results(agent: &Agent, model_digest: &str) {
    wait_for("results of the model from the camera", || {
        let count = agent
            .results()
            .iter()
            .filter(|result| digest(result) == model_digest)
            .count();
        (count >= RESULTS_PER_MODEL).then_some(()).ok_or(format!(
            "{count} results; /readyz: {}",
            agent.get("/readyz").text()
        ))
    });
}
