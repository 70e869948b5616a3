//! Every manifest in `examples/`, reconciled by the operator on the local
//! control plane. The DaemonSets land on the nodes a user would expect, and
//! the status reports the verified model and the ready nodes.
//!
//! The examples name models on hosts that do not exist here, so each test
//! points the model URL at the same Custom Vision export served on
//! 127.0.0.1 and changes nothing else.
//!
//! Needs `scripts/local-cluster up`, `eval "$(scripts/local-cluster env)"`
//! and `scripts/fetch-assets`.

#![allow(clippy::unwrap_used, reason = "test helpers panic on broken fixtures")]

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use visionfleet_e2e::NodeTemplate;
use visionfleet_e2e::apply_yaml;
use visionfleet_e2e::crd::repository_root;
use visionfleet_e2e::world::{World, condition_is, nodes_are, sha256_digest};

/// Label of the nodes `examples/shelf-detection-ncs2.yaml` selects.
const SHOP_ROLE: (&str, &str) = ("visionfleet.dev/role", "shop-camera");
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Node Feature Discovery's label for an NCS2 stick, the default mapping.
const NCS2_LABEL: &str = "feature.node.kubernetes.io/usb-ff_03e7_2485.present";
const GPU_LABEL: &str = "intel.feature.node.kubernetes.io/gpu";
const GPU_RESOURCE: &str = "gpu.intel.com/i915";

/// Query string planted in the signed URL of `examples/signed-url-secret.yaml`.
const PLANTED_SIGNATURE: &str = "sig=PLANTED-SIGNATURE-7731";

/// Returns the text of `examples/<name>`.
fn example(name: &str) -> Result<String> {
    let path = repository_root().join("examples").join(name);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// Creates a fake node with `labels` and `resources` and starts its kubelet.
async fn add_node(
    world: &mut World,
    suffix: &str,
    labels: &[(&str, &str)],
    resources: &[(&str, &str)],
) -> Result<String> {
    let mut template = NodeTemplate::new(suffix);
    for (key, value) in labels {
        template = template.label(*key, *value);
    }
    for (name, quantity) in resources {
        template = template.resource(*name, *quantity);
    }
    world.add_node_from(&template).await
}

/// Returns the name of the DaemonSet that owns each agent pod, by node.
async fn variant_by_node(world: &World, model: &str, nodes: &[&String]) -> Result<Vec<String>> {
    let pods = world.wait_for_ready_agents_on(model, nodes).await?;
    Ok(nodes
        .iter()
        .map(|node| pods[node.as_str()].owner_references()[0].name.clone())
        .collect())
}

#[tokio::test]
async fn minimal_example_runs_on_every_node() -> Result<()> {
    let mut world = World::start("example-minimal").await?;
    let node = add_node(&mut world, "edge-a", &[], &[]).await?;
    let yaml = example("minimal.yaml")?.replace(
        "https://models.example.com/orientation/v1.zip",
        &world.server.url("orientation-classification.zip"),
    );

    apply_yaml(
        &world.namespace.client(),
        &yaml,
        "minimal.yaml",
        Some(world.namespace.name()),
    )
    .await?;

    // The example selects every node of the cluster, so other tests' nodes
    // may run its agents too. Only this test's node is checked by name.
    let status = world
        .wait_for_status("minimal", "Ready with a verified classifier", |status| {
            condition_is(status, "ModelVerified", "True", "Verified")?;
            condition_is(status, "Ready", "True", "AllNodesReady")
        })
        .await?;
    let pods = world.agent_pods("minimal").await?;
    let pod = pods
        .get(&node)
        .context("no agent pod on this test's node")?;
    ensure!(
        pod.owner_references()[0].name == "minimal-agent-cpu",
        "the CPU variant runs the minimal example"
    );
    let model = status.model.context("no resolved model in status")?;
    ensure!(
        model.digest == sha256_digest("orientation-classification.zip")?,
        "status digest {}",
        model.digest
    );
    ensure!(model.task == "Classification", "task {}", model.task);
    Ok(())
}

#[tokio::test]
async fn shelf_example_places_agents_by_device() -> Result<()> {
    let mut world = World::start("example-shelf").await?;
    let store = (ZONE_LABEL, "store-12");
    let stick = add_node(
        &mut world,
        "ncs2",
        &[SHOP_ROLE, store, (NCS2_LABEL, "true")],
        &[],
    )
    .await?;
    let gpu = add_node(
        &mut world,
        "gpu",
        &[SHOP_ROLE, store, (GPU_LABEL, "true")],
        &[(GPU_RESOURCE, "1")],
    )
    .await?;
    let plain = add_node(&mut world, "cpu", &[SHOP_ROLE, store], &[]).await?;
    add_node(
        &mut world,
        "other-store",
        &[SHOP_ROLE, (ZONE_LABEL, "store-13")],
        &[],
    )
    .await?;
    add_node(&mut world, "back-office", &[store], &[]).await?;
    let digest = sha256_digest("face-detection-s1.zip")?;
    let yaml = example("shelf-detection-ncs2.yaml")?
        .replace(
            "https://models.example.com/shelves/v7.zip",
            &world.server.url("face-detection-s1.zip"),
        )
        .replace(
            "3f5a1c9e4d2b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a39",
            digest.trim_start_matches("sha256:"),
        );

    apply_yaml(
        &world.namespace.client(),
        &yaml,
        "shelf-detection-ncs2.yaml",
        Some(world.namespace.name()),
    )
    .await?;

    let variants = variant_by_node(&world, "shelf-detection", &[&stick, &gpu, &plain]).await?;
    ensure!(
        variants
            == [
                "shelf-detection-agent-myriad",
                "shelf-detection-agent-gpu",
                "shelf-detection-agent-cpu"
            ],
        "agents by node (NCS2, GPU, CPU): {variants:?}"
    );
    let status = world
        .wait_for_status(
            "shelf-detection",
            "three ready nodes and the pinned model",
            |status| {
                nodes_are(status, 3, 3)?;
                condition_is(status, "ModelVerified", "True", "Verified")?;
                condition_is(status, "Ready", "True", "AllNodesReady")
            },
        )
        .await?;
    let model = status.model.context("no resolved model in status")?;
    ensure!(model.digest == digest, "status digest {}", model.digest);
    Ok(())
}

#[tokio::test]
async fn signed_url_example_keeps_signature_private() -> Result<()> {
    let mut world = World::start("example-signed").await?;
    let node = add_node(&mut world, "line-3", &[("visionfleet.dev/line", "3")], &[]).await?;
    let signed_url = format!(
        "{}?sv=2022-11-02&se=2027-01-01&{PLANTED_SIGNATURE}",
        world.server.url("orientation-classification.zip")
    );
    let yaml = example("signed-url-secret.yaml")?.replace(
        "https://storage.example.com/exports/defects.zip?sv=2022-11-02&se=2027-01-01&sig=REPLACE_ME",
        &signed_url,
    );

    apply_yaml(
        &world.namespace.client(),
        &yaml,
        "signed-url-secret.yaml",
        Some(world.namespace.name()),
    )
    .await?;

    let variants = variant_by_node(&world, "line-defects", &[&node]).await?;
    ensure!(
        variants == ["line-defects-agent-cpu"],
        "agents: {variants:?}"
    );
    world
        .wait_for_status(
            "line-defects",
            "one ready node and a verified model",
            |status| {
                nodes_are(status, 1, 1)?;
                condition_is(status, "ModelVerified", "True", "Verified")
            },
        )
        .await?;

    let model = world.models.get("line-defects").await?;
    let status = serde_json::to_string(&model.status)?;
    ensure!(
        !status.contains("PLANTED"),
        "the status shows the signature: {status}"
    );
    let (_, config_maps) = world.model_objects("line-defects").await?;
    let config_maps = serde_json::to_string(&config_maps)?;
    ensure!(
        !config_maps.contains("PLANTED"),
        "a ConfigMap holds the signature"
    );
    let events: Api<Event> = Api::namespaced(world.namespace.client(), world.namespace.name());
    let events = serde_json::to_string(&events.list(&ListParams::default()).await?.items)?;
    ensure!(!events.contains("PLANTED"), "an Event shows the signature");
    Ok(())
}
