//! Computes a VisionModel's status from what the reconcile found: the spec
//! check, the model check, the agent DaemonSets and the agents' own reports
//! on their pods. A pure function, so every rule is unit-tested.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use visionfleet_api::labels::{
    POD_CONDITION_INFERENCE_READY, POD_DEVICE_ANNOTATION, POD_FALLBACK_ANNOTATION,
    POD_LAST_ERROR_ANNOTATION, condition,
};
use visionfleet_api::{
    DeviceCount, FailingNode, MAX_FAILING_NODES, NodeCounts, ResolvedModel, VisionModel,
    VisionModelStatus,
};

/// Container waiting reasons that mean the agent cannot run, as the kubelet reports them.
const FAILING_WAIT_REASONS: [&str; 6] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
];

/// The outcome of the model check.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelCheck {
    /// The operator downloaded and inspected the model.
    Verified(ResolvedModel),
    /// The model is a file on the nodes, so only the agents can check it.
    NodeLocal,
    /// The model failed its check; the agents keep the model they have.
    Failed { reason: String, message: String },
    /// The spec is invalid, so the model was not checked.
    NotChecked,
}

/// Everything the status is computed from.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    /// The spec check's error message, when the spec is invalid.
    pub invalid_spec: Option<String>,
    pub model: ModelCheck,
    /// Name of the agents' ServiceAccount when it is missing from the
    /// VisionModel's namespace.
    pub missing_agent_account: Option<String>,
    pub daemon_sets: &'a [DaemonSet],
    pub pods: &'a [Pod],
}

/// Computes the new status. Conditions whose status, reason and message are
/// unchanged keep their `lastTransitionTime`, so an unchanged fleet yields
/// an identical status and no write.
pub fn compute(model: &VisionModel, observation: &Observation<'_>, now: Time) -> VisionModelStatus {
    let previous = model.status.clone().unwrap_or_default();
    let generation = model.metadata.generation;

    let nodes = node_counts(observation.daemon_sets);
    let devices = device_counts(observation.pods);
    let failing_nodes = failing_nodes(observation.pods);
    let fallback_nodes = fallback_nodes(observation.pods);
    let resolved = match &observation.model {
        ModelCheck::Verified(resolved) => Some(resolved.clone()),
        _ => previous.model.clone(),
    };

    let facts = Facts {
        observation,
        nodes,
        failing: &failing_nodes,
        fallback: &fallback_nodes,
        rollout_current: rollout_current(observation.daemon_sets),
        serving: previous
            .model
            .as_ref()
            .map(|model| model.short_digest.as_str()),
    };
    let conditions = [
        model_verified(&facts),
        ready(&facts),
        progressing(&facts),
        degraded(&facts),
        accelerator_fallback(&facts),
    ]
    .into_iter()
    .map(|(type_, status, reason, message)| {
        merge(
            &previous.conditions,
            type_,
            status,
            &reason,
            message,
            generation,
            &now,
        )
    })
    .collect();

    VisionModelStatus {
        observed_generation: generation,
        conditions,
        model: resolved,
        nodes: Some(nodes),
        devices_summary: summary(&devices),
        devices,
        failing_nodes: failing_nodes.into_iter().take(MAX_FAILING_NODES).collect(),
    }
}

struct Facts<'a> {
    observation: &'a Observation<'a>,
    nodes: NodeCounts,
    failing: &'a [FailingNode],
    fallback: &'a [String],
    rollout_current: bool,
    serving: Option<&'a str>,
}

/// Type, status, reason and message of one condition.
type ConditionParts = (&'static str, &'static str, String, String);

fn model_verified(facts: &Facts<'_>) -> ConditionParts {
    let type_ = condition::MODEL_VERIFIED;

    match &facts.observation.model {
        ModelCheck::Verified(model) => (
            type_,
            "True",
            "Verified".to_owned(),
            format!(
                "{} model {} ({}, {} labels)",
                model.task, model.digest, model.format, model.label_count
            ),
        ),
        ModelCheck::NodeLocal => (
            type_,
            "Unknown",
            "NodeLocalFile".to_owned(),
            "The model is a file on the nodes; each agent verifies it when it loads".to_owned(),
        ),
        ModelCheck::Failed { reason, message } => (type_, "False", reason.clone(), message.clone()),
        ModelCheck::NotChecked => (
            type_,
            "Unknown",
            "InvalidSpec".to_owned(),
            "The spec is invalid, so the model was not checked".to_owned(),
        ),
    }
}

fn ready(facts: &Facts<'_>) -> ConditionParts {
    let type_ = condition::READY;
    let nodes = facts.nodes;

    if facts.observation.invalid_spec.is_some() {
        return (
            type_,
            "False",
            "InvalidSpec".to_owned(),
            "Fix the spec; see the Degraded condition".to_owned(),
        );
    }
    if facts.observation.daemon_sets.is_empty() {
        return (
            type_,
            "False",
            "NotDeployed".to_owned(),
            "No agent DaemonSet exists yet".to_owned(),
        );
    }
    if let Some(account) = &facts.observation.missing_agent_account {
        return (
            type_,
            "False",
            "AgentServiceAccountMissing".to_owned(),
            format!(
                "ServiceAccount {account} does not exist in this namespace, so no agent pod can be created; add the namespace to the chart's agent.namespaces, or create the account"
            ),
        );
    }
    if nodes.desired == 0 {
        return (
            type_,
            "False",
            "NoMatchingNodes".to_owned(),
            "No node matches the node selector and accelerator placement".to_owned(),
        );
    }
    if nodes.ready == nodes.desired && nodes.updated == nodes.desired && facts.rollout_current {
        return (
            type_,
            "True",
            "AllNodesReady".to_owned(),
            format!("{} of {} nodes ready", nodes.ready, nodes.desired),
        );
    }
    (
        type_,
        "False",
        "NodesNotReady".to_owned(),
        format!(
            "{} of {} nodes ready, {} updated",
            nodes.ready, nodes.desired, nodes.updated
        ),
    )
}

fn progressing(facts: &Facts<'_>) -> ConditionParts {
    let type_ = condition::PROGRESSING;
    let nodes = facts.nodes;

    if let ModelCheck::Failed { .. } = facts.observation.model {
        let serving = facts
            .serving
            .map_or_else(|| "no model".to_owned(), |digest| format!("model {digest}"));
        return (
            type_,
            "False",
            "RolloutHalted".to_owned(),
            format!("The new model failed verification; nodes keep serving {serving}"),
        );
    }
    if facts.observation.invalid_spec.is_some() {
        return (
            type_,
            "False",
            "InvalidSpec".to_owned(),
            "The rollout waits for a valid spec".to_owned(),
        );
    }
    if !facts.rollout_current {
        return (
            type_,
            "True",
            "WaitingForDaemonSetController".to_owned(),
            "The DaemonSet controller has not seen the latest spec yet".to_owned(),
        );
    }
    if nodes.updated < nodes.desired || nodes.available < nodes.desired {
        return (
            type_,
            "True",
            "RollingOut".to_owned(),
            format!(
                "{} of {} nodes updated, {} available",
                nodes.updated, nodes.desired, nodes.available
            ),
        );
    }
    (
        type_,
        "False",
        "RolloutComplete".to_owned(),
        format!("{} nodes run the current model and settings", nodes.desired),
    )
}

fn degraded(facts: &Facts<'_>) -> ConditionParts {
    let type_ = condition::DEGRADED;

    if let Some(message) = &facts.observation.invalid_spec {
        return (type_, "True", "InvalidSpec".to_owned(), message.clone());
    }
    if let ModelCheck::Failed { reason, message } = &facts.observation.model {
        return (
            type_,
            "True",
            "ModelVerificationFailed".to_owned(),
            format!("{reason}: {message}"),
        );
    }
    if !facts.failing.is_empty() {
        let first: Vec<String> = facts
            .failing
            .iter()
            .take(3)
            .map(|node| format!("{} ({})", node.node, node.reason))
            .collect();
        return (
            type_,
            "True",
            "AgentsFailing".to_owned(),
            format!("{} nodes fail: {}", facts.failing.len(), first.join(", ")),
        );
    }
    (
        type_,
        "False",
        "AsExpected".to_owned(),
        "No node reports a failure".to_owned(),
    )
}

fn accelerator_fallback(facts: &Facts<'_>) -> ConditionParts {
    let type_ = condition::ACCELERATOR_FALLBACK;

    if facts.fallback.is_empty() {
        return (
            type_,
            "False",
            "PreferredDevicesInUse".to_owned(),
            "No node fell back to the CPU".to_owned(),
        );
    }
    let first: Vec<&str> = facts.fallback.iter().take(5).map(String::as_str).collect();
    (
        type_,
        "True",
        "CpuFallback".to_owned(),
        format!(
            "{} nodes run on the CPU because their preferred device is missing: {}",
            facts.fallback.len(),
            first.join(", ")
        ),
    )
}

fn merge(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let earlier = previous.iter().find(|condition| condition.type_ == type_);
    let transition = match earlier {
        Some(earlier) if earlier.status == status => earlier.last_transition_time.clone(),
        _ => now.clone(),
    };

    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: transition,
    }
}

fn node_counts(daemon_sets: &[DaemonSet]) -> NodeCounts {
    daemon_sets
        .iter()
        .filter_map(|daemon_set| daemon_set.status.as_ref())
        .fold(NodeCounts::default(), |sum, status| NodeCounts {
            desired: sum.desired + status.desired_number_scheduled,
            updated: sum.updated + status.updated_number_scheduled.unwrap_or(0),
            ready: sum.ready + status.number_ready,
            available: sum.available + status.number_available.unwrap_or(0),
        })
}

/// Checks that the DaemonSet controller has seen every DaemonSet's latest
/// spec; until then, its counts describe the previous one.
fn rollout_current(daemon_sets: &[DaemonSet]) -> bool {
    daemon_sets.iter().all(|daemon_set| {
        let observed = daemon_set
            .status
            .as_ref()
            .and_then(|status| status.observed_generation);
        observed.is_some() && observed >= daemon_set.metadata.generation
    })
}

fn device_counts(pods: &[Pod]) -> Vec<DeviceCount> {
    let mut counts: BTreeMap<&str, i32> = BTreeMap::new();
    for device in pods
        .iter()
        .filter(|pod| is_ready(pod))
        .filter_map(|pod| annotation(pod, POD_DEVICE_ANNOTATION))
    {
        *counts.entry(device).or_default() += 1;
    }

    let mut devices: Vec<DeviceCount> = counts
        .into_iter()
        .map(|(device, nodes)| DeviceCount {
            device: device.to_owned(),
            nodes,
        })
        .collect();
    devices.sort_by(|a, b| b.nodes.cmp(&a.nodes).then_with(|| a.device.cmp(&b.device)));
    devices
}

fn summary(devices: &[DeviceCount]) -> Option<String> {
    if devices.is_empty() {
        return None;
    }
    Some(
        devices
            .iter()
            .map(|count| format!("{}={}", count.device, count.nodes))
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn fallback_nodes(pods: &[Pod]) -> Vec<String> {
    let mut nodes: Vec<String> = pods
        .iter()
        .filter(|pod| annotation(pod, POD_FALLBACK_ANNOTATION) == Some("true"))
        .filter_map(node_name)
        .collect();
    nodes.sort();
    nodes
}

/// Lists the nodes whose agent fails, sorted by node name. The agent's own
/// report wins over the kubelet's, because it names the cause.
fn failing_nodes(pods: &[Pod]) -> Vec<FailingNode> {
    let mut failing: Vec<FailingNode> = pods.iter().filter_map(failure).collect();
    failing.sort_by(|a, b| a.node.cmp(&b.node));
    failing
}

fn failure(pod: &Pod) -> Option<FailingNode> {
    let node = node_name(pod)?;

    if let Some(error) = annotation(pod, POD_LAST_ERROR_ANNOTATION) {
        let (reason, message) = error.split_once(": ").unwrap_or(("AgentError", error));
        return Some(FailingNode {
            node,
            reason: reason.to_owned(),
            message: message.to_owned(),
        });
    }

    let waiting = pod
        .status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|status| status.state.as_ref()?.waiting.as_ref())
        .find(|waiting| {
            waiting
                .reason
                .as_deref()
                .is_some_and(|reason| FAILING_WAIT_REASONS.contains(&reason))
        })?;
    Some(FailingNode {
        node,
        reason: waiting.reason.clone().unwrap_or_default(),
        message: waiting
            .message
            .clone()
            .unwrap_or_else(|| "The agent container cannot start".to_owned()),
    })
}

fn is_ready(pod: &Pod) -> bool {
    pod_condition(pod, "Ready") == Some("True")
        && pod_condition(pod, POD_CONDITION_INFERENCE_READY) != Some("False")
}

fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a str> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|condition| condition.type_ == type_)
        .map(|condition| condition.status.as_str())
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn node_name(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> VisionModel {
        let mut model: VisionModel = serde_norway::from_str(
            "apiVersion: visionfleet.dev/v1alpha1\nkind: VisionModel\nmetadata: {name: shelves, namespace: store-12, generation: 3}\n\
             spec: {model: {url: 'https://models.example.com/a.zip'}, source: {camera: /dev/video0}}",
        )
        .unwrap();
        model.status = None;
        model
    }

    fn daemon_set(yaml: &str) -> DaemonSet {
        serde_norway::from_str(yaml).unwrap()
    }

    fn pod(node: &str, ready: bool, annotations: &[(&str, &str)]) -> Pod {
        let mut pod: Pod = serde_norway::from_str(&format!(
            "metadata: {{name: agent-{node}}}\nspec: {{nodeName: {node}, containers: []}}\nstatus:\n  conditions:\n  - {{type: Ready, status: '{}'}}",
            if ready { "True" } else { "False" }
        ))
        .unwrap();
        pod.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
        );
        pod
    }

    fn resolved() -> ResolvedModel {
        ResolvedModel {
            digest: format!("sha256:{}", "ab".repeat(32)),
            short_digest: "abababababab".to_owned(),
            task: "ObjectDetection".to_owned(),
            format: "CustomVisionDetectionS1".to_owned(),
            label_count: 2,
            input_shape: vec![1, 3, 320, 320],
        }
    }

    const SETTLED: &str = "metadata: {name: shelves-agent-cpu, generation: 2}\nstatus: {observedGeneration: 2, desiredNumberScheduled: 3, \
         currentNumberScheduled: 3, updatedNumberScheduled: 3, numberReady: 3, numberAvailable: 3, numberMisscheduled: 0}";

    fn condition<'a>(status: &'a VisionModelStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|condition| condition.type_ == type_)
            .unwrap()
    }

    fn now() -> Time {
        Time("2026-12-04T12:00:00Z".parse().unwrap())
    }

    #[test]
    fn settled_fleet_is_ready() {
        let daemon_sets = [daemon_set(SETTLED)];
        let pods = [
            pod("edge-1", true, &[(POD_DEVICE_ANNOTATION, "GPU")]),
            pod(
                "edge-2",
                true,
                &[
                    (POD_DEVICE_ANNOTATION, "CPU"),
                    (POD_FALLBACK_ANNOTATION, "true"),
                ],
            ),
            pod("edge-3", true, &[(POD_DEVICE_ANNOTATION, "GPU")]),
        ];
        let observation = Observation {
            invalid_spec: None,
            model: ModelCheck::Verified(resolved()),
            missing_agent_account: None,
            daemon_sets: &daemon_sets,
            pods: &pods,
        };

        let status = compute(&model(), &observation, now());

        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.nodes.unwrap().ready, 3);
        assert_eq!(status.devices_summary.as_deref(), Some("GPU=2,CPU=1"));
        assert_eq!(condition(&status, "Ready").status, "True");
        assert_eq!(condition(&status, "Progressing").reason, "RolloutComplete");
        assert_eq!(condition(&status, "Degraded").status, "False");
        assert_eq!(condition(&status, "AcceleratorFallback").status, "True");
        assert!(
            condition(&status, "AcceleratorFallback")
                .message
                .contains("edge-2")
        );
        assert_eq!(condition(&status, "ModelVerified").reason, "Verified");
    }

    #[test]
    fn missing_agent_account_named_in_ready() {
        let daemon_sets = [daemon_set(
            &SETTLED.replace("numberReady: 3", "numberReady: 0"),
        )];
        let observation = Observation {
            invalid_spec: None,
            model: ModelCheck::Verified(resolved()),
            missing_agent_account: Some("visionfleet-agent".to_owned()),
            daemon_sets: &daemon_sets,
            pods: &[],
        };

        let status = compute(&model(), &observation, now());

        let ready = condition(&status, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "AgentServiceAccountMissing");
        assert!(ready.message.contains("ServiceAccount visionfleet-agent"));
        assert!(ready.message.contains("agent.namespaces"));
    }

    #[test]
    fn stale_daemonset_counts_mean_progressing() {
        let daemon_sets = [daemon_set(
            &SETTLED.replace("generation: 2}", "generation: 3}"),
        )];
        let observation = Observation {
            invalid_spec: None,
            model: ModelCheck::Verified(resolved()),
            missing_agent_account: None,
            daemon_sets: &daemon_sets,
            pods: &[],
        };

        let status = compute(&model(), &observation, now());

        assert_eq!(
            condition(&status, "Progressing").reason,
            "WaitingForDaemonSetController"
        );
        assert_eq!(condition(&status, "Ready").status, "False");
    }

    #[test]
    fn rollout_in_progress_counts_updated() {
        let daemon_sets = [daemon_set(
            &SETTLED.replace("updatedNumberScheduled: 3", "updatedNumberScheduled: 1"),
        )];
        let observation = Observation {
            invalid_spec: None,
            model: ModelCheck::Verified(resolved()),
            missing_agent_account: None,
            daemon_sets: &daemon_sets,
            pods: &[],
        };

        let status = compute(&model(), &observation, now());

        assert_eq!(condition(&status, "Progressing").reason, "RollingOut");
        assert_eq!(
            condition(&status, "Progressing").message,
            "1 of 3 nodes updated, 3 available"
        );
    }

    #[test]
    fn failed_model_halts_rollout_keeps_digest() {
        let mut model = model();
        model.status = Some(VisionModelStatus {
            model: Some(resolved()),
            ..VisionModelStatus::default()
        });
        let daemon_sets = [daemon_set(SETTLED)];
        let observation = Observation {
            invalid_spec: None,
            model: ModelCheck::Failed {
                reason: "NotAZip".to_owned(),
                message: "https://models.example.com/a.zip returned an HTML page".to_owned(),
            },
            missing_agent_account: None,
            daemon_sets: &daemon_sets,
            pods: &[],
        };

        let status = compute(&model, &observation, now());

        assert_eq!(status.model, Some(resolved()));
        assert_eq!(condition(&status, "ModelVerified").status, "False");
        assert_eq!(condition(&status, "ModelVerified").reason, "NotAZip");
        assert_eq!(condition(&status, "Progressing").reason, "RolloutHalted");
        assert!(
            condition(&status, "Progressing")
                .message
                .contains("abababababab")
        );
        assert_eq!(
            condition(&status, "Degraded").reason,
            "ModelVerificationFailed"
        );
    }

    #[test]
    fn invalid_spec_reported_as_degraded() {
        let observation = Observation {
            invalid_spec: Some(
                "spec.source: set exactly one of camera, url and file (2 are set)".to_owned(),
            ),
            model: ModelCheck::NotChecked,
            missing_agent_account: None,
            daemon_sets: &[],
            pods: &[],
        };

        let status = compute(&model(), &observation, now());

        assert_eq!(condition(&status, "Degraded").reason, "InvalidSpec");
        assert!(
            condition(&status, "Degraded")
                .message
                .contains("spec.source")
        );
        assert_eq!(condition(&status, "Ready").reason, "InvalidSpec");
    }

    #[test]
    fn failing_nodes_sorted_and_bounded() {
        let mut pods: Vec<Pod> = (0..15)
            .rev()
            .map(|index| {
                pod(
                    &format!("edge-{index:02}"),
                    false,
                    &[(
                        POD_LAST_ERROR_ANNOTATION,
                        "StreamDown: rtsp://camera/stream timed out",
                    )],
                )
            })
            .collect();
        let mut crashing = pod("edge-99", false, &[]);
        crashing.status.as_mut().unwrap().container_statuses =
            Some(vec![serde_norway::from_str("name: agent\nready: false\nrestartCount: 4\nimage: a\nimageID: ''\nstate: {waiting: {reason: CrashLoopBackOff}}").unwrap()]);
        pods.push(crashing);
        let observation = Observation {
            invalid_spec: None,
            model: ModelCheck::Verified(resolved()),
            missing_agent_account: None,
            daemon_sets: &[],
            pods: &pods,
        };

        let status = compute(&model(), &observation, now());

        assert_eq!(status.failing_nodes.len(), MAX_FAILING_NODES);
        assert_eq!(status.failing_nodes[0].node, "edge-00");
        assert_eq!(status.failing_nodes[0].reason, "StreamDown");
        assert_eq!(condition(&status, "Degraded").reason, "AgentsFailing");
        assert!(
            condition(&status, "Degraded")
                .message
                .starts_with("16 nodes fail: edge-00 (StreamDown)")
        );
    }

    #[test]
    fn unchanged_fleet_gives_identical_status() {
        let daemon_sets = [daemon_set(SETTLED)];
        let observation = Observation {
            invalid_spec: None,
            model: ModelCheck::Verified(resolved()),
            missing_agent_account: None,
            daemon_sets: &daemon_sets,
            pods: &[],
        };
        let mut model = model();
        model.status = Some(compute(&model, &observation, now()));

        let later = Time("2026-12-04T13:00:00Z".parse().unwrap());
        let again = compute(&model, &observation, later);

        assert_eq!(Some(again), model.status);
    }

    #[test]
    fn status_change_moves_transition_time() {
        let settled = [daemon_set(SETTLED)];
        let mut model = model();
        model.status = Some(compute(
            &model,
            &Observation {
                invalid_spec: None,
                model: ModelCheck::Verified(resolved()),
                missing_agent_account: None,
                daemon_sets: &settled,
                pods: &[],
            },
            now(),
        ));
        let rolling = [daemon_set(
            &SETTLED.replace("numberReady: 3", "numberReady: 2"),
        )];

        let later = Time("2026-12-04T13:00:00Z".parse().unwrap());
        let status = compute(
            &model,
            &Observation {
                invalid_spec: None,
                model: ModelCheck::Verified(resolved()),
                missing_agent_account: None,
                daemon_sets: &rolling,
                pods: &[],
            },
            later.clone(),
        );

        assert_eq!(condition(&status, "Ready").last_transition_time, later);
        assert_eq!(
            condition(&status, "ModelVerified").last_transition_time,
            now()
        );
    }
}
