//! The MQTT sink against a real mosquitto broker on 127.0.0.1: the
//! messages-per-minute cap, the objects-of-interest filter, credentials
//! from a Secret folder, reconnecting to a broker that starts late, and
//! `mqtts` with a certificate from a test CA.

mod common;
mod serve_support;

use std::time::Instant;

use serde_json::{Value, json};
use serve_support::{
    Agent, ConfigDir, Fixtures, Mosquitto, Subscriber, TestCertificates, agent_config, file_model,
    file_source, free_port, wait_for,
};

const TOPIC: &str = "visionfleet/plant-7/line-3/edge-7";

fn mqtt_config(model: Value, source: Value, port: u16, per_minute: u32) -> Value {
    let mut config = agent_config(
        model,
        source,
        json!([{"type": "Stdout"}, {"type": "Mqtt", "url": format!("mqtt://127.0.0.1:{port}")}]),
    );
    config["output"]["messagesPerMinute"] = json!(per_minute);
    config
}

#[test]
fn mqtt_rate_cap_bounds_messages() {
    let Some(fixtures) = Fixtures::load() else {
        return;
    };
    let broker = Mosquitto::start(free_port(), None);
    let subscriber = Subscriber::start(broker.port, "visionfleet/#", None);
    // Every frame has a prediction at threshold 0, so every frame is of interest.
    let mut config = mqtt_config(
        file_model(&fixtures.orientation_model),
        file_source(&fixtures.frames),
        broker.port,
        60,
    );
    config["inference"]["confidenceThreshold"] = json!(0.0);
    let config = ConfigDir::new(&config);

    let started = Instant::now();
    let agent = Agent::start(&config.path(), &[("NODE_NAME", "edge-7")]);
    wait_for("messages and drops by the cap", || {
        let dropped =
            agent.metric("visionfleet_agent_mqtt_messages_dropped_total{reason=\"rate_cap\"}");
        let received = subscriber.received().len();
        (received >= 3 && dropped.is_some_and(|dropped| dropped > 0.0))
            .then_some(())
            .ok_or(format!("received {received}, dropped {dropped:?}"))
    });
    let received = subscriber.received();
    let window = started.elapsed().as_secs_f64();
    let sent = agent.metric("visionfleet_agent_mqtt_messages_sent_total");

    // 60 a minute is one a second: a window of t seconds admits at most 1 + t.
    let allowed = 1 + window.floor() as usize;
    assert!(
        received.len() <= allowed,
        "{} messages in {window:.1} s, at most {allowed} allowed",
        received.len()
    );
    assert!(
        received.iter().all(|message| message.topic == TOPIC),
        "{:?}",
        received[0].topic
    );
    assert!(
        sent.is_some_and(|sent| sent >= received.len() as f64),
        "sent {sent:?}"
    );
    assert!(
        agent.results().len() > received.len(),
        "stdout gets every result"
    );
}

#[test]
fn mqtt_sends_only_frames_of_interest() {
    let Some(fixtures) = Fixtures::load() else {
        return;
    };
    let broker = Mosquitto::start(free_port(), None);
    let subscriber = Subscriber::start(broker.port, "visionfleet/#", None);
    let mut config = mqtt_config(
        file_model(&fixtures.face_model),
        file_source(&fixtures.frames),
        broker.port,
        6000,
    );
    config["inference"]["objectsOfInterest"] = json!(["face"]);
    let config = ConfigDir::new(&config);

    let agent = Agent::start(&config.path(), &[("NODE_NAME", "edge-7")]);
    wait_for("four face messages", || {
        let received = subscriber.received().len();
        (received >= 4).then_some(()).ok_or(received.to_string())
    });
    let received = subscriber.received();
    let results = agent.results();

    for message in &received {
        let predictions = message.payload["predictions"]
            .as_array()
            .expect("predictions");
        assert!(!predictions.is_empty(), "{}", message.payload);
        assert!(
            predictions
                .iter()
                .all(|prediction| prediction["label"] == "face"),
            "{}",
            message.payload
        );
    }
    let without_faces = results
        .iter()
        .filter(|result| result["predictions"].as_array().is_some_and(Vec::is_empty))
        .count();
    assert!(without_faces > 0, "frames without a face reach stdout");
    let with_faces = results.len() - without_faces;
    assert!(
        received.len() <= with_faces + 1,
        "{} messages for {with_faces} frames with faces",
        received.len()
    );
}

#[test]
fn mqtt_credentials_from_secret_folder() {
    let Some(fixtures) = Fixtures::load() else {
        return;
    };
    let login = ("line-3-agent", "broker-password-7");
    let broker = Mosquitto::start(free_port(), Some(login));
    let subscriber = Subscriber::start(broker.port, "visionfleet/#", Some(login));
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("username"), login.0).unwrap();
    std::fs::write(secret.path().join("password"), format!("{}\n", login.1)).unwrap();
    let mut config = mqtt_config(
        file_model(&fixtures.face_model),
        file_source(&fixtures.frames),
        broker.port,
        6000,
    );
    config["output"]["sinks"][1]["credentialsDir"] = json!(secret.path());
    let config = ConfigDir::new(&config);

    let agent = Agent::start(&config.path(), &[("NODE_NAME", "edge-7")]);
    wait_for("a message through the password-protected broker", || {
        let received = subscriber.received().len();
        (received >= 1).then_some(()).ok_or(agent.logs())
    });

    assert!(agent.logs().contains("Connected to the MQTT broker"));
}

#[test]
fn mqtt_reconnects_without_blocking_frames() {
    let Some(fixtures) = Fixtures::load() else {
        return;
    };
    let port = free_port();
    let config = ConfigDir::new(&mqtt_config(
        file_model(&fixtures.face_model),
        file_source(&fixtures.frames),
        port,
        6000,
    ));

    let agent = Agent::start(&config.path(), &[("NODE_NAME", "edge-7")]);
    let frames_before_broker = wait_for("frames while the broker is down", || {
        let count = agent.results().len();
        (count >= 10).then_some(count).ok_or(count.to_string())
    });
    let broker = Mosquitto::start(port, None);
    let subscriber = Subscriber::start(broker.port, "visionfleet/#", None);
    wait_for("a message after the broker started", || {
        let received = subscriber.received().len();
        (received >= 1).then_some(()).ok_or(received.to_string())
    });

    assert!(frames_before_broker >= 10);
    assert!(
        agent.logs().contains("MQTT broker unreachable"),
        "{}",
        agent.logs()
    );
    assert!(
        agent.logs().contains("Connected to the MQTT broker"),
        "{}",
        agent.logs()
    );
}

#[test]
fn mqtts_verifies_broker_certificate() {
    let Some(fixtures) = Fixtures::load() else {
        return;
    };
    let certificates = TestCertificates::create();
    let tls_port = free_port();
    let broker = Mosquitto::start_with_tls(free_port(), None, Some((tls_port, &certificates)));
    let subscriber = Subscriber::start(broker.port, "visionfleet/#", None);
    let mut config = agent_config(
        file_model(&fixtures.face_model),
        file_source(&fixtures.frames),
        json!([{"type": "Mqtt", "url": format!("mqtts://127.0.0.1:{tls_port}")}]),
    );
    config["output"]["messagesPerMinute"] = json!(6000);
    let config = ConfigDir::new(&config);

    // The test CA is the only trusted root, as a private CA in a pod would be.
    let ca = certificates.ca_certificate.to_str().unwrap();
    let agent = Agent::start(
        &config.path(),
        &[("NODE_NAME", "edge-7"), ("SSL_CERT_FILE", ca)],
    );
    wait_for("a message over mqtts", || {
        let received = subscriber.received().len();
        (received >= 1).then_some(()).ok_or(agent.logs())
    });

    // Without the test CA, the system roots do not trust the broker.
    let untrusting = Agent::start(&config.path(), &[("NODE_NAME", "edge-8")]);
    let rejected = wait_for("the untrusted certificate to be rejected", || {
        let logs = untrusting.logs();
        logs.lines()
            .find(|line| line.contains("MQTT broker unreachable"))
            .map(str::to_owned)
            .ok_or(logs)
    });

    assert_eq!(subscriber.received()[0].topic, TOPIC);
    assert!(rejected.contains("certificate"), "{rejected}");
    assert!(
        subscriber
            .received()
            .iter()
            .all(|message| message.topic != "visionfleet/plant-7/line-3/edge-8"),
        "no message without a trusted certificate"
    );
}
