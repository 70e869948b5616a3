//! The agent DaemonSet of one device variant.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, HostPathVolumeSource, KeyToPath, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use visionfleet_api::labels::{CONFIG_HASH_ANNOTATION, VISION_MODEL_LABEL};
use visionfleet_api::{Accelerator, VisionModel};

use super::agent_config::{config_map_name, config_path};
use super::node_paths::node_folders;
use super::placement::{Variant, node_affinity};
use super::{DEVICE_VARIANT_LABEL, SecretMount, mounts, object_meta, vision_model_label};
use crate::names;
use crate::settings::AgentSettings;

/// User and group the agent runs as: the conventional "nonroot" id of
/// distroless images, which the agent image uses.
const AGENT_UID: i64 = 65532;

/// Group that owns `/dev/video*` on Debian and Ubuntu hosts.
const VIDEO_GID: i64 = 44;

/// Builds the DaemonSet that runs the agent on one variant's nodes.
pub fn daemon_set(
    model: &VisionModel,
    variant: &Variant,
    config_hash: &str,
    settings: &AgentSettings,
) -> DaemonSet {
    let name = daemon_set_name(model, variant.device);
    let selector_labels = BTreeMap::from([
        (VISION_MODEL_LABEL.to_owned(), vision_model_label(model)),
        (
            DEVICE_VARIANT_LABEL.to_owned(),
            variant.device.as_str().to_lowercase(),
        ),
    ]);
    let metadata = object_meta(model, Some(variant));

    DaemonSet {
        metadata: ObjectMeta {
            name: Some(name),
            ..metadata.clone()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(selector_labels),
                ..LabelSelector::default()
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(model.spec.rollout.max_unavailable.clone()),
                    ..RollingUpdateDaemonSet::default()
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: metadata.labels,
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_owned(),
                        config_hash.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(model, variant, config_hash, settings)),
            },
            ..DaemonSetSpec::default()
        }),
        status: None,
    }
}

/// Returns the DaemonSet name of a VisionModel's device variant.
pub fn daemon_set_name(model: &VisionModel, device: Accelerator) -> String {
    let name = model.metadata.name.as_deref().unwrap_or_default();
    names::fit(
        &format!("{name}-agent-{}", device.as_str().to_lowercase()),
        names::MAX_DAEMONSET_NAME,
    )
}

fn pod_spec(
    model: &VisionModel,
    variant: &Variant,
    config_hash: &str,
    settings: &AgentSettings,
) -> PodSpec {
    let (volumes, volume_mounts) = volumes(model, config_hash, settings);

    PodSpec {
        service_account_name: Some(settings.service_account.clone()),
        affinity: node_affinity(variant).map(|node_affinity| Affinity {
            node_affinity: Some(node_affinity),
            ..Affinity::default()
        }),
        tolerations: Some(model.spec.agent.tolerations.clone())
            .filter(|tolerations| !tolerations.is_empty()),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(AGENT_UID),
            run_as_group: Some(AGENT_UID),
            fs_group: Some(AGENT_UID),
            supplemental_groups: model.spec.source.camera.as_ref().map(|_| vec![VIDEO_GID]),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        containers: vec![Container {
            name: "agent".to_owned(),
            image: Some(
                model
                    .spec
                    .agent
                    .image
                    .clone()
                    .unwrap_or_else(|| settings.image.clone()),
            ),
            image_pull_policy: Some(settings.image_pull_policy.clone()),
            args: Some(vec![
                "serve".to_owned(),
                "--config".to_owned(),
                config_path().display().to_string(),
            ]),
            env: Some(downward_api_env()),
            ports: Some(vec![ContainerPort {
                name: Some("http".to_owned()),
                container_port: settings.http_port,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            }]),
            readiness_probe: Some(http_probe("/readyz", 5, 2)),
            liveness_probe: Some(http_probe("/healthz", 20, 60)),
            resources: Some(resources(model, variant, settings)),
            security_context: Some(container_security(variant.device)),
            volume_mounts: Some(volume_mounts),
            ..Container::default()
        }],
        volumes: Some(volumes),
        ..PodSpec::default()
    }
}

/// The agent learns its node and pod from the downward API, so it can read
/// its node's override annotation and report its state on its own pod.
fn downward_api_env() -> Vec<EnvVar> {
    [
        ("NODE_NAME", "spec.nodeName"),
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ]
    .into_iter()
    .map(|(name, field)| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    })
    .collect()
}

/// Probes the agent's named `http` port. The liveness probe starts late
/// because the first start downloads and compiles the model, which can take
/// minutes on a slow link; readiness holds the pod back until then.
fn http_probe(path: &str, period_seconds: i32, initial_delay_seconds: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay_seconds),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// Adds one unit of the variant's device-plugin resource, and of the camera
/// resource when the cluster has one, to the user's requests and limits.
fn resources(
    model: &VisionModel,
    variant: &Variant,
    settings: &AgentSettings,
) -> ResourceRequirements {
    let mut resources = model.spec.agent.resources.clone().unwrap_or_default();

    let device_resource = variant
        .mapping
        .as_ref()
        .and_then(|mapping| mapping.resource.clone());
    let camera_resource = model
        .spec
        .source
        .camera
        .as_ref()
        .and(settings.camera_resource.clone());

    for resource in device_resource.into_iter().chain(camera_resource) {
        resources
            .limits
            .get_or_insert_with(BTreeMap::new)
            .insert(resource.clone(), Quantity("1".to_owned()));
        resources
            .requests
            .get_or_insert_with(BTreeMap::new)
            .insert(resource, Quantity("1".to_owned()));
    }
    resources
}

/// Non-root, read-only root filesystem, no capabilities, except for the
/// NCS2 variant.
///
/// An NCS2 stick enumerates as 03e7:2485 and, once the runtime has uploaded
/// its firmware, re-enumerates as 03e7:f63b on a new USB device node. A
/// device plugin hands a container fixed device nodes, so it cannot follow
/// the stick: the container needs the whole `/dev/bus/usb` tree and access
/// to USB character devices (major 189) as they appear, which Kubernetes
/// grants only to privileged containers.
fn container_security(device: Accelerator) -> SecurityContext {
    if device == Accelerator::Myriad {
        return SecurityContext {
            privileged: Some(true),
            read_only_root_filesystem: Some(true),
            ..SecurityContext::default()
        };
    }

    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn volumes(
    model: &VisionModel,
    config_hash: &str,
    settings: &AgentSettings,
) -> (Vec<Volume>, Vec<VolumeMount>) {
    let spec = &model.spec;
    let mut set = VolumeSet::default();

    set.add(
        Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(model, config_hash),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        mounts::CONFIG,
        true,
    );
    set.add(
        host_path("cache", &settings.node_cache_path, "DirectoryOrCreate"),
        mounts::CACHE,
        false,
    );
    set.add(
        Volume {
            name: "tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("256Mi".to_owned())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
        "/tmp",
        false,
    );

    if let Some(url_from) = &spec.model.url_from {
        set.add_secret(
            SecretMount::ModelUrl,
            &url_from.name,
            Some((&url_from.key, "url")),
        );
    }
    if let Some(secret) = &spec.source.credentials_secret {
        set.add_secret(SecretMount::SourceCredentials, secret, None);
    }
    for (index, sink) in spec.output.sinks.iter().enumerate() {
        if let Some(secret) = &sink.credentials_secret {
            set.add_secret(SecretMount::SinkCredentials(index), secret, None);
        }
    }

    if let Some(camera) = &spec.source.camera
        && settings.camera_resource.is_none()
    {
        // NOTE: the container runtime must also allow the device in the pod's
        // device cgroup; containerd does so for host device mounts only in
        // privileged pods unless a camera device plugin is configured.
        set.add(host_path("camera", camera, "CharDevice"), camera, false);
    }
    for (index, folder) in node_folders(spec).iter().enumerate() {
        // A folder that only a File sink names may not exist yet.
        let type_ = if folder.read_only {
            "Directory"
        } else {
            "DirectoryOrCreate"
        };
        set.add(
            host_path(&format!("node-{index}"), &folder.host_path, type_),
            &folder.mount_path,
            folder.read_only,
        );
    }
    if spec.accelerator.preference.contains(&Accelerator::Myriad) {
        set.add(
            host_path("usb", "/dev/bus/usb", "Directory"),
            "/dev/bus/usb",
            false,
        );
    }

    (set.volumes, set.mounts)
}

#[derive(Default)]
struct VolumeSet {
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
}

impl VolumeSet {
    fn add(&mut self, volume: Volume, mount_path: &str, read_only: bool) {
        self.mounts.push(VolumeMount {
            name: volume.name.clone(),
            mount_path: mount_path.to_owned(),
            read_only: Some(read_only),
            ..VolumeMount::default()
        });
        self.volumes.push(volume);
    }

    fn add_secret(&mut self, mount: SecretMount, secret: &str, single_key: Option<(&str, &str)>) {
        let volume = Volume {
            name: mount.volume(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_owned()),
                items: single_key.map(|(key, path)| {
                    vec![KeyToPath {
                        key: key.to_owned(),
                        path: path.to_owned(),
                        ..KeyToPath::default()
                    }]
                }),
                // Readable by the agent's group only.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        };
        self.add(volume, &mount.path().display().to_string(), true);
    }
}

fn host_path(name: &str, path: &str, type_: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        host_path: Some(HostPathVolumeSource {
            path: path.to_owned(),
            type_: Some(type_.to_owned()),
        }),
        ..Volume::default()
    }
}
