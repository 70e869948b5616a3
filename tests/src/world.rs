//! One test's world for operator tests: a namespace with its own
//! operator, fake nodes, a fake kubelet and a model server holding real
//! Custom Vision exports from `assets/`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use sha2::{Digest, Sha256};
use visionfleet_api::labels::{
    CONFIG_HASH_ANNOTATION, POD_DEVICE_ANNOTATION, POD_FALLBACK_ANNOTATION, VISION_MODEL_LABEL,
};
use visionfleet_api::{VisionModel, VisionModelStatus};

use crate::crd::{install_crd, repository_root};
use crate::model_server::{ModelServer, Served};
use crate::namespace::TEST_NAMESPACE_LABEL;
use crate::operator::TestOperator;
use crate::{FakeKubelet, Fleet, NodeTemplate, TestCluster, TestNamespace, Unmet, wait_for};

/// Generous bound for the controllers to converge; not a latency assertion.
pub const CONVERGE: Duration = Duration::from_secs(120);

pub const ROLE_LABEL: &str = "e2e.visionfleet.dev/role";
const GPU_LABEL: &str = "intel.feature.node.kubernetes.io/gpu";
const GPU_RESOURCE: &str = "gpu.intel.com/i915";

/// One test's world: a namespace with its own operator, fake nodes, a fake
/// kubelet and a model server holding two real Custom Vision exports.
#[derive(Debug)]
pub struct World {
    pub namespace: TestNamespace,
    pub fleet: Fleet,
    pub kubelet: FakeKubelet,
    pub server: ModelServer,
    pub operator: TestOperator,
    pub models: Api<VisionModel>,
    pub daemon_sets: Api<DaemonSet>,
    pub config_maps: Api<ConfigMap>,
    pub pods: Api<Pod>,
}

impl World {
    pub async fn start(test_name: &str) -> Result<Self> {
        let cluster = TestCluster::connect().await?;
        install_crd(&cluster.client()).await?;
        let namespace = cluster.namespace(test_name).await?;
        let client = namespace.client();

        let agents: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace.name());
        let account =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "visionfleet-agent"}}))?;
        agents.create(&PostParams::default(), &account).await?;

        let server = ModelServer::start().await?;
        for fixture in ["face-detection-s1.zip", "orientation-classification.zip"] {
            server.set(fixture, Served::File(fixture_bytes(fixture)?.into()));
        }
        server.set("login.zip", Served::HtmlPage);

        let operator = TestOperator::start(client.clone(), namespace.name())?;
        Ok(Self {
            fleet: Fleet::new(&namespace),
            kubelet: FakeKubelet::new(client.clone()),
            server,
            operator,
            models: Api::namespaced(client.clone(), namespace.name()),
            daemon_sets: Api::namespaced(client.clone(), namespace.name()),
            config_maps: Api::namespaced(client.clone(), namespace.name()),
            pods: Api::namespaced(client, namespace.name()),
            namespace,
        })
    }

    /// Creates a fake node of this test, with `role` and optional extra
    /// labels and resources, and starts its kubelet.
    pub async fn add_node(&mut self, suffix: &str, role: &str, gpu: bool) -> Result<String> {
        let mut template = NodeTemplate::new(suffix).label(ROLE_LABEL, role);
        if gpu {
            template = template
                .label(GPU_LABEL, "true")
                .resource(GPU_RESOURCE, "1");
        }

        self.add_node_from(&template).await
    }

    /// Creates a fake node from `template` and starts its kubelet.
    pub async fn add_node_from(&mut self, template: &NodeTemplate) -> Result<String> {
        let node = self.fleet.create_node(template).await?;
        self.kubelet.start_node(&node.name_any()).await?;
        Ok(node.name_any())
    }

    /// Applies a VisionModel that selects this test's nodes with `role`.
    pub async fn apply_model(&self, name: &str, model_path: &str, extra_spec: &str) -> Result<()> {
        let yaml = format!(
            "apiVersion: visionfleet.dev/v1alpha1\nkind: VisionModel\nmetadata: {{name: {name}}}\nspec:\n  \
             model: {{url: \"{url}\"}}\n  nodeSelector:\n    matchLabels: {{{TEST_NAMESPACE_LABEL}: {namespace}, {ROLE_LABEL}: camera}}\n  \
             source: {{url: \"rtsp://camera.local:554/stream1\"}}\n{extra_spec}",
            url = self.server.url(model_path),
            namespace = self.namespace.name(),
        );
        let body: serde_json::Value = serde_norway::from_str(&yaml)?;
        self.models
            .patch(
                name,
                &PatchParams::apply("e2e-test").force(),
                &Patch::Apply(body),
            )
            .await?;
        Ok(())
    }

    /// Waits until the VisionModel's status satisfies `check`, which
    /// returns a description of what it saw when it does not.
    pub async fn wait_for_status(
        &self,
        name: &str,
        description: &str,
        check: impl Fn(&VisionModelStatus) -> Result<(), String>,
    ) -> Result<VisionModelStatus> {
        let status = wait_for(description, CONVERGE, || async {
            let model = self.models.get(name).await.map_err(Unmet::fatal)?;
            let status = model.status.unwrap_or_default();
            match check(&status) {
                Ok(()) => Ok(status),
                Err(observed) => Err(Unmet::pending(observed)),
            }
        })
        .await?;
        Ok(status)
    }

    /// Returns the agent pods of a VisionModel, keyed by node name.
    pub async fn agent_pods(&self, name: &str) -> Result<BTreeMap<String, Pod>> {
        let pods = self
            .pods
            .list(&ListParams::default().labels(&format!("{VISION_MODEL_LABEL}={name}")))
            .await?;
        Ok(pods
            .items
            .into_iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .filter_map(|pod| Some((pod.spec.as_ref()?.node_name.clone()?, pod)))
            .collect())
    }

    /// Waits until the agent pods sit exactly on `nodes`, all Ready.
    pub async fn wait_for_ready_agents_on(
        &self,
        name: &str,
        nodes: &[&String],
    ) -> Result<BTreeMap<String, Pod>> {
        let mut expected: Vec<&str> = nodes.iter().map(|node| node.as_str()).collect();
        expected.sort();
        let description = format!("ready agent pods on exactly {expected:?}");

        let pods = wait_for(&description, CONVERGE, || async {
            let pods = self.agent_pods(name).await.map_err(Unmet::fatal)?;
            let ready: Vec<&str> = pods
                .iter()
                .filter(|(_, pod)| is_ready(pod))
                .map(|(node, _)| node.as_str())
                .collect();
            if ready == expected && pods.len() == expected.len() {
                Ok(pods)
            } else {
                Err(Unmet::pending(format!(
                    "pods on {:?}, ready on {ready:?}",
                    pods.keys().collect::<Vec<_>>()
                )))
            }
        })
        .await?;
        Ok(pods)
    }

    /// Writes on a pod what its agent would report.
    pub async fn report_as_agent(&self, pod: &Pod, device: &str, fallback: bool) -> Result<()> {
        let patch = serde_json::json!({"metadata": {"annotations": {
            POD_DEVICE_ANNOTATION: device,
            POD_FALLBACK_ANNOTATION: fallback.to_string(),
        }}});
        self.pods
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
        Ok(())
    }

    pub async fn model_objects(&self, name: &str) -> Result<(Vec<DaemonSet>, Vec<ConfigMap>)> {
        let params = ListParams::default().labels(&format!("{VISION_MODEL_LABEL}={name}"));
        Ok((
            self.daemon_sets.list(&params).await?.items,
            self.config_maps.list(&params).await?.items,
        ))
    }
}

pub fn fixture_bytes(name: &str) -> Result<Vec<u8>> {
    let path = repository_root()
        .join("assets/models/customvision")
        .join(name);
    std::fs::read(&path).with_context(|| {
        format!(
            "cannot read {}: run scripts/fetch-assets first",
            path.display()
        )
    })
}

pub fn sha256_digest(name: &str) -> Result<String> {
    Ok(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(fixture_bytes(name)?))
    ))
}

pub fn is_ready(pod: &Pod) -> bool {
    let conditions = pod
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref());
    conditions.is_some_and(|conditions| {
        conditions
            .iter()
            .any(|condition| condition.type_ == "Ready" && condition.status == "True")
    })
}

pub fn condition<'a>(status: &'a VisionModelStatus, type_: &str) -> Option<&'a Condition> {
    status
        .conditions
        .iter()
        .find(|condition| condition.type_ == type_)
}

pub fn condition_is(
    status: &VisionModelStatus,
    type_: &str,
    expected: &str,
    reason: &str,
) -> Result<(), String> {
    match condition(status, type_) {
        Some(found) if found.status == expected && found.reason == reason => Ok(()),
        Some(found) => Err(format!(
            "{type_}={} ({}: {})",
            found.status, found.reason, found.message
        )),
        None => Err(format!("no {type_} condition yet")),
    }
}

pub fn config_hash(pod: &Pod) -> Option<String> {
    pod.annotations().get(CONFIG_HASH_ANNOTATION).cloned()
}

pub fn nodes_are(status: &VisionModelStatus, desired: i32, ready: i32) -> Result<(), String> {
    let nodes = status.nodes.unwrap_or_default();
    if nodes.desired == desired && nodes.ready == ready && nodes.updated == desired {
        Ok(())
    } else {
        Err(format!("nodes {nodes:?}"))
    }
}
