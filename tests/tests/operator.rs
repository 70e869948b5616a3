//! The operator against the real kube-apiserver, kube-controller-manager
//! and kube-scheduler, with fake nodes served by the fake kubelet and real
//! Custom Vision exports served over HTTP on 127.0.0.1.
//!
//! The agents do not run here (there is no container runtime), so where a
//! test needs what agents report on their pods (device, fallback), it
//! writes those annotations itself, as each agent would.
//!
//! Needs `scripts/local-cluster up`, `eval "$(scripts/local-cluster env)"`
//! and `scripts/fetch-assets`.

#![allow(clippy::unwrap_used, reason = "test helpers panic on broken fixtures")]

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use sha2::{Digest, Sha256};
use visionfleet_api::labels::{
    CONFIG_HASH_ANNOTATION, POD_DEVICE_ANNOTATION, POD_FALLBACK_ANNOTATION, VISION_MODEL_LABEL,
};
use visionfleet_api::{VisionModel, VisionModelStatus};
use visionfleet_e2e::crd::{install_crd, repository_root};
use visionfleet_e2e::model_server::{ModelServer, Served};
use visionfleet_e2e::namespace::TEST_NAMESPACE_LABEL;
use visionfleet_e2e::operator::TestOperator;
use visionfleet_e2e::{
    FakeKubelet, Fleet, NodeBehaviour, NodeTemplate, TestCluster, TestNamespace, Unmet, wait_for,
};

/// Generous bound for the controllers to converge; not a latency assertion.
const CONVERGE: Duration = Duration::from_secs(120);

const ROLE_LABEL: &str = "e2e.visionfleet.dev/role";
const GPU_LABEL: &str = "intel.feature.node.kubernetes.io/gpu";
const GPU_RESOURCE: &str = "gpu.intel.com/i915";

/// One test's world: a namespace with its own operator, fake nodes, a fake
/// kubelet and a model server holding two real Custom Vision exports.
struct World {
    namespace: TestNamespace,
    fleet: Fleet,
    kubelet: FakeKubelet,
    server: ModelServer,
    operator: TestOperator,
    models: Api<VisionModel>,
    daemon_sets: Api<DaemonSet>,
    config_maps: Api<ConfigMap>,
    pods: Api<Pod>,
}

impl World {
    async fn start(test_name: &str) -> Result<Self> {
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
    async fn add_node(&mut self, suffix: &str, role: &str, gpu: bool) -> Result<String> {
        let mut template = NodeTemplate::new(suffix).label(ROLE_LABEL, role);
        if gpu {
            template = template
                .label(GPU_LABEL, "true")
                .resource(GPU_RESOURCE, "1");
        }

        let node = self.fleet.create_node(&template).await?;
        self.kubelet.start_node(&node.name_any()).await?;
        Ok(node.name_any())
    }

    /// Applies a VisionModel that selects this test's nodes with `role`.
    async fn apply_model(&self, name: &str, model_path: &str, extra_spec: &str) -> Result<()> {
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
    async fn wait_for_status(
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
    async fn agent_pods(&self, name: &str) -> Result<BTreeMap<String, Pod>> {
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
    async fn wait_for_ready_agents_on(
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
    async fn report_as_agent(&self, pod: &Pod, device: &str, fallback: bool) -> Result<()> {
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

    async fn model_objects(&self, name: &str) -> Result<(Vec<DaemonSet>, Vec<ConfigMap>)> {
        let params = ListParams::default().labels(&format!("{VISION_MODEL_LABEL}={name}"));
        Ok((
            self.daemon_sets.list(&params).await?.items,
            self.config_maps.list(&params).await?.items,
        ))
    }
}

fn fixture_bytes(name: &str) -> Result<Vec<u8>> {
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

fn sha256_digest(name: &str) -> Result<String> {
    Ok(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(fixture_bytes(name)?))
    ))
}

fn is_ready(pod: &Pod) -> bool {
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

fn condition<'a>(
    status: &'a VisionModelStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status
        .conditions
        .iter()
        .find(|condition| condition.type_ == type_)
}

fn condition_is(
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

fn config_hash(pod: &Pod) -> Option<String> {
    pod.annotations().get(CONFIG_HASH_ANNOTATION).cloned()
}

fn nodes_are(status: &VisionModelStatus, desired: i32, ready: i32) -> Result<(), String> {
    let nodes = status.nodes.unwrap_or_default();
    if nodes.desired == desired && nodes.ready == ready && nodes.updated == desired {
        Ok(())
    } else {
        Err(format!("nodes {nodes:?}"))
    }
}

#[tokio::test]
async fn agents_land_on_matching_nodes_by_device() -> Result<()> {
    let mut world = World::start("placement").await?;
    let gpu_node = world.add_node("gpu-a", "camera", true).await?;
    let cpu_node = world.add_node("cpu-b", "camera", false).await?;
    world.add_node("storage-c", "storage", false).await?;

    world
        .apply_model(
            "faces",
            "face-detection-s1.zip",
            "  accelerator: {preference: [GPU, CPU]}\n",
        )
        .await?;

    let pods = world
        .wait_for_ready_agents_on("faces", &[&gpu_node, &cpu_node])
        .await?;
    ensure!(
        pods[&gpu_node].owner_references()[0].name == "faces-agent-gpu",
        "GPU node runs the GPU variant"
    );
    ensure!(
        pods[&cpu_node].owner_references()[0].name == "faces-agent-cpu",
        "CPU node runs the CPU variant"
    );
    let digest = sha256_digest("face-detection-s1.zip")?;
    let status = world
        .wait_for_status("faces", "two ready nodes and a verified model", |status| {
            nodes_are(status, 2, 2)?;
            condition_is(status, "Ready", "True", "AllNodesReady")?;
            condition_is(status, "ModelVerified", "True", "Verified")
        })
        .await?;
    let model = status.model.context("no resolved model in status")?;
    ensure!(
        model.digest == digest,
        "status digest {} is not the served file's {digest}",
        model.digest
    );
    ensure!(
        model.task == "ObjectDetection" && model.format == "CustomVisionDetectionS1",
        "{model:?}"
    );
    ensure!(
        model.input_shape == [1, 3, 320, 320],
        "input shape {:?}",
        model.input_shape
    );
    Ok(())
}

#[tokio::test]
async fn status_shows_devices_agents_report() -> Result<()> {
    let mut world = World::start("devices").await?;
    let gpu_node = world.add_node("gpu-a", "camera", true).await?;
    let cpu_node = world.add_node("cpu-b", "camera", false).await?;
    world
        .apply_model(
            "faces",
            "face-detection-s1.zip",
            "  accelerator: {preference: [GPU, CPU]}\n",
        )
        .await?;
    let pods = world
        .wait_for_ready_agents_on("faces", &[&gpu_node, &cpu_node])
        .await?;

    world
        .report_as_agent(&pods[&gpu_node], "GPU", false)
        .await?;
    world.report_as_agent(&pods[&cpu_node], "CPU", true).await?;

    let status = world
        .wait_for_status("faces", "devices GPU and CPU with one fallback", |status| {
            match status.devices_summary.as_deref() {
                Some("CPU=1,GPU=1") => {}
                other => return Err(format!("devicesSummary {other:?}")),
            }
            condition_is(status, "AcceleratorFallback", "True", "CpuFallback")
        })
        .await?;
    let fallback = condition(&status, "AcceleratorFallback").unwrap();
    ensure!(
        fallback.message.contains(&cpu_node),
        "fallback message names the node: {}",
        fallback.message
    );
    ensure!(
        !fallback.message.contains(&gpu_node),
        "fallback message names only fallen-back nodes: {}",
        fallback.message
    );
    Ok(())
}

#[tokio::test]
async fn relabelled_node_joins_and_leaves() -> Result<()> {
    let mut world = World::start("relabel").await?;
    let first = world.add_node("edge-a", "camera", false).await?;
    let second = world.add_node("edge-b", "storage", false).await?;
    world
        .apply_model("faces", "face-detection-s1.zip", "")
        .await?;
    world.wait_for_ready_agents_on("faces", &[&first]).await?;

    world
        .fleet
        .relabel(&second, &[(ROLE_LABEL, Some("camera"))])
        .await?;
    world
        .wait_for_ready_agents_on("faces", &[&first, &second])
        .await?;
    world
        .wait_for_status("faces", "two nodes", |status| nodes_are(status, 2, 2))
        .await?;

    world.fleet.relabel(&first, &[(ROLE_LABEL, None)]).await?;
    world.wait_for_ready_agents_on("faces", &[&second]).await?;
    world
        .wait_for_status("faces", "one node", |status| nodes_are(status, 1, 1))
        .await?;
    Ok(())
}

#[tokio::test]
async fn model_change_rolls_out_within_max_unavailable() -> Result<()> {
    let mut world = World::start("rollout").await?;
    let mut nodes = Vec::new();
    for suffix in ["edge-a", "edge-b", "edge-c", "edge-d"] {
        nodes.push(world.add_node(suffix, "camera", false).await?);
    }
    let rollout = "  rollout: {maxUnavailable: 1}\n";
    world
        .apply_model("shelves", "face-detection-s1.zip", rollout)
        .await?;
    let before = world
        .wait_for_ready_agents_on("shelves", &nodes.iter().collect::<Vec<_>>())
        .await?;
    let old_hash = config_hash(before.values().next().unwrap());

    world
        .apply_model("shelves", "orientation-classification.zip", rollout)
        .await?;

    // Sample the fleet while it rolls: never more than one node without a ready agent.
    let new_digest = sha256_digest("orientation-classification.zip")?;
    let most_unavailable = std::cell::Cell::new(0);
    let status = wait_for("the new model on all four nodes", CONVERGE, || async {
        let pods = world.agent_pods("shelves").await.map_err(Unmet::fatal)?;
        let ready = pods.values().filter(|pod| is_ready(pod)).count();
        most_unavailable.set(
            most_unavailable
                .get()
                .max(nodes.len().saturating_sub(ready)),
        );

        let status = world
            .models
            .get("shelves")
            .await
            .map_err(Unmet::fatal)?
            .status
            .unwrap_or_default();
        let serving_new = status
            .model
            .as_ref()
            .is_some_and(|model| model.digest == new_digest);
        let all_new = pods.len() == nodes.len()
            && pods
                .values()
                .all(|pod| config_hash(pod) != old_hash && is_ready(pod));
        if serving_new && all_new && nodes_are(&status, 4, 4).is_ok() {
            Ok(status)
        } else {
            Err(Unmet::pending(format!(
                "{} pods, {ready} ready, status nodes {:?}",
                pods.len(),
                status.nodes
            )))
        }
    })
    .await?;

    let most_unavailable = most_unavailable.get();
    ensure!(
        most_unavailable <= 1,
        "{most_unavailable} nodes were unavailable at once; maxUnavailable is 1"
    );
    ensure!(
        condition_is(&status, "Ready", "True", "AllNodesReady").is_ok(),
        "{:?}",
        status.conditions
    );
    Ok(())
}

#[tokio::test]
async fn bad_model_halts_rollout_old_pods_keep_running() -> Result<()> {
    let mut world = World::start("bad-model").await?;
    let node = world.add_node("edge-a", "camera", false).await?;
    world
        .apply_model("faces", "face-detection-s1.zip", "")
        .await?;
    let before = world.wait_for_ready_agents_on("faces", &[&node]).await?;
    let good_digest = sha256_digest("face-detection-s1.zip")?;
    world
        .wait_for_status("faces", "the good model verified", |status| {
            condition_is(status, "ModelVerified", "True", "Verified")
        })
        .await?;

    world.apply_model("faces", "login.zip", "").await?;

    let status = world
        .wait_for_status("faces", "ModelVerified=False for an HTML page", |status| {
            condition_is(status, "ModelVerified", "False", "HtmlPage")?;
            condition_is(status, "Progressing", "False", "RolloutHalted")
        })
        .await?;
    ensure!(
        status.model.as_ref().map(|model| model.digest.as_str()) == Some(good_digest.as_str()),
        "status keeps the good digest"
    );
    let degraded = condition(&status, "Degraded").unwrap();
    ensure!(
        degraded.status == "True" && degraded.reason == "ModelVerificationFailed",
        "{degraded:?}"
    );

    let after = world.agent_pods("faces").await?;
    let (old_pod, new_pod) = (&before[&node], &after[&node]);
    ensure!(
        old_pod.uid() == new_pod.uid(),
        "the agent pod was replaced despite the bad model"
    );
    ensure!(is_ready(new_pod), "the old agent is no longer ready");
    Ok(())
}

#[tokio::test]
async fn invalid_spec_sets_condition_and_deploys_nothing() -> Result<()> {
    let world = World::start("invalid-spec").await?;

    // A File sink without a path: the schema accepts it, the operator's validation does not.
    world
        .apply_model(
            "faces",
            "face-detection-s1.zip",
            "  output: {messagesPerMinute: 10, sinks: [{type: File}]}\n",
        )
        .await?;

    let status = world
        .wait_for_status("faces", "Degraded=True with InvalidSpec", |status| {
            condition_is(status, "Degraded", "True", "InvalidSpec")
        })
        .await?;
    let degraded = condition(&status, "Degraded").unwrap();
    ensure!(
        degraded.message.contains("spec.output.sinks[0].path"),
        "message names the field: {}",
        degraded.message
    );
    let (daemon_sets, config_maps) = world.model_objects("faces").await?;
    ensure!(
        daemon_sets.is_empty() && config_maps.is_empty(),
        "objects were created for an invalid spec"
    );
    Ok(())
}

#[tokio::test]
async fn failing_agent_listed_in_status() -> Result<()> {
    let mut world = World::start("failing").await?;
    let healthy = world.add_node("edge-a", "camera", false).await?;
    let crashing = world.add_node("edge-b", "camera", false).await?;
    world.kubelet.set_node_behaviour(
        &crashing,
        NodeBehaviour::CrashLooping {
            reason: "model load failed".to_owned(),
        },
    )?;

    world
        .apply_model("faces", "face-detection-s1.zip", "")
        .await?;

    let status = world
        .wait_for_status("faces", "the crashing node in failingNodes", |status| {
            match status.failing_nodes.first() {
                Some(failing)
                    if failing.node == crashing && failing.reason == "CrashLoopBackOff" => {}
                other => return Err(format!("failingNodes starts with {other:?}")),
            }
            condition_is(status, "Degraded", "True", "AgentsFailing")
        })
        .await?;
    ensure!(
        status.failing_nodes.len() == 1,
        "only the crashing node fails: {:?}",
        status.failing_nodes
    );
    ensure!(
        !status
            .failing_nodes
            .iter()
            .any(|failing| failing.node == healthy)
    );
    ensure!(
        condition_is(&status, "Ready", "False", "NodesNotReady").is_ok(),
        "{:?}",
        status.conditions
    );
    Ok(())
}

#[tokio::test]
async fn unchanged_model_makes_no_api_writes() -> Result<()> {
    let mut world = World::start("no-writes").await?;
    let node = world.add_node("edge-a", "camera", false).await?;
    let spare = world.add_node("spare-b", "storage", false).await?;
    world
        .apply_model("faces", "face-detection-s1.zip", "")
        .await?;
    world.wait_for_ready_agents_on("faces", &[&node]).await?;
    world
        .wait_for_status("faces", "a settled fleet", |status| {
            condition_is(status, "Progressing", "False", "RolloutComplete")
        })
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let versions = resource_versions(&world).await?;
    let reconciles_before = reconciles(&world.operator.metrics());
    // A node label change triggers a reconcile of every VisionModel.
    world
        .fleet
        .relabel(&spare, &[("e2e.visionfleet.dev/touched", Some("yes"))])
        .await?;
    wait_for("a reconcile after the node event", CONVERGE, || async {
        let count = reconciles(&world.operator.metrics());
        if count > reconciles_before {
            Ok(())
        } else {
            Err(Unmet::pending(format!("{count} reconciles")))
        }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    ensure!(
        resource_versions(&world).await? == versions,
        "a reconcile of an unchanged VisionModel wrote to the API"
    );
    Ok(())
}

async fn resource_versions(world: &World) -> Result<Vec<(String, Option<String>)>> {
    let model = world.models.get("faces").await?;
    let (daemon_sets, config_maps) = world.model_objects("faces").await?;

    let mut versions = vec![(model.name_any(), model.resource_version())];
    versions.extend(
        daemon_sets
            .iter()
            .map(|object| (object.name_any(), object.resource_version())),
    );
    versions.extend(
        config_maps
            .iter()
            .map(|object| (object.name_any(), object.resource_version())),
    );
    Ok(versions)
}

fn reconciles(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("visionfleet_operator_reconciles_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn deleting_model_collects_its_objects() -> Result<()> {
    let mut world = World::start("delete").await?;
    let node = world.add_node("edge-a", "camera", false).await?;
    world
        .apply_model("faces", "face-detection-s1.zip", "")
        .await?;
    world.wait_for_ready_agents_on("faces", &[&node]).await?;

    world
        .models
        .delete("faces", &DeleteParams::background())
        .await?;

    wait_for(
        "the garbage collector to remove DaemonSets and ConfigMaps",
        CONVERGE,
        || async {
            let (daemon_sets, config_maps) =
                world.model_objects("faces").await.map_err(Unmet::fatal)?;
            if daemon_sets.is_empty() && config_maps.is_empty() {
                Ok(())
            } else {
                Err(Unmet::pending(format!(
                    "{} DaemonSets, {} ConfigMaps",
                    daemon_sets.len(),
                    config_maps.len()
                )))
            }
        },
    )
    .await?;
    Ok(())
}
