//! Planted secrets (a model URL signature, a stream password and an MQTT
//! password) are used but never published: not in the logs, the results on
//! stdout and MQTT, `/metrics`, `/results/latest`, `/readyz`, nor on the
//! pod when a cluster is available.

mod common;
mod serve_support;

#[path = "common/rtsp.rs"]
mod rtsp;

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::json;
use serve_support::{
    Agent, ConfigDir, FileServer, Fixtures, Mosquitto, Route, Subscriber, agent_config, digest_of,
    file_source, free_port, wait_for,
};

const MODEL_SIGNATURE: &str = "SECRET123";
const STREAM_PASSWORD: &str = "STREAMPASS456";
const WRONG_STREAM_PASSWORD: &str = "STREAMWRONG999";
const MQTT_PASSWORD: &str = "MQTTPASS789";

fn write_login(dir: &Path, username: &str, password: &str) {
    std::fs::write(dir.join("username"), username).expect("username written");
    std::fs::write(dir.join("password"), format!("{password}\n")).expect("password written");
}

/// A namespace with one pod for the agent to report on, deleted when dropped.
struct PodUnderTest {
    runtime: tokio::runtime::Runtime,
    client: Client,
    namespace: String,
}

impl PodUnderTest {
    /// Creates the pod when `KUBECONFIG` is set, else prints why the pod
    /// part of the test is skipped.
    fn create() -> Option<Self> {
        if std::env::var_os("KUBECONFIG").is_none() {
            eprintln!(
                "\n!!!!!!!! SKIPPED the pod checks: KUBECONFIG is unset; run scripts/local-cluster up and \
                 eval \"$(scripts/local-cluster env)\" to check the pod for secrets too !!!!!!!!\n"
            );
            return None;
        }
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        let client = runtime
            .block_on(Client::try_default())
            .expect("a client from KUBECONFIG");
        let namespace = format!("vf-agent-{}", std::process::id());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);

        let object = Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        runtime
            .block_on(namespaces.create(&PostParams::default(), &object))
            .expect("namespace created");
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("agent-0".to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                // Unscheduled: nothing runs it, and the pod garbage
                // collector leaves pods without a node alone.
                containers: vec![Container {
                    name: "agent".to_owned(),
                    image: Some("visionfleet-agent:test".to_owned()),
                    ..Container::default()
                }],
                scheduler_name: Some("no-such-scheduler".to_owned()),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        wait_for("the pod to be created", || {
            runtime
                .block_on(pods.create(&PostParams::default(), &pod))
                .map(drop)
                .map_err(|error| error.to_string())
        });
        Some(Self {
            runtime,
            client,
            namespace,
        })
    }

    /// Returns the pod's annotations and conditions as JSON text.
    fn published(&self) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pod = self
            .runtime
            .block_on(pods.get("agent-0"))
            .expect("pod readable");
        let conditions = pod
            .status
            .and_then(|status| status.conditions)
            .unwrap_or_default();
        json!({"annotations": pod.metadata.annotations, "conditions": conditions}).to_string()
    }
}

impl Drop for PodUnderTest {
    fn drop(&mut self) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = self
            .runtime
            .block_on(pods.delete("agent-0", &DeleteParams::default().grace_period(0)));
        let _ = self
            .runtime
            .block_on(namespaces.delete(&self.namespace, &DeleteParams::default()));
    }
}

#[test]
fn planted_secrets_never_published() {
    let Some(fixtures) = Fixtures::load() else {
        return;
    };
    let model_path = format!("/models/face.zip?sv=2026-01-01&sig={MODEL_SIGNATURE}");
    let missing_path = format!("/models/missing.zip?sv=2026-01-01&sig={MODEL_SIGNATURE}");
    let server = FileServer::start(BTreeMap::from([(
        model_path.clone(),
        Route {
            status: 200,
            content_type: "application/zip",
            body: std::fs::read(&fixtures.face_model).unwrap(),
        },
    )]));
    let broker_login = ("line-3-agent", MQTT_PASSWORD);
    let broker = Mosquitto::start(free_port(), Some(broker_login));
    let subscriber = Subscriber::start(broker.port, "visionfleet/#", Some(broker_login));
    let camera = rtsp::RtspServer::start(rtsp::ServerConfig {
        credentials: Some(("viewer".to_owned(), STREAM_PASSWORD.to_owned())),
        ..rtsp::ServerConfig::default()
    });

    let secrets = tempfile::tempdir().unwrap();
    let url_file = secrets.path().join("model-url");
    std::fs::write(&url_file, server.url(&model_path)).unwrap();
    let stream_login = secrets.path().join("stream");
    std::fs::create_dir(&stream_login).unwrap();
    write_login(&stream_login, "viewer", STREAM_PASSWORD);
    let mqtt_login = secrets.path().join("mqtt");
    std::fs::create_dir(&mqtt_login).unwrap();
    write_login(&mqtt_login, broker_login.0, broker_login.1);

    let model = json!({"urlFile": url_file});
    let sinks = json!([
        {"type": "Stdout"},
        {"type": "Mqtt", "url": format!("mqtt://127.0.0.1:{}", broker.port), "credentialsDir": mqtt_login},
    ]);
    let mut config = ConfigDir::new(&agent_config(
        model.clone(),
        file_source(&fixtures.frames),
        sinks.clone(),
    ));
    let pod = PodUnderTest::create();
    let mut env = vec![("RUST_LOG", "debug,ort=warn".to_owned())];
    if let Some(pod) = &pod {
        env.push(("POD_NAME", "agent-0".to_owned()));
        env.push(("POD_NAMESPACE", pod.namespace.clone()));
    }
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let agent = Agent::start(&config.path(), &env);

    // The signed URL and the broker password work.
    let digest = digest_of(&fixtures.face_model);
    wait_for("a result of the signed model and an MQTT message", || {
        let latest = agent.get("/results/latest");
        let served = latest.status == 200 && latest.json()["model_digest"] == digest.as_str();
        (served && !subscriber.received().is_empty())
            .then_some(())
            .ok_or(agent.get("/readyz").text())
    });

    // The stream password works.
    let stream = json!({"url": camera.url(), "credentialsDir": stream_login, "maxFps": 1000.0});
    config.update(&agent_config(model, stream, sinks));
    wait_for("frames from the password-protected camera", || {
        let latest = agent.get("/results/latest").json();
        (latest["source"] == camera.url().as_str())
            .then_some(())
            .ok_or(latest.to_string())
    });

    // Failures that quote the URL and the stream.
    write_login(&stream_login, "viewer", WRONG_STREAM_PASSWORD);
    std::fs::write(&url_file, server.url(&missing_path)).unwrap();
    let failing = wait_for("the failed model and stream to be reported", || {
        let response = agent.get("/readyz");
        let body = response.json();
        let model_failed = body["lastError"]
            .as_str()
            .is_some_and(|error| error.starts_with("NotFound: "));
        (model_failed && response.status == 503)
            .then_some(response.text())
            .ok_or(response.text())
    });
    let published = pod.as_ref().map(|pod| {
        wait_for("the pod to show the failure", || {
            let text = pod.published();
            text.contains("NotFound")
                .then_some(text.clone())
                .ok_or(text)
        })
    });

    let outputs = [
        ("log", agent.logs()),
        ("stdout", agent.stdout_text()),
        ("/metrics", agent.get("/metrics").text()),
        ("/results/latest", agent.get("/results/latest").text()),
        ("/readyz", failing),
        (
            "MQTT",
            subscriber
                .received()
                .iter()
                .map(|message| message.payload.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        ("pod", published.unwrap_or_default()),
    ];
    for (name, text) in &outputs {
        for secret in [
            MODEL_SIGNATURE,
            STREAM_PASSWORD,
            WRONG_STREAM_PASSWORD,
            MQTT_PASSWORD,
        ] {
            assert!(
                !text.contains(secret),
                "{secret} appears in the {name}:\n{text}"
            );
        }
    }
    assert!(
        outputs[0].1.contains("sig=REDACTED"),
        "the log names the redacted model URL"
    );
}
