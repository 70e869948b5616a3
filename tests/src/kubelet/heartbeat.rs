//! Node heartbeats: the node Lease and the conditions a kubelet reports.
//!
//! kube-controller-manager's node lifecycle controller marks a node's Ready
//! condition Unknown, and taints the node unreachable, once neither its Lease
//! nor its status changed for `--node-monitor-grace-period` (40 s by default
//! in Kubernetes 1.20).

use k8s_openapi::Resource;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::FIELD_MANAGER;

/// Namespace where kubelets keep one Lease per node.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Kubelet default for `nodeLeaseDurationSeconds` in Kubernetes 1.20.
const LEASE_DURATION_SECONDS: i32 = 40;

/// The Ready condition a kubelet reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    Ready,
    NotReady { reason: String },
}

/// Creates or renews the node's Lease with server-side apply. The Lease is
/// owned by the Node, so the garbage collector deletes it with the Node.
pub(crate) async fn renew_lease(client: &Client, node: &Node) -> Result<(), kube::Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(NODE_LEASE_NAMESPACE.to_owned()),
            owner_references: node_owner_reference(node).map(|owner| vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.clone()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        }),
    };

    let mut body = serde_json::to_value(&lease).map_err(kube::Error::SerdeError)?;
    body["apiVersion"] = json!("coordination.k8s.io/v1");
    body["kind"] = json!("Lease");
    Api::<Lease>::namespaced(client.clone(), NODE_LEASE_NAMESPACE)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
    Ok(())
}

/// Reports the node's conditions with a fresh heartbeat time. A strategic
/// merge patch replaces only the conditions of these types.
pub(crate) async fn report_conditions(
    client: &Client,
    name: &str,
    readiness: &Readiness,
) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let current = nodes.get_status(name).await?;
    let previous = current
        .status
        .and_then(|status| status.conditions)
        .unwrap_or_default();

    let conditions = node_conditions(readiness, &previous, Timestamp::now());
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Strategic(json!({ "status": { "conditions": conditions } })),
        )
        .await?;
    Ok(())
}

/// Builds the four conditions a Kubernetes 1.20 kubelet reports. A condition keeps
/// its lastTransitionTime from `previous` while its status is unchanged.
pub(crate) fn node_conditions(
    readiness: &Readiness,
    previous: &[NodeCondition],
    now: Timestamp,
) -> Vec<NodeCondition> {
    let (ready_status, ready_reason, ready_message) = match readiness {
        Readiness::Ready => (
            "True",
            "KubeletReady",
            "kubelet is posting ready status".to_owned(),
        ),
        Readiness::NotReady { reason } => ("False", "KubeletNotReady", reason.clone()),
    };
    let reported = [
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available".to_owned(),
        ),
        (
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure".to_owned(),
        ),
        (
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available".to_owned(),
        ),
        ("Ready", ready_status, ready_reason, ready_message),
    ];

    reported
        .into_iter()
        .map(|(type_, status, reason, message)| {
            let unchanged = previous
                .iter()
                .find(|condition| condition.type_ == type_ && condition.status == status);
            let transition = unchanged
                .and_then(|condition| condition.last_transition_time.clone())
                .unwrap_or(Time(now));
            NodeCondition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: Some(reason.to_owned()),
                message: Some(message),
                last_heartbeat_time: Some(Time(now)),
                last_transition_time: Some(transition),
            }
        })
        .collect()
}

fn node_owner_reference(node: &Node) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: Node::API_VERSION.to_owned(),
        kind: Node::KIND.to_owned(),
        name: node.metadata.name.clone()?,
        uid: node.metadata.uid.clone()?,
        ..OwnerReference::default()
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::NodeCondition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::{Readiness, node_conditions};

    fn ready_condition(conditions: &[NodeCondition]) -> &NodeCondition {
        conditions
            .iter()
            .find(|condition| condition.type_ == "Ready")
            .expect("Ready condition reported")
    }

    #[test]
    fn unchanged_status_keeps_transition_time() {
        let earlier = Timestamp::from_second(1_000).expect("valid timestamp");
        let now = Timestamp::from_second(2_000).expect("valid timestamp");
        let previous = node_conditions(&Readiness::Ready, &[], earlier);

        let conditions = node_conditions(&Readiness::Ready, &previous, now);

        let ready = ready_condition(&conditions);
        assert_eq!(ready.last_transition_time, Some(Time(earlier)));
        assert_eq!(ready.last_heartbeat_time, Some(Time(now)));
    }

    #[test]
    fn changed_status_moves_transition_time() {
        let earlier = Timestamp::from_second(1_000).expect("valid timestamp");
        let now = Timestamp::from_second(2_000).expect("valid timestamp");
        let previous = node_conditions(&Readiness::Ready, &[], earlier);
        let readiness = Readiness::NotReady {
            reason: "container runtime is down".to_owned(),
        };

        let conditions = node_conditions(&readiness, &previous, now);

        let ready = ready_condition(&conditions);
        assert_eq!(ready.status, "False");
        assert_eq!(ready.message.as_deref(), Some("container runtime is down"));
        assert_eq!(ready.last_transition_time, Some(Time(now)));
        assert_eq!(conditions.len(), 4);
    }
}
