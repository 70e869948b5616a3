//! Publishing the agent's state on its own pod, where the operator reads
//! it: the annotations `visionfleet.dev/model-digest`, `visionfleet.dev/device`,
//! `visionfleet.dev/accelerator-fallback` and `visionfleet.dev/last-error`
//! (absent while healthy), and the pod condition `visionfleet.dev/InferenceReady`.
//!
//! The reporter compares the state with what it last published once a
//! second and writes only on a change, as field manager `visionfleet-agent`.
//! An API error is retried with backoff on this task; inference never
//! waits for it.
//!
//! RBAC: `get` and `patch` on `pods` (annotations) and on `pods/status`
//! (the condition) in the agent's namespace; server-side apply is a PATCH.
//! The chart's agent Role grants these and nothing more on pods.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio::task::JoinHandle;
use visionfleet_api::labels::{
    AGENT_FIELD_MANAGER, POD_CONDITION_INFERENCE_READY, POD_DEVICE_ANNOTATION,
    POD_FALLBACK_ANNOTATION, POD_LAST_ERROR_ANNOTATION, POD_MODEL_DIGEST_ANNOTATION,
};

use super::cluster::Cluster;
use super::config::Identity;
use super::redact::Redactor;
use super::state::AgentState;
use crate::metrics::Metrics;

/// How often the state is compared with the last published one.
const TICK: Duration = Duration::from_secs(1);

/// First delay after a failed write; it doubles up to [`RETRY_MAX`].
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// The agent's state as its pod shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodReport {
    pub annotations: BTreeMap<&'static str, String>,
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

impl PodReport {
    pub fn from_state(state: &AgentState) -> Self {
        let readiness = state.readiness();
        let mut annotations = BTreeMap::new();

        if let Some(model) = state.model() {
            annotations.insert(POD_MODEL_DIGEST_ANNOTATION, model.digest);
            annotations.insert(POD_DEVICE_ANNOTATION, model.device);
            annotations.insert(POD_FALLBACK_ANNOTATION, model.fallback.to_string());
        }
        if let Some(error) = state.last_error() {
            annotations.insert(POD_LAST_ERROR_ANNOTATION, error.to_string());
        }

        Self {
            annotations,
            ready: readiness.ready,
            reason: readiness.reason,
            message: readiness.message,
        }
    }
}

/// The agent's own pod.
#[derive(Debug, Clone)]
struct PodRef {
    name: String,
    namespace: String,
}

/// Starts the reporter. It also keeps the ready gauge current, with or
/// without a pod to publish on.
pub fn spawn(
    state: Arc<AgentState>,
    metrics: Metrics,
    identity: &Identity,
    cluster: Cluster,
    redactor: Redactor,
) -> JoinHandle<()> {
    let pod = match (&identity.pod, &identity.namespace) {
        (Some(name), Some(namespace)) => Some(PodRef {
            name: name.clone(),
            namespace: namespace.clone(),
        }),
        _ => {
            tracing::info!(
                "POD_NAME or POD_NAMESPACE is unset, so the agent reports its state only at /readyz and /metrics"
            );
            None
        }
    };
    tokio::spawn(report_forever(state, metrics, pod, cluster, redactor))
}

async fn report_forever(
    state: Arc<AgentState>,
    metrics: Metrics,
    pod: Option<PodRef>,
    cluster: Cluster,
    redactor: Redactor,
) {
    let mut ticker = tokio::time::interval(TICK);
    let mut published: Option<PodReport> = None;
    let mut transition: Option<(bool, String)> = None;
    let mut retry_at = Instant::now();
    let mut delay = RETRY_INITIAL;

    loop {
        ticker.tick().await;
        let report = PodReport::from_state(&state);
        metrics.set_inference_ready(report.ready);

        let Some(pod) = &pod else {
            continue;
        };
        if published.as_ref() == Some(&report) || Instant::now() < retry_at {
            continue;
        }

        let transition_time = match &transition {
            Some((ready, time)) if *ready == report.ready => time.clone(),
            _ => format!("{:.0}", jiff::Timestamp::now()),
        };
        match publish(&cluster, pod, &report, &transition_time).await {
            Ok(()) => {
                tracing::info!(
                    pod = %pod.name,
                    ready = report.ready,
                    reason = report.reason,
                    "Published the agent state on its pod"
                );
                transition = Some((report.ready, transition_time));
                published = Some(report);
                delay = RETRY_INITIAL;
            }
            Err(error) => {
                tracing::warn!(
                    pod = %pod.name,
                    namespace = %pod.namespace,
                    error = %redactor.redact(&error.to_string()),
                    retry_in_s = delay.as_secs(),
                    "Failed to publish the agent state on its pod"
                );
                retry_at = Instant::now() + delay;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Applies the annotations with server-side apply, which removes the ones
/// the agent applied before and no longer sends, such as a cleared last
/// error. The condition goes through `pods/status` as a strategic merge
/// patch, which merges conditions by `type` and leaves the kubelet's alone.
/// A server-side apply there would not do: before Kubernetes 1.22, managed
/// fields do not tell `pods/status` from the pod, so the agent's status
/// apply would drop the annotations it applied.
async fn publish(
    cluster: &Cluster,
    pod: &PodRef,
    report: &PodReport,
    transition_time: &str,
) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(cluster.client().await?, &pod.namespace);

    let metadata = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.name,
            "annotations": report.annotations,
        },
    });
    let apply = PatchParams::apply(AGENT_FIELD_MANAGER).force();
    pods.patch(&pod.name, &apply, &Patch::Apply(&metadata))
        .await?;

    let status = json!({
        "status": {
            "conditions": [{
                "type": POD_CONDITION_INFERENCE_READY,
                "status": if report.ready { "True" } else { "False" },
                "reason": report.reason,
                "message": report.message,
                "lastTransitionTime": transition_time,
            }],
        },
    });
    let merge = PatchParams {
        field_manager: Some(AGENT_FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    pods.patch_status(&pod.name, &merge, &Patch::Strategic(&status))
        .await?;
    Ok(())
}
