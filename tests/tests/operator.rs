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

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use visionfleet_e2e::world::{
    CONVERGE, ROLE_LABEL, World, condition, condition_is, config_hash, is_ready, nodes_are,
    sha256_digest,
};
use visionfleet_e2e::{NodeBehaviour, Unmet, wait_for};

/// The agents' ServiceAccount that `World::start` creates.
const AGENT_ACCOUNT: &str = "visionfleet-agent";

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
    let max_unavailable_seen = std::cell::Cell::new(0);
    let status = wait_for("the new model on all four nodes", CONVERGE, || async {
        let pods = world.agent_pods("shelves").await.map_err(Unmet::fatal)?;
        let ready = pods.values().filter(|pod| is_ready(pod)).count();
        max_unavailable_seen.set(
            max_unavailable_seen
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

    let max_unavailable_seen = max_unavailable_seen.get();
    ensure!(
        max_unavailable_seen <= 1,
        "{max_unavailable_seen} nodes were unavailable at once; maxUnavailable is 1"
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
async fn missing_agent_account_named_in_status() -> Result<()> {
    let mut world = World::start("no-account").await?;
    let accounts: Api<ServiceAccount> =
        Api::namespaced(world.namespace.client(), world.namespace.name());
    accounts
        .delete(AGENT_ACCOUNT, &DeleteParams::default())
        .await?;
    world.add_node("edge-a", "camera", false).await?;

    world
        .apply_model("faces", "face-detection-s1.zip", "")
        .await?;

    let status = world
        .wait_for_status(
            "faces",
            "Ready=False with AgentServiceAccountMissing",
            |status| condition_is(status, "Ready", "False", "AgentServiceAccountMissing"),
        )
        .await?;
    let ready = condition(&status, "Ready").unwrap();
    ensure!(
        ready.message.contains(AGENT_ACCOUNT),
        "message names the account: {}",
        ready.message
    );

    // Once the account exists, the DaemonSet controller creates the pods.
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(AGENT_ACCOUNT.to_owned()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    accounts.create(&PostParams::default(), &account).await?;
    world
        .wait_for_status("faces", "Ready=True", |status| {
            condition_is(status, "Ready", "True", "AllNodesReady")
        })
        .await?;
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
