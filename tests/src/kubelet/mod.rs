//! A fake kubelet for the fake nodes of a [`Fleet`](crate::fleet::Fleet).
//!
//! The local control plane has no kubelet, so nothing would ever run the
//! pods the scheduler binds or renew the nodes' heartbeats. [`FakeKubelet`]
//! runs one task per node that does both, the way a kubelet reports them,
//! and lets a test change what each node does through [`NodeBehaviour`].
//! Nothing is executed: only statuses are written.

mod heartbeat;
mod node_agent;
mod pod_status;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use heartbeat::NODE_LEASE_NAMESPACE;
pub(crate) use heartbeat::{Readiness, node_conditions};
pub(crate) use node_agent::NODE_IP;

use node_agent::NodeAgent;

/// What a fake node and the pods bound to it do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NodeBehaviour {
    /// The node heartbeats and reports Ready; every pod bound to it runs and
    /// is Ready.
    #[default]
    Healthy,
    /// The node is Ready, but every container of its pods keeps exiting:
    /// containers wait in CrashLoopBackOff with `reason` as the last
    /// termination message, and pods are not Ready.
    CrashLooping { reason: String },
    /// The node heartbeats but reports Ready=False with `reason`, as a
    /// kubelet whose container runtime is down does. Its pods are left as
    /// they are.
    NotReady { reason: String },
    /// The node stops heartbeating and leaves its pods alone, as if it lost
    /// power. The node lifecycle controller marks it Unknown and taints it
    /// unreachable after its grace period (40 s by default).
    Offline,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("the fake kubelet does not serve node {node}; call FakeKubelet::start_node first")]
    UnknownNode { node: String },
    #[error("failed to read node {node} before serving it: {source}")]
    NodeUnavailable {
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// Handle to the fake kubelet. Dropping it stops every node's task, which
/// looks to the cluster like all its nodes going offline.
pub struct FakeKubelet {
    client: Client,
    nodes: BTreeMap<String, NodeTask>,
}

impl fmt::Debug for FakeKubelet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("FakeKubelet")
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// One node's task; aborted on drop.
struct NodeTask {
    behaviour: watch::Sender<NodeBehaviour>,
    task: JoinHandle<()>,
}

impl Drop for NodeTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKubelet {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            nodes: BTreeMap::new(),
        }
    }

    /// Starts serving an existing Node as [`NodeBehaviour::Healthy`]. Does
    /// nothing if the node is already served.
    pub async fn start_node(&mut self, node: &str) -> Result<(), KubeletError> {
        if self.nodes.contains_key(node) {
            return Ok(());
        }
        let object = Api::<Node>::all(self.client.clone())
            .get(node)
            .await
            .map_err(|source| KubeletError::NodeUnavailable {
                node: node.to_owned(),
                source,
            })?;

        let (behaviour, receiver) = watch::channel(NodeBehaviour::Healthy);
        let agent = NodeAgent::new(self.client.clone(), object, receiver);
        let task = tokio::spawn(agent.run());
        self.nodes
            .insert(node.to_owned(), NodeTask { behaviour, task });
        Ok(())
    }

    /// Stops serving a node, like its kubelet process exiting. Returns
    /// whether the node was served.
    pub fn stop_node(&mut self, node: &str) -> bool {
        self.nodes.remove(node).is_some()
    }

    /// Changes what a node does. The node's task reports the change at once
    /// and re-syncs every pod bound to the node.
    pub fn set_node_behaviour(
        &self,
        node: &str,
        behaviour: NodeBehaviour,
    ) -> Result<(), KubeletError> {
        let task = self
            .nodes
            .get(node)
            .ok_or_else(|| KubeletError::UnknownNode {
                node: node.to_owned(),
            })?;
        task.behaviour.send_replace(behaviour);
        Ok(())
    }

    /// Names of the nodes this kubelet serves.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }
}
