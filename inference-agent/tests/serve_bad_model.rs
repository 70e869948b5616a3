//! A new model that fails to download or verify leaves the serving model
//! in place, and the reason shows at `/readyz` and in the metrics.

mod common;
mod serve_support;

use std::collections::BTreeMap;

use serde_json::json;
use serve_support::{
    Agent, ConfigDir, FileServer, Fixtures, Route, agent_config, digest_of, file_model,
    file_source, wait_for,
};

#[test]
fn bad_model_keeps_old_serving() {
    let Some(fixtures) = Fixtures::load() else {
        return;
    };
    let serving = digest_of(&fixtures.face_model);
    let server = FileServer::start(BTreeMap::from([(
        "/share/model.zip".to_owned(),
        Route {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: b"<!DOCTYPE html><html><body>Sign in to download</body></html>".to_vec(),
        },
    )]));
    let sinks = json!([{"type": "Stdout"}]);
    let mut config = ConfigDir::new(&agent_config(
        file_model(&fixtures.face_model),
        file_source(&fixtures.frames),
        sinks.clone(),
    ));
    let agent = Agent::start(&config.path(), &[]);
    wait_for("the first model to serve", || {
        let response = agent.get("/readyz");
        (response.status == 200)
            .then_some(())
            .ok_or(response.text())
    });

    config.update(&agent_config(
        json!({"url": server.url("/share/model.zip")}),
        file_source(&fixtures.frames),
        sinks.clone(),
    ));
    let html = wait_for("the HTML page to be rejected", || {
        let response = agent.get("/readyz");
        let body = response.json();
        let rejected = body["lastError"]
            .as_str()
            .is_some_and(|error| error.starts_with("HtmlPage: "));
        rejected.then_some(response).ok_or(body.to_string())
    });
    let frame_after_html = agent.get("/results/latest").json()["frame"]
        .as_u64()
        .unwrap();

    config.update(&agent_config(
        json!({
            "url": fixtures.orientation_model.to_str().unwrap(),
            // A pin no cached package has, so the file is read and checked.
            "sha256": "ab".repeat(32),
        }),
        file_source(&fixtures.frames),
        sinks,
    ));
    let mismatch = wait_for("the digest mismatch to be rejected", || {
        let response = agent.get("/readyz");
        let body = response.json();
        let rejected = body["lastError"]
            .as_str()
            .is_some_and(|error| error.starts_with("DigestMismatch: "));
        rejected.then_some(response).ok_or(body.to_string())
    });
    let later = wait_for("frames to keep flowing", || {
        let latest = agent.get("/results/latest").json();
        let frame = latest["frame"].as_u64().unwrap();
        (frame > frame_after_html)
            .then_some(latest)
            .ok_or(frame.to_string())
    });
    let metrics = agent.get("/metrics").text();

    assert_eq!(
        html.status,
        200,
        "the old model keeps the agent ready: {}",
        html.text()
    );
    assert_eq!(html.json()["modelDigest"], serving.as_str());
    assert_eq!(html.json()["reason"], "Serving");
    assert_eq!(mismatch.status, 200, "{}", mismatch.text());
    assert_eq!(mismatch.json()["modelDigest"], serving.as_str());
    assert_eq!(later["model_digest"], serving.as_str());
    assert_eq!(
        serve_support::metric_value(
            &metrics,
            "visionfleet_agent_model_load_failures_total{reason=\"HtmlPage\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        serve_support::metric_value(
            &metrics,
            "visionfleet_agent_model_load_failures_total{reason=\"DigestMismatch\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        serve_support::metric_value(&metrics, "visionfleet_agent_model_swaps_total"),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        agent.logs().contains("Model failed to load"),
        "{}",
        agent.logs()
    );
}
