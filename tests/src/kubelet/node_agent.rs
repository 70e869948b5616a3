//! The fake kubelet of one node: a task that heartbeats the node and updates
//! the pods bound to it.

use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::NodeBehaviour;
use super::heartbeat::{self, Readiness};
use super::pod_status::{self, PodBehaviour};
use crate::FIELD_MANAGER;

/// Time between heartbeats. A real kubelet renews its Lease every 10 s; a
/// shorter period brings a node back to Ready sooner after a test flips it.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// Host IP reported for every fake node and its pods.
pub(crate) const NODE_IP: &str = "127.0.0.1";

pub(crate) struct NodeAgent {
    client: Client,
    node: Node,
    behaviour: watch::Receiver<NodeBehaviour>,
}

impl NodeAgent {
    pub(crate) fn new(
        client: Client,
        node: Node,
        behaviour: watch::Receiver<NodeBehaviour>,
    ) -> Self {
        Self {
            client,
            node,
            behaviour,
        }
    }

    fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }

    /// Runs until the task is aborted or the behaviour sender is dropped.
    pub(crate) async fn run(mut self) {
        let (store, writer) = reflector::store();
        let config = watcher::Config::default().fields(&format!("spec.nodeName={}", self.name()));
        let pod_stream = watcher(Api::<Pod>::all(self.client.clone()), config)
            .default_backoff()
            .reflect(writer)
            .applied_objects();
        let mut pod_stream = pin!(pod_stream);
        let mut heartbeat_timer = tokio::time::interval(HEARTBEAT_INTERVAL);
        heartbeat_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!(node = %self.name(), "Fake kubelet started");

        loop {
            tokio::select! {
                event = pod_stream.next() => match event {
                    Some(Ok(pod)) => self.sync_pod(&pod).await,
                    Some(Err(error)) => warn!(node = %self.name(), %error, "Pod watch failed; retrying"),
                    None => return,
                },
                _ = heartbeat_timer.tick() => self.heartbeat().await,
                changed = self.behaviour.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.apply_new_behaviour(&store).await;
                }
            }
        }
    }

    fn current_behaviour(&self) -> NodeBehaviour {
        self.behaviour.borrow().clone()
    }

    async fn apply_new_behaviour(&self, store: &Store<Pod>) {
        info!(node = %self.name(), behaviour = ?self.current_behaviour(), "Node behaviour changed");
        self.heartbeat().await;
        for pod in store.state() {
            self.sync_pod(&pod).await;
        }
    }

    /// Renews the Lease and reports the node's conditions, unless the node
    /// is offline.
    async fn heartbeat(&self) {
        let readiness = match self.current_behaviour() {
            NodeBehaviour::Offline => return,
            NodeBehaviour::NotReady { reason } => Readiness::NotReady { reason },
            NodeBehaviour::Healthy | NodeBehaviour::CrashLooping { .. } => Readiness::Ready,
        };

        if let Err(error) = heartbeat::renew_lease(&self.client, &self.node).await {
            warn!(node = %self.name(), %error, "Failed to renew node lease");
        }
        if let Err(error) =
            heartbeat::report_conditions(&self.client, self.name(), &readiness).await
        {
            warn!(node = %self.name(), %error, "Failed to report node conditions");
        }
    }

    /// Brings one pod in line with the node's behaviour: confirms its
    /// deletion once the apiserver marked it terminating, or reports its
    /// containers running or crash-looping. Offline and NotReady nodes leave
    /// their pods alone, as a kubelet without a working runtime would.
    async fn sync_pod(&self, pod: &Pod) {
        let pod_behaviour = match self.current_behaviour() {
            NodeBehaviour::Healthy => PodBehaviour::Running,
            NodeBehaviour::CrashLooping { reason } => PodBehaviour::CrashLooping { reason },
            NodeBehaviour::NotReady { .. } | NodeBehaviour::Offline => return,
        };
        let phase = pod
            .status
            .as_ref()
            .and_then(|status| status.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return;
        }

        let result = if pod.metadata.deletion_timestamp.is_some() {
            self.confirm_deletion(pod).await
        } else if pod_status::is_current(pod, &pod_behaviour) {
            Ok(())
        } else {
            self.report_status(pod, &pod_behaviour).await
        };
        if let Err(error) = result {
            warn!(node = %self.name(), pod = %pod.name_any(), %error, "Failed to update pod");
        }
    }

    /// Deletes the pod with grace period 0, as a kubelet does after its
    /// containers stopped. Without this, terminating pods stay forever.
    async fn confirm_deletion(&self, pod: &Pod) -> Result<(), kube::Error> {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.pods(pod).delete(&pod.name_any(), &params).await {
            Ok(_) => {
                debug!(node = %self.name(), pod = %pod.name_any(), "Confirmed pod deletion");
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.is_not_found() || status.is_conflict() => {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    async fn report_status(&self, pod: &Pod, behaviour: &PodBehaviour) -> Result<(), kube::Error> {
        let status = pod_status::desired_status(pod, behaviour, NODE_IP, Timestamp::now());
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        self.pods(pod)
            .patch_status(
                &pod.name_any(),
                &params,
                &Patch::Merge(json!({ "status": status })),
            )
            .await?;
        debug!(node = %self.name(), pod = %pod.name_any(), ?behaviour, "Reported pod status");
        Ok(())
    }

    fn pods(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default())
    }
}
