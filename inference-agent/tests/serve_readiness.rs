//! `/readyz` follows the stream: 503 before the first frame, 200 while
//! frames flow, and 503 again once they stop for the stall timeout (2 s in
//! these tests). `/healthz`, `/results/latest` and `/snapshot.jpg` along
//! the way.

mod common;
mod serve_support;

use serde_json::json;
use serve_support::{Agent, ConfigDir, Fixtures, agent_config, file_model, file_source, wait_for};

#[test]
fn readyz_follows_stream() {
    let Some(fixtures) = Fixtures::load() else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let video = scratch.path().join("camera.mp4");
    let config = ConfigDir::new(&agent_config(
        file_model(&fixtures.face_model),
        file_source(&video),
        json!([{"type": "Stdout"}]),
    ));
    let agent = Agent::start(&config.path(), &[]);

    let before = agent.get("/readyz");
    let no_result = agent.get("/results/latest");
    let no_snapshot = agent.get("/snapshot.jpg");
    let waiting = wait_for("the model to load while the source is missing", || {
        let response = agent.get("/readyz");
        (response.json()["reason"] == "WaitingForFrames")
            .then_some(response.clone())
            .ok_or(response.text())
    });

    std::fs::copy(&fixtures.video, &video).unwrap();
    let flowing = wait_for("frames to flow", || {
        let response = agent.get("/readyz");
        (response.status == 200)
            .then_some(response.clone())
            .ok_or(response.text())
    });
    let latest = wait_for("a result", || {
        let response = agent.get("/results/latest");
        (response.status == 200)
            .then(|| response.json())
            .ok_or(response.text())
    });
    let snapshot = agent.get("/snapshot.jpg");
    let healthy = agent.get("/healthz");

    std::fs::remove_file(&video).unwrap();
    let stalled = wait_for("readiness to drop after the file is gone", || {
        let response = agent.get("/readyz");
        (response.status == 503)
            .then_some(response.clone())
            .ok_or(response.text())
    });
    let still_alive = agent.get("/healthz");

    assert_eq!(before.status, 503, "{}", before.text());
    assert_eq!(no_result.status, 404);
    assert_eq!(no_snapshot.status, 404);
    assert_eq!(waiting.status, 503);
    assert!(
        waiting.json()["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("SourceNotFound: ")),
        "{}",
        waiting.text()
    );
    assert_eq!(flowing.json()["reason"], "Serving");
    assert_eq!(latest["source"], video.to_str().unwrap());
    assert_eq!(latest["task"], "ObjectDetection");
    assert_eq!(snapshot.status, 200);
    assert!(
        snapshot.headers.contains("image/jpeg"),
        "{}",
        snapshot.headers
    );
    let image = image::load_from_memory(&snapshot.body).unwrap();
    assert_eq!((image.width(), image.height()), (640, 480));
    assert_eq!(healthy.status, 200);
    assert_eq!(
        stalled.json()["reason"],
        "FramesStalled",
        "{}",
        stalled.text()
    );
    assert_eq!(
        still_alive.status, 200,
        "a missing source is not a wedged loop"
    );
}
