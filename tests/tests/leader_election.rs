//! Leader election on a real kube-apiserver: of two operator replicas only
//! one holds the Lease, and the other takes over once the holder stops
//! renewing it.

use std::time::Duration;

use anyhow::{Result, ensure};
use visionfleet_e2e::TestCluster;
use visionfleet_operator::leader::{self, LeaseSettings};

fn settings(namespace: &str, identity: &str) -> LeaseSettings {
    LeaseSettings {
        namespace: namespace.to_owned(),
        name: "visionfleet-operator".to_owned(),
        identity: identity.to_owned(),
        lease_duration: Duration::from_secs(4),
        renew_every: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn standby_takes_over_expired_lease() -> Result<()> {
    let cluster = TestCluster::connect().await?;
    let namespace = cluster.namespace("leader").await?;

    let first =
        leader::acquire(namespace.client(), settings(namespace.name(), "replica-a")).await?;
    let holder = tokio::spawn(first.keep());
    let standby = tokio::spawn(leader::acquire(
        namespace.client(),
        settings(namespace.name(), "replica-b"),
    ));

    // Several lease durations pass while the holder renews: the standby must still wait.
    tokio::time::sleep(Duration::from_secs(10)).await;
    ensure!(
        !standby.is_finished(),
        "the standby acquired a lease that another replica renews"
    );

    holder.abort();
    let took_over = tokio::time::timeout(Duration::from_secs(60), standby).await;

    ensure!(
        matches!(took_over, Ok(Ok(Ok(_)))),
        "the standby did not take over the expired lease: {took_over:?}"
    );
    Ok(())
}
