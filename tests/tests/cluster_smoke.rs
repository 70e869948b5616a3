//! Smoke tests of the harness against the local cluster: the real
//! DaemonSet controller, scheduler and node lifecycle controller acting on
//! fake nodes served by the fake kubelet.
//!
//! Needs `scripts/local-cluster up` and `eval "$(scripts/local-cluster env)"`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use visionfleet_e2e::namespace::TEST_NAMESPACE_LABEL;
use visionfleet_e2e::{
    FakeKubelet, Fleet, NodeBehaviour, NodeTemplate, TestCluster, TestNamespace, Unmet, apply_yaml,
    wait_for,
};

/// Generous bound for the controllers to converge; not a latency assertion.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);
/// The node lifecycle controller waits 40 s (its default grace period)
/// without heartbeats before it marks a node Unknown.
const OFFLINE_TIMEOUT: Duration = Duration::from_secs(150);

const DAEMON_SET: &str = "smoke-agent";
const POOL_LABEL: &str = "e2e.visionfleet.dev/pool";

/// One test's cluster objects: three fake nodes, `edge-a` and `edge-b` in
/// pool `edge` and `core-c` in pool `core`, served by a fake kubelet, and a
/// DaemonSet selecting pool `edge`.
struct Setup {
    namespace: TestNamespace,
    fleet: Fleet,
    kubelet: FakeKubelet,
    daemon_sets: Api<DaemonSet>,
    pods: Api<Pod>,
}

impl Setup {
    async fn start(test_name: &str) -> Result<Self> {
        init_tracing();
        let cluster = TestCluster::connect().await?;
        let namespace = cluster.namespace(test_name).await?;
        let fleet = Fleet::new(&namespace);
        let mut kubelet = FakeKubelet::new(cluster.client());

        for (suffix, pool) in [("edge-a", "edge"), ("edge-b", "edge"), ("core-c", "core")] {
            let node = fleet
                .create_node(&NodeTemplate::new(suffix).label(POOL_LABEL, pool))
                .await?;
            kubelet.start_node(&node.name_any()).await?;
        }

        let manifest = daemon_set_manifest(namespace.name());
        apply_yaml(
            &cluster.client(),
            &manifest,
            "smoke DaemonSet",
            Some(namespace.name()),
        )
        .await?;

        Ok(Self {
            daemon_sets: Api::namespaced(cluster.client(), namespace.name()),
            pods: Api::namespaced(cluster.client(), namespace.name()),
            namespace,
            fleet,
            kubelet,
        })
    }

    fn node(&self, suffix: &str) -> String {
        self.fleet.node_name(suffix)
    }

    /// Waits until the DaemonSet status reports `ready` of `desired` pods
    /// ready, and returns that status's DaemonSet.
    async fn wait_for_ready_count(
        &self,
        desired: i32,
        ready: i32,
        timeout: Duration,
    ) -> Result<DaemonSet> {
        let description =
            format!("DaemonSet {DAEMON_SET} to report {ready} of {desired} pods ready");
        let daemon_set = wait_for(&description, timeout, || async {
            let daemon_set = self.daemon_sets.get(DAEMON_SET).await?;
            let status = daemon_set.status.clone().unwrap_or_default();
            if status.desired_number_scheduled == desired && status.number_ready == ready {
                Ok(daemon_set)
            } else {
                Err(Unmet::pending(format!(
                    "desiredNumberScheduled={} numberReady={}",
                    status.desired_number_scheduled, status.number_ready
                )))
            }
        })
        .await?;
        Ok(daemon_set)
    }

    /// Waits until the DaemonSet's pods sit exactly on `nodes`, and returns
    /// them keyed by node name.
    async fn wait_for_pods_on(&self, nodes: &[String]) -> Result<BTreeMap<String, Pod>> {
        let expected: Vec<&str> = nodes.iter().map(String::as_str).collect();
        let description = format!("DaemonSet pods on exactly {expected:?}");
        let pods = wait_for(&description, CONVERGE_TIMEOUT, || async {
            let pods = self.pods_by_node().await?;
            let actual: Vec<&str> = pods.keys().map(String::as_str).collect();
            if actual == expected {
                Ok(pods)
            } else {
                Err(Unmet::pending(format!("pods on {actual:?}")))
            }
        })
        .await?;
        Ok(pods)
    }

    async fn pods_by_node(&self) -> Result<BTreeMap<String, Pod>, kube::Error> {
        let pods = self
            .pods
            .list(&ListParams::default().labels("app=smoke-agent"))
            .await?;
        Ok(pods
            .items
            .into_iter()
            .filter_map(|pod| Some((pod.spec.as_ref()?.node_name.clone()?, pod)))
            .collect())
    }
}

#[tokio::test]
async fn daemon_set_pods_only_on_matching_nodes() -> Result<()> {
    let setup = Setup::start("daemon_set_pods_only_on_matching_nodes").await?;
    let edge_nodes = [setup.node("edge-a"), setup.node("edge-b")];

    let daemon_set = setup.wait_for_ready_count(2, 2, CONVERGE_TIMEOUT).await?;
    let pods = setup.wait_for_pods_on(&edge_nodes).await?;

    let status = daemon_set.status.context("DaemonSet has a status")?;
    assert_eq!(status.current_number_scheduled, 2);
    assert_eq!(status.number_misscheduled, 0);
    for (node, pod) in &pods {
        assert!(
            pod_is_ready(pod),
            "pod {} on {node} is not Ready",
            pod.name_any()
        );
        let pod_status = pod.status.as_ref().context("pod has a status")?;
        assert_eq!(
            pod_status.phase.as_deref(),
            Some("Running"),
            "pod on {node}"
        );
        assert!(pod_status.pod_ip.is_some(), "pod on {node} has no podIP");
    }
    assert!(!pods.contains_key(&setup.node("core-c")));

    setup.namespace.delete().await?;
    Ok(())
}

#[tokio::test]
async fn relabelled_node_loses_daemon_pod() -> Result<()> {
    let setup = Setup::start("relabelled_node_loses_daemon_pod").await?;
    let (edge_a, edge_b) = (setup.node("edge-a"), setup.node("edge-b"));
    setup.wait_for_ready_count(2, 2, CONVERGE_TIMEOUT).await?;

    setup
        .fleet
        .relabel(&edge_b, &[(POOL_LABEL, Some("core"))])
        .await?;

    let pods = setup
        .wait_for_pods_on(std::slice::from_ref(&edge_a))
        .await?;
    setup.wait_for_ready_count(1, 1, CONVERGE_TIMEOUT).await?;
    assert!(pods.contains_key(&edge_a));

    setup
        .fleet
        .relabel(&edge_b, &[(POOL_LABEL, Some("edge"))])
        .await?;

    setup.wait_for_pods_on(&[edge_a, edge_b]).await?;
    setup.wait_for_ready_count(2, 2, CONVERGE_TIMEOUT).await?;
    setup.namespace.delete().await?;
    Ok(())
}

/// A node that stops heartbeating turns Unknown and gets the unreachable
/// taints. Its DaemonSet pod stays, because DaemonSet pods tolerate the
/// NoExecute taint, but is marked not Ready. The NoSchedule taint takes the
/// node out of the DaemonSet's desired count. Heartbeats coming back undo
/// all of it.
#[tokio::test]
async fn offline_node_pod_marked_not_ready() -> Result<()> {
    let setup = Setup::start("offline_node_pod_marked_not_ready").await?;
    let edge_b = setup.node("edge-b");
    setup.wait_for_ready_count(2, 2, CONVERGE_TIMEOUT).await?;

    setup
        .kubelet
        .set_node_behaviour(&edge_b, NodeBehaviour::Offline)?;

    let node =
        wait_for_node_ready_status(&setup.fleet, &edge_b, "Unknown", OFFLINE_TIMEOUT).await?;
    assert!(
        has_taint(&node, "node.kubernetes.io/unreachable"),
        "taints: {:?}",
        taints(&node)
    );
    wait_for_pod_ready(&setup, &edge_b, false, CONVERGE_TIMEOUT).await?;
    setup.wait_for_ready_count(1, 1, CONVERGE_TIMEOUT).await?;
    let pods = setup.pods_by_node().await?;
    assert!(
        pods.contains_key(&edge_b),
        "pod on the offline node was removed"
    );

    setup
        .kubelet
        .set_node_behaviour(&edge_b, NodeBehaviour::Healthy)?;

    wait_for_node_ready_status(&setup.fleet, &edge_b, "True", CONVERGE_TIMEOUT).await?;
    wait_for_pod_ready(&setup, &edge_b, true, CONVERGE_TIMEOUT).await?;
    setup.wait_for_ready_count(2, 2, CONVERGE_TIMEOUT).await?;
    let node = wait_for_untainted(&setup.fleet, &edge_b).await?;
    assert!(!has_taint(&node, "node.kubernetes.io/unreachable"));
    setup.namespace.delete().await?;
    Ok(())
}

/// A node whose kubelet reports Ready=False gets the not-ready taint at once,
/// without the grace period an offline node waits for.
#[tokio::test]
async fn not_ready_node_gets_tainted() -> Result<()> {
    let setup = Setup::start("not_ready_node_gets_tainted").await?;
    let edge_a = setup.node("edge-a");
    setup.wait_for_ready_count(2, 2, CONVERGE_TIMEOUT).await?;

    let reason = "container runtime is down".to_owned();
    setup.kubelet.set_node_behaviour(
        &edge_a,
        NodeBehaviour::NotReady {
            reason: reason.clone(),
        },
    )?;

    let node = wait_for_node_ready_status(&setup.fleet, &edge_a, "False", CONVERGE_TIMEOUT).await?;
    assert_eq!(ready_message(&node).as_deref(), Some(reason.as_str()));
    let node = wait_for_taint(&setup.fleet, &edge_a, "node.kubernetes.io/not-ready").await?;
    assert!(
        !has_taint(&node, "node.kubernetes.io/unreachable"),
        "taints: {:?}",
        taints(&node)
    );

    setup
        .kubelet
        .set_node_behaviour(&edge_a, NodeBehaviour::Healthy)?;

    wait_for_node_ready_status(&setup.fleet, &edge_a, "True", CONVERGE_TIMEOUT).await?;
    wait_for_untainted(&setup.fleet, &edge_a).await?;
    setup.wait_for_ready_count(2, 2, CONVERGE_TIMEOUT).await?;
    setup.namespace.delete().await?;
    Ok(())
}

#[tokio::test]
async fn crash_looping_pod_not_ready() -> Result<()> {
    let setup = Setup::start("crash_looping_pod_not_ready").await?;
    let edge_a = setup.node("edge-a");
    setup.wait_for_ready_count(2, 2, CONVERGE_TIMEOUT).await?;

    let reason = "model file is corrupt".to_owned();
    setup.kubelet.set_node_behaviour(
        &edge_a,
        NodeBehaviour::CrashLooping {
            reason: reason.clone(),
        },
    )?;

    setup.wait_for_ready_count(2, 1, CONVERGE_TIMEOUT).await?;
    let pods = setup.pods_by_node().await?;
    let pod = pods.get(&edge_a).context("pod on the crash-looping node")?;
    assert!(!pod_is_ready(pod));
    let container = pod
        .status
        .as_ref()
        .and_then(|status| status.container_statuses.as_ref())
        .and_then(|statuses| statuses.first())
        .context("container status")?;
    let waiting_reason = container
        .state
        .as_ref()
        .and_then(|state| state.waiting.as_ref())
        .and_then(|waiting| waiting.reason.as_deref());
    assert_eq!(waiting_reason, Some("CrashLoopBackOff"));
    let last_message = container
        .last_state
        .as_ref()
        .and_then(|state| state.terminated.as_ref())
        .and_then(|terminated| terminated.message.as_deref());
    assert_eq!(last_message, Some(reason.as_str()));
    assert!(container.restart_count >= 1);

    setup
        .kubelet
        .set_node_behaviour(&edge_a, NodeBehaviour::Healthy)?;

    setup.wait_for_ready_count(2, 2, CONVERGE_TIMEOUT).await?;
    setup.namespace.delete().await?;
    Ok(())
}

#[tokio::test]
async fn deleted_node_pod_garbage_collected() -> Result<()> {
    let setup = Setup::start("deleted_node_pod_garbage_collected").await?;
    let (edge_a, edge_b) = (setup.node("edge-a"), setup.node("edge-b"));
    setup.wait_for_ready_count(2, 2, CONVERGE_TIMEOUT).await?;

    setup.fleet.delete_node(&edge_b).await?;

    // The pod garbage collector deletes pods bound to a missing node after
    // a 40 s quarantine.
    setup
        .wait_for_pods_on(std::slice::from_ref(&edge_a))
        .await?;
    setup.wait_for_ready_count(1, 1, CONVERGE_TIMEOUT).await?;
    let remaining: Vec<String> = setup
        .fleet
        .list_nodes()
        .await?
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    ensure!(
        !remaining.contains(&edge_b),
        "node {edge_b} still listed: {remaining:?}"
    );
    setup.namespace.delete().await?;
    Ok(())
}

fn daemon_set_manifest(namespace: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {DAEMON_SET}
spec:
  selector:
    matchLabels:
      app: smoke-agent
  template:
    metadata:
      labels:
        app: smoke-agent
    spec:
      nodeSelector:
        {TEST_NAMESPACE_LABEL}: {namespace}
        {POOL_LABEL}: edge
      containers:
        - name: agent
          image: busybox:1.36
          resources:
            requests:
              cpu: 100m
              memory: 64Mi
"#
    )
}

async fn wait_for_node_ready_status(
    fleet: &Fleet,
    node: &str,
    expected: &str,
    timeout: Duration,
) -> Result<Node> {
    let description = format!("node {node} to report Ready={expected}");
    let node = wait_for(&description, timeout, || async {
        let node = fleet.get_node(node).await.map_err(Unmet::pending)?;
        let status = ready_status(&node);
        if status.as_deref() == Some(expected) {
            Ok(node)
        } else {
            Err(Unmet::pending(format!("Ready={status:?}")))
        }
    })
    .await?;
    Ok(node)
}

async fn wait_for_taint(fleet: &Fleet, node: &str, key: &str) -> Result<Node> {
    let description = format!("node {node} to get taint {key}");
    let node = wait_for(&description, CONVERGE_TIMEOUT, || async {
        let node = fleet.get_node(node).await.map_err(Unmet::pending)?;
        if has_taint(&node, key) {
            Ok(node)
        } else {
            Err(Unmet::pending(format!("taints: {:?}", taints(&node))))
        }
    })
    .await?;
    Ok(node)
}

async fn wait_for_untainted(fleet: &Fleet, node: &str) -> Result<Node> {
    let description = format!("node {node} to lose its node.kubernetes.io taints");
    let node = wait_for(&description, CONVERGE_TIMEOUT, || async {
        let node = fleet.get_node(node).await.map_err(Unmet::pending)?;
        let lifecycle_taints: Vec<String> = taints(&node)
            .into_iter()
            .filter(|key| key.starts_with("node.kubernetes.io/"))
            .collect();
        if lifecycle_taints.is_empty() {
            Ok(node)
        } else {
            Err(Unmet::pending(format!("taints: {lifecycle_taints:?}")))
        }
    })
    .await?;
    Ok(node)
}

async fn wait_for_pod_ready(
    setup: &Setup,
    node: &str,
    expected: bool,
    timeout: Duration,
) -> Result<Pod> {
    let description = format!("the DaemonSet pod on {node} to be Ready={expected}");
    let pod = wait_for(&description, timeout, || async {
        let pods = setup.pods_by_node().await?;
        match pods.get(node) {
            Some(pod) if pod_is_ready(pod) == expected => Ok(pod.clone()),
            Some(_) => Err(Unmet::pending(format!("pod Ready={}", !expected))),
            None => Err(Unmet::pending(format!("no pod on {node}"))),
        }
    })
    .await?;
    Ok(pod)
}

fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|condition| condition.type_ == "Ready")
        .map(|condition| condition.status.clone())
}

fn ready_message(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|condition| condition.type_ == "Ready")?
        .message
        .clone()
}

fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|condition| condition.type_ == "Ready")
        })
        .is_some_and(|condition| condition.status == "True")
}

fn taints(node: &Node) -> Vec<String> {
    node.spec
        .as_ref()
        .and_then(|spec| spec.taints.as_ref())
        .map(|taints| {
            taints
                .iter()
                .map(|taint| format!("{}:{}", taint.key, taint.effect))
                .collect()
        })
        .unwrap_or_default()
}

fn has_taint(node: &Node, key: &str) -> bool {
    taints(node)
        .iter()
        .any(|taint| taint.starts_with(&format!("{key}:")))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("visionfleet_e2e=info"));
    // Several tests in one binary each try; only the first succeeds.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
