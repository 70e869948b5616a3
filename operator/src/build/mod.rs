//! Pure builders of the objects a VisionModel needs: the agent ConfigMap
//! and one agent DaemonSet per device variant. No I/O happens here, so
//! every builder is tested with plain fixtures.

mod agent_config;
mod daemonset;
mod node_paths;
mod placement;

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Resource;
use kube::api::ObjectMeta;
use visionfleet_api::VisionModel;
use visionfleet_api::labels::{
    AGENT_COMPONENT, COMPONENT_LABEL, MANAGED_BY_LABEL, OPERATOR_FIELD_MANAGER, VISION_MODEL_LABEL,
};

pub use agent_config::{agent_config, config_map_name};
pub use placement::{Variant, variants};

use crate::names;
use crate::settings::AgentSettings;

/// Label on agent DaemonSets and pods with the device variant, lowercase.
pub const DEVICE_VARIANT_LABEL: &str = "visionfleet.dev/device-variant";

/// Annotation with the hash of an object as the operator last built it, so
/// that a reconcile that would change nothing makes no API write.
pub const BUILD_HASH_ANNOTATION: &str = "visionfleet.dev/build-hash";

/// Paths inside the agent container.
pub mod mounts {
    /// The AgentConfig ConfigMap.
    pub const CONFIG: &str = "/etc/visionfleet";
    /// The node-local model and compile caches.
    pub const CACHE: &str = "/var/lib/visionfleet";
    /// Mounted Secrets.
    pub const SECRETS: &str = "/var/run/visionfleet";
    /// Node folders the spec names, each at its node path under this one.
    pub const NODE: &str = "/host";
}

/// A Secret volume of the agent pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretMount {
    /// The Secret key holding the model URL.
    ModelUrl,
    /// The stream's `username` and `password`.
    SourceCredentials,
    /// An MQTT sink's `username` and `password`, by sink index.
    SinkCredentials(usize),
}

impl SecretMount {
    /// Returns the volume name.
    pub fn volume(self) -> String {
        match self {
            Self::ModelUrl => "model-url".to_owned(),
            Self::SourceCredentials => "source-credentials".to_owned(),
            Self::SinkCredentials(index) => format!("sink-{index}-credentials"),
        }
    }

    /// Returns the mount folder.
    pub fn path(self) -> PathBuf {
        PathBuf::from(mounts::SECRETS).join(self.volume())
    }
}

/// What the operator verified about the model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifiedModel {
    /// sha256 of the verified download, 64 hex digits; `None` when the model
    /// is a file on the nodes, which the operator cannot read.
    pub sha256: Option<String>,
}

/// Every object a VisionModel needs, as it should be.
#[derive(Clone, Debug)]
pub struct DesiredObjects {
    pub config_map: ConfigMap,
    pub daemon_sets: Vec<DaemonSet>,
}

/// Builds the desired objects of a VisionModel.
pub fn desired(
    model: &VisionModel,
    verified: &VerifiedModel,
    settings: &AgentSettings,
) -> DesiredObjects {
    let config_json = agent_config(model, verified).to_json();
    let config_hash = names::short_hash(config_json.as_bytes(), 64);
    let config_map = with_build_hash(agent_config::config_map(model, &config_json, &config_hash));

    let daemon_sets = variants(
        &model.spec.node_selector,
        &model.spec.accelerator,
        &settings.accelerators,
    )
    .iter()
    .map(|variant| {
        with_build_hash(daemonset::daemon_set(
            model,
            variant,
            &config_hash,
            settings,
        ))
    })
    .collect();

    DesiredObjects {
        config_map,
        daemon_sets,
    }
}

/// Returns the label value naming a VisionModel, fitted to 63 characters.
pub fn vision_model_label(model: &VisionModel) -> String {
    names::fit(
        model.metadata.name.as_deref().unwrap_or_default(),
        names::MAX_LABEL_VALUE,
    )
}

/// Returns the labels every generated object carries.
pub fn common_labels(model: &VisionModel) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "visionfleet-agent".to_owned(),
        ),
        (
            "app.kubernetes.io/instance".to_owned(),
            vision_model_label(model),
        ),
        (COMPONENT_LABEL.to_owned(), AGENT_COMPONENT.to_owned()),
        (
            MANAGED_BY_LABEL.to_owned(),
            OPERATOR_FIELD_MANAGER.to_owned(),
        ),
        (VISION_MODEL_LABEL.to_owned(), vision_model_label(model)),
    ])
}

/// Returns metadata with the namespace, labels and controller owner
/// reference of a generated object; deleting the VisionModel lets the
/// garbage collector remove it.
fn object_meta(model: &VisionModel, variant: Option<&Variant>) -> ObjectMeta {
    let mut labels = common_labels(model);
    if let Some(variant) = variant {
        labels.insert(
            DEVICE_VARIANT_LABEL.to_owned(),
            variant.device.as_str().to_lowercase(),
        );
    }

    ObjectMeta {
        namespace: model.metadata.namespace.clone(),
        labels: Some(labels),
        owner_references: model.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

/// Stamps an object with the hash of its own content.
fn with_build_hash<K: Resource + serde::Serialize>(mut object: K) -> K {
    // Serializing a k8s-openapi object cannot fail.
    let content = serde_json::to_vec(&object).unwrap_or_default();
    let hash = names::short_hash(&content, 16);
    object
        .meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(BUILD_HASH_ANNOTATION.to_owned(), hash);
    object
}

/// Returns the build hash an object carries, if any.
pub fn build_hash<K: Resource>(object: &K) -> Option<&str> {
    object
        .meta()
        .annotations
        .as_ref()?
        .get(BUILD_HASH_ANNOTATION)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Container;
    use visionfleet_api::AgentConfig;
    use visionfleet_api::agent_config::AGENT_CONFIG_FILE;

    use super::*;

    fn model(yaml: &str) -> VisionModel {
        let mut model: VisionModel = serde_norway::from_str(yaml).unwrap();
        model.metadata.uid = Some("7c1e6a52-4d0b-4b7e-9d7e-3c2f1a0b9e8d".to_owned());
        model
    }

    const SHELF: &str = r#"
apiVersion: visionfleet.dev/v1alpha1
kind: VisionModel
metadata: {name: shelf-detection, namespace: store-12}
spec:
  model:
    urlFrom: {name: shelf-model, key: sas-url}
  nodeSelector:
    matchLabels: {visionfleet.dev/role: shop-camera}
  accelerator:
    preference: [MYRIAD, GPU, CPU]
  source:
    url: rtsp://camera.store.local:554/stream1
    credentialsSecret: shelf-camera
  output:
    sinks:
    - {type: Mqtt, url: "mqtt://broker:1883", credentialsSecret: broker-login}
  rollout:
    maxUnavailable: 10%
"#;

    fn verified() -> VerifiedModel {
        VerifiedModel {
            sha256: Some("ab".repeat(32)),
        }
    }

    fn agent_container(daemon_set: &DaemonSet) -> &Container {
        &daemon_set
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
    }

    #[test]
    fn one_daemonset_per_device_variant() {
        let desired = desired(&model(SHELF), &verified(), &AgentSettings::default());

        let names: Vec<_> = desired
            .daemon_sets
            .iter()
            .map(|ds| ds.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "shelf-detection-agent-myriad",
                "shelf-detection-agent-gpu",
                "shelf-detection-agent-cpu"
            ]
        );
    }

    #[test]
    fn daemonset_matches_fixture() {
        let desired = desired(&model(SHELF), &verified(), &AgentSettings::default());
        let gpu = serde_json::to_value(&desired.daemon_sets[1]).unwrap();

        let expected: serde_json::Value = serde_norway::from_str(
            r#"
metadata:
  name: shelf-detection-agent-gpu
  namespace: store-12
  labels:
    app.kubernetes.io/component: inference-agent
    app.kubernetes.io/instance: shelf-detection
    app.kubernetes.io/managed-by: visionfleet-operator
    app.kubernetes.io/name: visionfleet-agent
    visionfleet.dev/device-variant: gpu
    visionfleet.dev/vision-model: shelf-detection
  ownerReferences:
  - apiVersion: visionfleet.dev/v1alpha1
    kind: VisionModel
    name: shelf-detection
    uid: 7c1e6a52-4d0b-4b7e-9d7e-3c2f1a0b9e8d
    controller: true
selector:
  matchLabels:
    visionfleet.dev/device-variant: gpu
    visionfleet.dev/vision-model: shelf-detection
updateStrategy:
  type: RollingUpdate
  rollingUpdate: {maxUnavailable: 10%}
nodeSelectorTerms:
- matchExpressions:
  - {key: visionfleet.dev/role, operator: In, values: [shop-camera]}
  - {key: feature.node.kubernetes.io/usb-ff_03e7_2485.present, operator: NotIn, values: ["true"]}
  - {key: intel.feature.node.kubernetes.io/gpu, operator: In, values: ["true"]}
limits: {gpu.intel.com/i915: "1"}
securityContext:
  allowPrivilegeEscalation: false
  capabilities: {drop: [ALL]}
  readOnlyRootFilesystem: true
  runAsNonRoot: true
"#,
        )
        .unwrap();

        let mut metadata = gpu["metadata"].clone();
        metadata.as_object_mut().unwrap().remove("annotations");
        assert_eq!(metadata, expected["metadata"]);
        assert_eq!(gpu["spec"]["selector"], expected["selector"]);
        assert_eq!(gpu["spec"]["updateStrategy"], expected["updateStrategy"]);
        let pod = &gpu["spec"]["template"]["spec"];
        assert_eq!(
            pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
            expected["nodeSelectorTerms"]
        );
        assert_eq!(
            pod["containers"][0]["resources"]["limits"],
            expected["limits"]
        );
        assert_eq!(
            pod["containers"][0]["securityContext"],
            expected["securityContext"]
        );
    }

    #[test]
    fn agent_learns_node_from_downward_api() {
        let desired = desired(&model(SHELF), &verified(), &AgentSettings::default());
        let env = agent_container(&desired.daemon_sets[0])
            .env
            .clone()
            .unwrap();

        let node = env.iter().find(|var| var.name == "NODE_NAME").unwrap();
        assert_eq!(
            node.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "spec.nodeName"
        );
        assert!(env.iter().any(|var| var.name == "POD_NAME"));
    }

    #[test]
    fn secrets_mounted_never_copied() {
        let mut model = model(SHELF);
        model.spec.model.url_from = Some(visionfleet_api::SecretKeyRef {
            name: "shelf-model".into(),
            key: "sas-url".into(),
        });

        let desired = desired(&model, &verified(), &AgentSettings::default());
        let config_json = &desired.config_map.data.as_ref().unwrap()[AGENT_CONFIG_FILE];
        let config = AgentConfig::from_json(config_json).unwrap();
        let pod = desired.daemon_sets[2]
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();

        assert_eq!(config.model.url, None);
        assert_eq!(
            config.model.url_file.unwrap().display().to_string(),
            "/var/run/visionfleet/model-url/url"
        );
        assert_eq!(
            config.source.credentials_dir.unwrap().display().to_string(),
            "/var/run/visionfleet/source-credentials"
        );
        let secret_names: Vec<_> = pod
            .volumes
            .iter()
            .flatten()
            .filter_map(|volume| volume.secret.as_ref())
            .map(|secret| secret.secret_name.clone().unwrap())
            .collect();
        assert_eq!(
            secret_names,
            ["shelf-model", "shelf-camera", "broker-login"]
        );
        assert!(!config_json.contains("sas-url"));
    }

    #[test]
    fn config_pins_verified_digest() {
        let desired = desired(&model(SHELF), &verified(), &AgentSettings::default());
        let config =
            AgentConfig::from_json(&desired.config_map.data.unwrap()[AGENT_CONFIG_FILE]).unwrap();

        assert_eq!(config.model.sha256, Some("ab".repeat(32)));
    }

    #[test]
    fn new_model_changes_config_hash() {
        let settings = AgentSettings::default();
        let before = desired(&model(SHELF), &verified(), &settings);
        let after = desired(
            &model(SHELF),
            &VerifiedModel {
                sha256: Some("cd".repeat(32)),
            },
            &settings,
        );

        let hash = |objects: &DesiredObjects| {
            objects.daemon_sets[0]
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()[visionfleet_api::labels::CONFIG_HASH_ANNOTATION]
                .clone()
        };
        assert_ne!(hash(&before), hash(&after));
        assert_ne!(
            before.config_map.metadata.name,
            after.config_map.metadata.name
        );
        assert_eq!(after.config_map.immutable, Some(true));
    }

    #[test]
    fn building_twice_gives_same_hash() {
        let settings = AgentSettings::default();
        let first = desired(&model(SHELF), &verified(), &settings);
        let second = desired(&model(SHELF), &verified(), &settings);

        assert_eq!(
            build_hash(&first.daemon_sets[0]),
            build_hash(&second.daemon_sets[0])
        );
        assert!(build_hash(&first.config_map).is_some());
    }

    #[test]
    fn myriad_variant_gets_usb_bus() {
        let desired = desired(&model(SHELF), &verified(), &AgentSettings::default());
        let myriad = agent_container(&desired.daemon_sets[0]);
        let cpu = agent_container(&desired.daemon_sets[2]);

        assert_eq!(
            myriad.security_context.as_ref().unwrap().privileged,
            Some(true)
        );
        assert!(
            myriad
                .volume_mounts
                .iter()
                .flatten()
                .any(|mount| mount.mount_path == "/dev/bus/usb")
        );
        assert_eq!(cpu.security_context.as_ref().unwrap().privileged, None);
        assert_eq!(
            cpu.security_context
                .as_ref()
                .unwrap()
                .allow_privilege_escalation,
            Some(false)
        );
    }

    #[test]
    fn long_names_fit_limits() {
        let long_name = "a".repeat(120);
        let model = model(&SHELF.replace("name: shelf-detection,", &format!("name: {long_name},")));

        let desired = desired(&model, &verified(), &AgentSettings::default());

        for daemon_set in &desired.daemon_sets {
            assert!(daemon_set.metadata.name.as_ref().unwrap().len() <= names::MAX_DAEMONSET_NAME);
            for value in daemon_set.metadata.labels.as_ref().unwrap().values() {
                assert!(value.len() <= names::MAX_LABEL_VALUE, "{value}");
            }
        }
        assert!(
            desired.config_map.metadata.name.as_ref().unwrap().len() <= names::MAX_CONFIGMAP_NAME
        );
    }

    #[test]
    fn camera_source_mounts_device() {
        let model = model(&SHELF.replace(
            "url: rtsp://camera.store.local:554/stream1",
            "camera: /dev/video2",
        ));

        let desired = desired(&model, &verified(), &AgentSettings::default());
        let pod = desired.daemon_sets[2]
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();

        let camera = pod
            .volumes
            .iter()
            .flatten()
            .find(|volume| volume.name == "camera")
            .unwrap();
        assert_eq!(camera.host_path.as_ref().unwrap().path, "/dev/video2");
        assert_eq!(
            pod.security_context.as_ref().unwrap().supplemental_groups,
            Some(vec![44])
        );
    }

    #[test]
    fn node_files_mounted_under_host_folder() {
        let model = model(
            &SHELF
                .replace(
                    "url: rtsp://camera.store.local:554/stream1",
                    "file: /var/lib/visionfleet/line-3.mp4",
                )
                .replace(
                    r#"- {type: Mqtt, url: "mqtt://broker:1883", credentialsSecret: broker-login}"#,
                    "- {type: File, path: /data/results.jsonl}",
                ),
        );

        let desired = desired(&model, &verified(), &AgentSettings::default());
        let container = agent_container(&desired.daemon_sets[2]);
        let config = agent_config(&model, &verified());

        let mount_paths: Vec<&str> = container
            .volume_mounts
            .iter()
            .flatten()
            .map(|mount| mount.mount_path.as_str())
            .collect();
        let unique: std::collections::BTreeSet<&str> = mount_paths.iter().copied().collect();
        assert_eq!(
            unique.len(),
            mount_paths.len(),
            "mount paths {mount_paths:?}"
        );
        assert!(mount_paths.contains(&"/host/var/lib/visionfleet"));
        assert!(mount_paths.contains(&"/host/data"));
        assert_eq!(
            config.source.file.as_deref(),
            Some("/host/var/lib/visionfleet/line-3.mp4")
        );
        assert_eq!(
            config.output.sinks[0].path.as_deref(),
            Some("/host/data/results.jsonl")
        );
    }

    #[test]
    fn file_model_url_points_into_host_folder() {
        let model = model(&SHELF.replace(
            "urlFrom: {name: shelf-model, key: sas-url}",
            "url: 'file:/data/models/line%203.zip'",
        ));

        let desired = desired(&model, &verified(), &AgentSettings::default());
        let container = agent_container(&desired.daemon_sets[2]);
        let config = agent_config(&model, &verified());

        let mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|mount| mount.mount_path == "/host/data/models")
            .expect("the model's folder is mounted");
        assert_eq!(mount.read_only, Some(true));
        assert_eq!(
            config.model.url.as_deref(),
            Some("file:///host/data/models/line%203.zip")
        );
    }
}
