//! The agent publishes its state on its own pod in a real kube-apiserver
//! (`scripts/local-cluster up`, then `eval "$(scripts/local-cluster env)"`):
//! the model digest, device, fallback and last-error annotations and the
//! `visionfleet.dev/InferenceReady` condition. The source comes from the
//! node's override annotation. Without `KUBECONFIG` the test is skipped.

mod common;
mod serve_support;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Container, Namespace, Node, Pod, PodSpec};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::json;
use serve_support::{
    Agent, ConfigDir, FileServer, Fixtures, Route, agent_config, digest_of, file_model, wait_for,
};
use visionfleet_api::labels::{
    POD_CONDITION_INFERENCE_READY, POD_DEVICE_ANNOTATION, POD_FALLBACK_ANNOTATION,
    POD_LAST_ERROR_ANNOTATION, POD_MODEL_DIGEST_ANNOTATION,
};

const OVERRIDE_ANNOTATION: &str = "visionfleet.dev/camera-url";

/// A namespace and a node made for one test, deleted when dropped.
struct ClusterObjects {
    runtime: tokio::runtime::Runtime,
    client: Client,
    namespace: String,
    node: String,
}

impl Drop for ClusterObjects {
    fn drop(&mut self) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let nodes: Api<Node> = Api::all(self.client.clone());
        // No kubelet confirms a graceful deletion here, so the pod goes at once.
        let _ = self
            .runtime
            .block_on(pods.delete("agent-0", &DeleteParams::default().grace_period(0)));
        let _ = self
            .runtime
            .block_on(namespaces.delete(&self.namespace, &DeleteParams::default()));
        let _ = self
            .runtime
            .block_on(nodes.delete(&self.node, &DeleteParams::default()));
    }
}

/// Returns a client when `KUBECONFIG` names a cluster, else prints why the
/// test is skipped.
fn cluster() -> Option<(tokio::runtime::Runtime, Client)> {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!(
            "\n!!!!!!!! SKIPPED: KUBECONFIG is unset; run scripts/local-cluster up and \
             eval \"$(scripts/local-cluster env)\" to test pod state on a real kube-apiserver !!!!!!!!\n"
        );
        return None;
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let client = runtime
        .block_on(Client::try_default())
        .expect("a client from KUBECONFIG");
    Some((runtime, client))
}

/// Creates the namespace, a node whose override annotation names `source`,
/// and a pod bound to that node. The local cluster has no kubelet, so
/// nothing runs the pod. A pod bound to a node that does not exist would
/// be deleted by the pod garbage collector within a minute.
fn create_objects(
    runtime: tokio::runtime::Runtime,
    client: Client,
    source: &str,
) -> ClusterObjects {
    let suffix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
        % 1_000_000_000;
    let objects = ClusterObjects {
        namespace: format!("vf-agent-{suffix}"),
        node: format!("vf-agent-node-{suffix}"),
        runtime,
        client,
    };
    let namespaces: Api<Namespace> = Api::all(objects.client.clone());
    let nodes: Api<Node> = Api::all(objects.client.clone());
    let pods: Api<Pod> = Api::namespaced(objects.client.clone(), &objects.namespace);

    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(objects.namespace.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    objects
        .runtime
        .block_on(namespaces.create(&PostParams::default(), &namespace))
        .expect("namespace created");
    let node = Node {
        metadata: ObjectMeta {
            name: Some(objects.node.clone()),
            annotations: Some(BTreeMap::from([(
                OVERRIDE_ANNOTATION.to_owned(),
                source.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    objects
        .runtime
        .block_on(nodes.create(&PostParams::default(), &node))
        .expect("node created");

    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("agent-0".to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(objects.node.clone()),
            containers: vec![Container {
                name: "agent".to_owned(),
                image: Some("visionfleet-agent:test".to_owned()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    // The namespace's default service account, which pod admission needs,
    // appears a moment after the namespace.
    wait_for("the pod to be created", || {
        objects
            .runtime
            .block_on(pods.create(&PostParams::default(), &pod))
            .map(drop)
            .map_err(|error| error.to_string())
    });
    objects
}

/// Returns the agent's annotations and the InferenceReady condition's
/// status and reason.
fn pod_state(objects: &ClusterObjects) -> (BTreeMap<String, String>, Option<(String, String)>) {
    let pods: Api<Pod> = Api::namespaced(objects.client.clone(), &objects.namespace);
    let pod = objects
        .runtime
        .block_on(pods.get("agent-0"))
        .expect("pod readable");
    let annotations = pod.metadata.annotations.unwrap_or_default();
    let condition = pod
        .status
        .and_then(|status| status.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|condition| condition.type_ == POD_CONDITION_INFERENCE_READY)
        .map(|condition| (condition.status, condition.reason.unwrap_or_default()));
    (annotations, condition)
}

#[test]
fn pod_state_published_on_apiserver() {
    let Some(fixtures) = Fixtures::load() else {
        return;
    };
    let Some((runtime, client)) = cluster() else {
        return;
    };
    let objects = create_objects(runtime, client, fixtures.frames.to_str().unwrap());
    let digest = digest_of(&fixtures.face_model);
    let server = FileServer::start(BTreeMap::from([(
        "/model.zip".to_owned(),
        Route {
            status: 200,
            content_type: "text/html",
            body: b"<html><body>Not a model</body></html>".to_vec(),
        },
    )]));
    let source = json!({
        "file": "/nonexistent/default-camera.mp4",
        "nodeOverrideAnnotation": OVERRIDE_ANNOTATION,
        "maxFps": 1000.0,
    });
    let sinks = json!([{"type": "Stdout"}]);
    let mut config = ConfigDir::new(&agent_config(
        file_model(&fixtures.face_model),
        source.clone(),
        sinks.clone(),
    ));

    let agent = Agent::start(
        &config.path(),
        &[
            ("POD_NAME", "agent-0"),
            ("POD_NAMESPACE", &objects.namespace),
            ("NODE_NAME", &objects.node),
        ],
    );
    let (serving, ready) = wait_for("the pod to show the serving model", || {
        let (annotations, condition) = pod_state(&objects);
        let serving = annotations.get(POD_MODEL_DIGEST_ANNOTATION) == Some(&digest)
            && condition
                .as_ref()
                .is_some_and(|(status, _)| status == "True");
        serving
            .then(|| (annotations.clone(), condition.clone()))
            .ok_or(format!("{annotations:?} {condition:?}"))
    });

    config.update(&agent_config(
        json!({"url": server.url("/model.zip")}),
        source,
        sinks,
    ));
    let (failed, still_ready) = wait_for("the pod to show the failed swap", || {
        let (annotations, condition) = pod_state(&objects);
        annotations
            .get(POD_LAST_ERROR_ANNOTATION)
            .is_some_and(|error| error.starts_with("HtmlPage: "))
            .then(|| (annotations.clone(), condition.clone()))
            .ok_or(format!("{annotations:?} {condition:?}"))
    });
    let results = agent.results();

    assert_eq!(
        serving.get(POD_DEVICE_ANNOTATION).map(String::as_str),
        Some("CPU")
    );
    assert_eq!(
        serving.get(POD_FALLBACK_ANNOTATION).map(String::as_str),
        Some("false")
    );
    assert!(
        !serving.contains_key(POD_LAST_ERROR_ANNOTATION),
        "{serving:?}"
    );
    assert_eq!(ready, Some(("True".to_owned(), "Serving".to_owned())));
    assert_eq!(
        failed.get(POD_MODEL_DIGEST_ANNOTATION),
        Some(&digest),
        "the old model still serves"
    );
    assert_eq!(still_ready, Some(("True".to_owned(), "Serving".to_owned())));
    assert_eq!(
        results[0]["source"],
        fixtures.frames.to_str().unwrap(),
        "the node's override annotation replaced the configured source"
    );
}
