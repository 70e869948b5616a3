//! Fake Nodes with chosen labels and capacity.
//!
//! The Node objects look like a kubelet registered them (capacity,
//! allocatable, conditions, node info), so the scheduler and the DaemonSet
//! controller treat them as real. Keeping them alive afterwards (heartbeats)
//! and running their pods is the [`FakeKubelet`](crate::kubelet::FakeKubelet)'s job.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Map, Value, json};
use tracing::info;

use crate::kubelet::{NODE_IP, Readiness, node_conditions};
use crate::namespace::{TEST_NAMESPACE_LABEL, TestNamespace};

/// Maximum node name length: the `kubernetes.io/hostname` label contains the
/// node name, and label values are limited to 63 characters.
const MAX_NODE_NAME_LENGTH: usize = 63;

/// Kubelet version the fake nodes report: the control plane's version.
const KUBELET_VERSION: &str = "v1.20.2";

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(
        "node name {name} is {length} characters long, more than the 63 a label value allows; use a shorter suffix"
    )]
    NameTooLong { name: String, length: usize },
    #[error("{action} node {node} failed: {source}")]
    Api {
        action: &'static str,
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// Labels and resources of a fake node. Defaults: 4 CPUs, 8 GiB of memory,
/// 110 pods (the kubelet default), linux/amd64.
#[derive(Debug, Clone)]
pub struct NodeTemplate {
    suffix: String,
    labels: BTreeMap<String, String>,
    capacity: BTreeMap<String, String>,
}

impl NodeTemplate {
    /// Starts a template for a node named `<test namespace>-<suffix>`.
    pub fn new(suffix: impl Into<String>) -> Self {
        let capacity = [
            ("cpu", "4"),
            ("memory", "8Gi"),
            ("pods", "110"),
            ("ephemeral-storage", "100Gi"),
        ];
        Self {
            suffix: suffix.into(),
            labels: BTreeMap::new(),
            capacity: capacity
                .into_iter()
                .map(|(resource, quantity)| (resource.to_owned(), quantity.to_owned()))
                .collect(),
        }
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// CPU capacity as a Kubernetes quantity, e.g. `"4"` or `"1500m"`.
    pub fn cpu(self, quantity: impl Into<String>) -> Self {
        self.resource("cpu", quantity)
    }

    /// Memory capacity as a Kubernetes quantity, e.g. `"8Gi"`.
    pub fn memory(self, quantity: impl Into<String>) -> Self {
        self.resource("memory", quantity)
    }

    pub fn max_pods(self, count: u32) -> Self {
        self.resource("pods", count.to_string())
    }

    /// Capacity (and allocatable) of any resource, such as the extended
    /// resource `gpu.intel.com/i915` that a device plugin would advertise.
    pub fn resource(mut self, name: impl Into<String>, quantity: impl Into<String>) -> Self {
        self.capacity.insert(name.into(), quantity.into());
        self
    }
}

/// Creates and changes the fake nodes of one test. Node names start with the
/// test namespace's name, and every node carries the
/// [`TEST_NAMESPACE_LABEL`], so dropping the [`TestNamespace`] deletes them.
#[derive(Debug, Clone)]
pub struct Fleet {
    nodes: Api<Node>,
    namespace: String,
}

impl Fleet {
    pub fn new(namespace: &TestNamespace) -> Self {
        Self::with_client(namespace.client(), namespace.name())
    }

    pub fn with_client(client: Client, namespace: &str) -> Self {
        Self {
            nodes: Api::all(client),
            namespace: namespace.to_owned(),
        }
    }

    /// Full name of the node created from a template with `suffix`.
    pub fn node_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.namespace)
    }

    /// Registers a Ready node as a kubelet would: creates the Node, then
    /// writes its status (capacity, allocatable, conditions, addresses).
    pub async fn create_node(&self, template: &NodeTemplate) -> Result<Node, FleetError> {
        let name = self.node_name(&template.suffix);
        if name.len() > MAX_NODE_NAME_LENGTH {
            let length = name.len();
            return Err(FleetError::NameTooLong { name, length });
        }

        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(self.node_labels(&name, template)),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: None,
        };
        self.nodes
            .create(&PostParams::default(), &node)
            .await
            .map_err(api_error("create", &name))?;

        let status = node_status(&name, template);
        let node = self
            .nodes
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .map_err(api_error("write status of", &name))?;
        info!(node = %name, labels = ?template.labels, "Created fake node");
        Ok(node)
    }

    /// Sets (`Some`) or removes (`None`) node labels with a merge patch.
    pub async fn relabel(
        &self,
        node: &str,
        changes: &[(&str, Option<&str>)],
    ) -> Result<Node, FleetError> {
        let labels: Map<String, Value> = changes
            .iter()
            .map(|(key, value)| {
                (
                    (*key).to_owned(),
                    value.map_or(Value::Null, |value| json!(value)),
                )
            })
            .collect();
        let node_object = self
            .nodes
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "labels": labels } })),
            )
            .await
            .map_err(api_error("relabel", node))?;
        info!(node, ?changes, "Relabelled fake node");
        Ok(node_object)
    }

    /// Deletes a node. Pods bound to it are left to the pod garbage
    /// collector, which deletes them once the node is gone.
    pub async fn delete_node(&self, node: &str) -> Result<(), FleetError> {
        self.nodes
            .delete(node, &DeleteParams::default())
            .await
            .map_err(api_error("delete", node))?;
        info!(node, "Deleted fake node");
        Ok(())
    }

    pub async fn get_node(&self, node: &str) -> Result<Node, FleetError> {
        self.nodes.get(node).await.map_err(api_error("read", node))
    }

    /// This test's nodes, in name order.
    pub async fn list_nodes(&self) -> Result<Vec<Node>, FleetError> {
        let selector =
            ListParams::default().labels(&format!("{TEST_NAMESPACE_LABEL}={}", self.namespace));
        let list = self.nodes.list(&selector).await.map_err(api_error(
            "list",
            &format!("{TEST_NAMESPACE_LABEL}={}", self.namespace),
        ))?;
        Ok(list.items)
    }

    /// Returns the template's labels plus the well-known labels a kubelet sets.
    fn node_labels(&self, name: &str, template: &NodeTemplate) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_owned(), name.to_owned()),
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            ("kubernetes.io/arch".to_owned(), "amd64".to_owned()),
            (TEST_NAMESPACE_LABEL.to_owned(), self.namespace.clone()),
        ]);
        labels.extend(template.labels.clone());
        labels
    }
}

fn api_error<'a>(
    action: &'static str,
    node: &'a str,
) -> impl FnOnce(kube::Error) -> FleetError + 'a {
    move |source| FleetError::Api {
        action,
        node: node.to_owned(),
        source,
    }
}

fn node_status(name: &str, template: &NodeTemplate) -> NodeStatus {
    let capacity: BTreeMap<String, Quantity> = template
        .capacity
        .iter()
        .map(|(resource, quantity)| (resource.clone(), Quantity(quantity.clone())))
        .collect();

    NodeStatus {
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        conditions: Some(node_conditions(&Readiness::Ready, &[], Timestamp::now())),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_owned(),
                address: NODE_IP.to_owned(),
            },
            NodeAddress {
                type_: "Hostname".to_owned(),
                address: name.to_owned(),
            },
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".to_owned(),
            operating_system: "linux".to_owned(),
            os_image: "VisionFleet fake node".to_owned(),
            kernel_version: "6.1.0".to_owned(),
            kubelet_version: KUBELET_VERSION.to_owned(),
            kube_proxy_version: KUBELET_VERSION.to_owned(),
            container_runtime_version: "visionfleet-e2e://0.1.0".to_owned(),
            machine_id: name.to_owned(),
            system_uuid: name.to_owned(),
            boot_id: name.to_owned(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}
