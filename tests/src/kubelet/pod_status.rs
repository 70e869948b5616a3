//! The pod status a kubelet would report for a running or crash-looping pod.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Waiting reason a kubelet gives a container that keeps exiting.
const CRASH_LOOP_REASON: &str = "CrashLoopBackOff";

/// What the containers of a pod do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PodBehaviour {
    /// All containers run and pass their readiness probes.
    Running,
    /// Every container exits with code 1 and `reason` as its termination
    /// message, and waits in CrashLoopBackOff.
    CrashLooping { reason: String },
}

/// Returns whether the pod's status already shows `behaviour`, so the
/// kubelet does not patch it again (each patch triggers another watch event).
pub(crate) fn is_current(pod: &Pod, behaviour: &PodBehaviour) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    if status.phase.as_deref() != Some("Running") || status.pod_ip.is_none() {
        return false;
    }

    let expected_ready = *behaviour == PodBehaviour::Running;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|condition| condition.type_ == "Ready")
        .map(|condition| condition.status == "True");
    if ready != Some(expected_ready) {
        return false;
    }

    let statuses = status.container_statuses.as_deref().unwrap_or_default();
    containers(pod).iter().all(|container| {
        statuses
            .iter()
            .find(|status| status.name == container.name)
            .is_some_and(|status| container_shows(status, behaviour))
    })
}

fn container_shows(status: &ContainerStatus, behaviour: &PodBehaviour) -> bool {
    let state = status.state.as_ref();
    match behaviour {
        PodBehaviour::Running => status.ready && state.is_some_and(|state| state.running.is_some()),
        PodBehaviour::CrashLooping { reason } => {
            let waiting_reason = state
                .and_then(|state| state.waiting.as_ref())
                .and_then(|waiting| waiting.reason.as_deref());
            let last_message = status
                .last_state
                .as_ref()
                .and_then(|last| last.terminated.as_ref())
                .and_then(|terminated| terminated.message.as_deref());
            !status.ready
                && waiting_reason == Some(CRASH_LOOP_REASON)
                && last_message == Some(reason.as_str())
        }
    }
}

/// Builds the status for `behaviour`. Keeps the pod's IP, start time and the
/// start time of containers that already run.
pub(crate) fn desired_status(
    pod: &Pod,
    behaviour: &PodBehaviour,
    host_ip: &str,
    now: Timestamp,
) -> PodStatus {
    let current = pod.status.clone().unwrap_or_default();
    let pod_ip = current
        .pod_ip
        .clone()
        .unwrap_or_else(|| allocate_pod_ip().to_string());
    let container_names: Vec<String> = containers(pod)
        .iter()
        .map(|container| container.name.clone())
        .collect();
    let ready = *behaviour == PodBehaviour::Running;

    let container_statuses = containers(pod)
        .iter()
        .map(|container| {
            let previous = current
                .container_statuses
                .iter()
                .flatten()
                .find(|status| status.name == container.name);
            container_status(pod, container, previous, behaviour, now)
        })
        .collect();
    let init_container_statuses = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.init_containers.as_ref())
        .map(|init_containers| {
            init_containers
                .iter()
                .map(|container| completed_init_container_status(pod, container, now))
                .collect()
        });

    PodStatus {
        phase: Some("Running".to_owned()),
        host_ip: Some(host_ip.to_owned()),
        pod_ip: Some(pod_ip.clone()),
        pod_ips: Some(vec![PodIP { ip: pod_ip }]),
        start_time: current.start_time.clone().or(Some(Time(now))),
        conditions: Some(pod_conditions(&current, ready, &container_names, now)),
        container_statuses: Some(container_statuses),
        init_container_statuses,
        ..PodStatus::default()
    }
}

/// Initialized, ContainersReady, Ready and PodScheduled, keeping each
/// condition's lastTransitionTime while its status is unchanged.
fn pod_conditions(
    current: &PodStatus,
    ready: bool,
    container_names: &[String],
    now: Timestamp,
) -> Vec<PodCondition> {
    let (ready_status, not_ready_reason, not_ready_message) = if ready {
        ("True", None, None)
    } else {
        (
            "False",
            Some("ContainersNotReady".to_owned()),
            Some(format!(
                "containers with unready status: [{}]",
                container_names.join(" ")
            )),
        )
    };
    let reported = [
        ("Initialized", "True", None, None),
        (
            "Ready",
            ready_status,
            not_ready_reason.clone(),
            not_ready_message.clone(),
        ),
        (
            "ContainersReady",
            ready_status,
            not_ready_reason,
            not_ready_message,
        ),
        ("PodScheduled", "True", None, None),
    ];

    reported
        .into_iter()
        .map(|(type_, status, reason, message)| {
            let transition = current
                .conditions
                .iter()
                .flatten()
                .find(|condition| condition.type_ == type_ && condition.status == status)
                .and_then(|condition| condition.last_transition_time.clone())
                .unwrap_or(Time(now));
            PodCondition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason,
                message,
                last_transition_time: Some(transition),
                ..PodCondition::default()
            }
        })
        .collect()
}

fn container_status(
    pod: &Pod,
    container: &Container,
    previous: Option<&ContainerStatus>,
    behaviour: &PodBehaviour,
    now: Timestamp,
) -> ContainerStatus {
    let restart_count = previous.map(|status| status.restart_count).unwrap_or(0);
    let base = ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id: container.image.clone().unwrap_or_default(),
        container_id: Some(container_id(pod, container)),
        restart_count,
        ..ContainerStatus::default()
    };

    match behaviour {
        PodBehaviour::Running => {
            let started_at = previous
                .and_then(|status| status.state.as_ref())
                .and_then(|state| state.running.as_ref())
                .and_then(|running| running.started_at.clone())
                .unwrap_or(Time(now));
            ContainerStatus {
                ready: true,
                started: Some(true),
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(started_at),
                    }),
                    ..ContainerState::default()
                }),
                ..base
            }
        }
        PodBehaviour::CrashLooping { reason } => {
            let already_crash_looping =
                previous.is_some_and(|status| container_shows(status, behaviour));
            ContainerStatus {
                ready: false,
                started: Some(false),
                restart_count: if already_crash_looping {
                    restart_count
                } else {
                    restart_count + 1
                },
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(CRASH_LOOP_REASON.to_owned()),
                        message: Some(format!(
                            "back-off 10s restarting failed container={} pod={}",
                            container.name,
                            pod.metadata.name.as_deref().unwrap_or_default()
                        )),
                    }),
                    ..ContainerState::default()
                }),
                last_state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 1,
                        reason: Some("Error".to_owned()),
                        message: Some(reason.clone()),
                        finished_at: Some(Time(now)),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }),
                ..base
            }
        }
    }
}

fn completed_init_container_status(
    pod: &Pod,
    container: &Container,
    now: Timestamp,
) -> ContainerStatus {
    ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id: container.image.clone().unwrap_or_default(),
        container_id: Some(container_id(pod, container)),
        ready: true,
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 0,
                reason: Some("Completed".to_owned()),
                finished_at: Some(Time(now)),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    }
}

fn containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|spec| spec.containers.as_slice())
        .unwrap_or_default()
}

fn container_id(pod: &Pod, container: &Container) -> String {
    format!(
        "visionfleet-e2e://{}/{}",
        pod.metadata.uid.as_deref().unwrap_or_default(),
        container.name
    )
}

/// Hands out pod IPs from 127.1.0.1 to 127.1.255.254, unique within this
/// process until it wraps after 65,534 pods. Loopback addresses keep anything
/// that dials a pod IP on this machine.
fn allocate_pod_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let index = NEXT.fetch_add(1, Ordering::Relaxed) % 65_534 + 1;
    let [_, _, high, low] = index.to_be_bytes();
    Ipv4Addr::new(127, 1, high, low)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
    use k8s_openapi::jiff::Timestamp;
    use kube::api::ObjectMeta;

    use super::{PodBehaviour, desired_status, is_current};

    fn pod_with_containers(names: &[&str]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("agent-x".to_owned()),
                uid: Some("uid-1".to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: names
                    .iter()
                    .map(|name| Container {
                        name: (*name).to_owned(),
                        image: Some("busybox".to_owned()),
                        ..Container::default()
                    })
                    .collect(),
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn running_status_is_current_after_apply() {
        let mut pod = pod_with_containers(&["agent", "sidecar"]);
        assert!(!is_current(&pod, &PodBehaviour::Running));

        pod.status = Some(desired_status(
            &pod,
            &PodBehaviour::Running,
            "127.0.0.1",
            Timestamp::now(),
        ));

        assert!(is_current(&pod, &PodBehaviour::Running));
        let status = pod.status.as_ref().expect("status set");
        assert!(
            status
                .pod_ip
                .as_deref()
                .is_some_and(|ip| ip.starts_with("127."))
        );
        assert_eq!(status.container_statuses.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn crash_loop_restarts_counted_once() {
        let crash = PodBehaviour::CrashLooping {
            reason: "model file is corrupt".to_owned(),
        };
        let mut pod = pod_with_containers(&["agent"]);
        pod.status = Some(desired_status(
            &pod,
            &PodBehaviour::Running,
            "127.0.0.1",
            Timestamp::now(),
        ));
        assert!(!is_current(&pod, &crash));

        pod.status = Some(desired_status(&pod, &crash, "127.0.0.1", Timestamp::now()));
        pod.status = Some(desired_status(&pod, &crash, "127.0.0.1", Timestamp::now()));

        assert!(is_current(&pod, &crash));
        assert!(!is_current(&pod, &PodBehaviour::Running));
        let statuses = pod
            .status
            .and_then(|status| status.container_statuses)
            .unwrap_or_default();
        assert_eq!(statuses[0].restart_count, 1);
        assert!(!statuses[0].ready);
    }

    #[test]
    fn pod_ip_kept_across_updates() {
        let mut pod = pod_with_containers(&["agent"]);
        pod.status = Some(desired_status(
            &pod,
            &PodBehaviour::Running,
            "127.0.0.1",
            Timestamp::now(),
        ));
        let first_ip = pod.status.as_ref().and_then(|status| status.pod_ip.clone());

        let crash = PodBehaviour::CrashLooping {
            reason: "exit".to_owned(),
        };
        let status = desired_status(&pod, &crash, "127.0.0.1", Timestamp::now());

        assert_eq!(status.pod_ip, first_ip);
    }
}
