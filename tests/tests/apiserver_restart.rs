//! The operator survives a kube-apiserver restart: its watches drop, and on
//! resuming they find their resourceVersion compacted away ("410 Gone"),
//! so they must list again and carry on.
//!
//! This restarts the shared local apiserver, so it lives in a test binary
//! of its own: cargo runs test binaries one after another, never beside
//! the other end-to-end tests.

use std::process::Command;
use std::time::Duration;

use anyhow::{Result, ensure};
use visionfleet_e2e::crd::repository_root;
use visionfleet_e2e::world::{ROLE_LABEL, World, nodes_are};

#[tokio::test]
async fn operator_survives_apiserver_restart() -> Result<()> {
    let mut world = World::start("restart").await?;
    let first = world.add_node("edge-a", "camera", false).await?;
    let second = world.add_node("edge-b", "storage", false).await?;
    world
        .apply_model("faces", "face-detection-s1.zip", "")
        .await?;
    world.wait_for_ready_agents_on("faces", &[&first]).await?;

    restart_apiserver()?;
    // Let the watchers hit the dropped connections and back off once.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A change made after the restart reaches the operator only through
    // watches that were re-established with a fresh list.
    world
        .fleet
        .relabel(&second, &[(ROLE_LABEL, Some("camera"))])
        .await?;
    world
        .wait_for_ready_agents_on("faces", &[&first, &second])
        .await?;
    let status = world
        .wait_for_status("faces", "both nodes in status", |status| {
            nodes_are(status, 2, 2)
        })
        .await?;

    ensure!(
        status.model.is_some(),
        "the verified model was lost across the restart"
    );
    Ok(())
}

fn restart_apiserver() -> Result<()> {
    let script = repository_root().join("scripts/local-cluster");
    let output = Command::new(script).arg("restart-apiserver").output()?;

    ensure!(
        output.status.success(),
        "scripts/local-cluster restart-apiserver failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
