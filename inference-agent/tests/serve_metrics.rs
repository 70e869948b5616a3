//! `/metrics` of a serving agent passes `promtool check metrics`, and a
//! real Prometheus scrapes it.

mod common;
mod serve_support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;
use serve_support::{
    Agent, ConfigDir, Fixtures, Prometheus, agent_config, file_model, file_source, wait_for,
};

/// Runs `promtool check metrics` on `text` and returns its exit status and output.
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package prometheus)");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("metrics written to promtool");
    let output = child.wait_with_output().expect("promtool finishes");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

fn sample_value(result: &[serde_json::Value]) -> Option<f64> {
    result.first()?["value"][1].as_str()?.parse().ok()
}

#[test]
fn metrics_pass_promtool_and_scrape() {
    let Some(fixtures) = Fixtures::load() else {
        return;
    };
    let config = ConfigDir::new(&agent_config(
        file_model(&fixtures.face_model),
        file_source(&fixtures.frames),
        json!([{"type": "Stdout"}]),
    ));
    let agent = Agent::start(&config.path(), &[]);
    wait_for("faces to be detected", || {
        let text = agent.get("/metrics").text();
        serve_support::metric_value(&text, "visionfleet_agent_detections_total{label=\"face\"}")
            .ok_or(text)
    });

    let response = agent.get("/metrics");
    let text = response.text();
    let (valid, report) = promtool_check(&text);

    assert!(
        response.headers.contains("text/plain; version=0.0.4"),
        "{}",
        response.headers
    );
    assert!(valid, "promtool check metrics failed:\n{report}\n{text}");
    for series in [
        "visionfleet_agent_end_to_end_latency_seconds_count",
        "visionfleet_agent_model_load_duration_seconds_count{phase=\"fetch\"}",
        "visionfleet_agent_model_load_duration_seconds_count{phase=\"compile\"}",
        "visionfleet_agent_model_load_duration_seconds_count{phase=\"warm_up\"}",
        "visionfleet_agent_inference_ready",
        "visionfleet_agent_last_frame_timestamp_seconds",
        "visionfleet_agent_config_reloads_total{result=\"applied\"}",
    ] {
        let value = serve_support::metric_value(&text, series);
        assert!(
            value.is_some_and(|value| value > 0.0),
            "{series} = {value:?}\n{text}"
        );
    }

    let prometheus = Prometheus::start(agent.addr, "visionfleet-agent");
    let up = wait_for("Prometheus to scrape the agent", || {
        let result = prometheus.query("up{job=\"visionfleet-agent\"}");
        sample_value(&result)
            .filter(|value| *value == 1.0)
            .ok_or(format!("{result:?}"))
    });
    let frames = wait_for("the frame counter in Prometheus", || {
        let result = prometheus
            .query("sum(visionfleet_agent_frames_inferred_total{job=\"visionfleet-agent\"})");
        sample_value(&result)
            .filter(|value| *value > 0.0)
            .ok_or(format!("{result:?}"))
    });
    let ready = prometheus.query("visionfleet_agent_inference_ready{job=\"visionfleet-agent\"}");

    assert_eq!(up, 1.0);
    assert!(frames > 0.0);
    assert_eq!(sample_value(&ready), Some(1.0), "{ready:?}");
}
