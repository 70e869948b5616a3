//! The AgentConfig a VisionModel renders into, and its ConfigMap.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use url::Url;
use visionfleet_api::agent_config::{
    AGENT_CONFIG_API_VERSION, AGENT_CONFIG_FILE, AGENT_CONFIG_KIND, AgentModel, AgentOutput,
    AgentSink, AgentSource, ObjectName,
};
use visionfleet_api::{AgentConfig, OutputSink, VisionModel};

use super::node_paths::{in_container, model_file};
use super::{SecretMount, VerifiedModel, mounts, object_meta};
use crate::names;

/// Renders the AgentConfig of a VisionModel. Secret values stay out: where
/// the spec names a Secret, the config names the file the Secret is mounted at.
pub fn agent_config(model: &VisionModel, verified: &VerifiedModel) -> AgentConfig {
    let spec = &model.spec;

    AgentConfig {
        api_version: AGENT_CONFIG_API_VERSION.to_owned(),
        kind: AGENT_CONFIG_KIND.to_owned(),
        vision_model: ObjectName {
            namespace: model.metadata.namespace.clone().unwrap_or_default(),
            name: model.metadata.name.clone().unwrap_or_default(),
        },
        model: AgentModel {
            url: spec.model.url.as_deref().map(container_model_url),
            url_file: spec
                .model
                .url_from
                .as_ref()
                .map(|_| SecretMount::ModelUrl.path().join("url")),
            sha256: verified
                .sha256
                .clone()
                .or_else(|| spec.model.sha256.clone()),
            format: spec.model.format,
            labels: spec.model.labels.clone(),
        },
        accelerator: spec.accelerator.clone(),
        source: AgentSource {
            camera: spec.source.camera.clone(),
            url: spec.source.url.clone(),
            file: spec.source.file.as_deref().map(in_container),
            credentials_dir: spec
                .source
                .credentials_secret
                .as_ref()
                .map(|_| SecretMount::SourceCredentials.path()),
            node_override_annotation: spec.source.node_override_annotation.clone(),
            max_fps: spec.source.max_fps,
        },
        inference: spec.inference.clone(),
        output: AgentOutput {
            sinks: spec
                .output
                .sinks
                .iter()
                .enumerate()
                .map(|(index, sink)| agent_sink(index, sink))
                .collect(),
            messages_per_minute: spec.output.messages_per_minute,
        },
    }
}

fn agent_sink(index: usize, sink: &OutputSink) -> AgentSink {
    AgentSink {
        kind: sink.kind,
        path: sink.path.as_deref().map(in_container),
        url: sink.url.clone(),
        topic: sink.topic.clone(),
        credentials_dir: sink
            .credentials_secret
            .as_ref()
            .map(|_| SecretMount::SinkCredentials(index).path()),
    }
}

/// Returns the model URL as the agent container sees it: a `file://` URL
/// points into the node folders mounted under [`mounts::NODE`].
fn container_model_url(url: &str) -> String {
    model_file(url)
        .and_then(|path| Url::from_file_path(in_container(&path)).ok())
        .map_or_else(|| url.to_owned(), String::from)
}

/// Returns the ConfigMap holding a rendered config. Its name carries the
/// config's hash and it is immutable, so a change creates a new ConfigMap
/// that only pods of the new DaemonSet revision mount: the rollout pace then
/// applies to config changes too, instead of the kubelet updating every
/// node's file at once.
pub fn config_map(model: &VisionModel, config_json: &str, config_hash: &str) -> ConfigMap {
    let name = config_map_name(model, config_hash);

    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            ..object_meta(model, None)
        },
        data: Some(BTreeMap::from([(
            AGENT_CONFIG_FILE.to_owned(),
            config_json.to_owned(),
        )])),
        immutable: Some(true),
        ..ConfigMap::default()
    }
}

/// Returns the ConfigMap name for one config hash.
pub fn config_map_name(model: &VisionModel, config_hash: &str) -> String {
    let base = model.metadata.name.as_deref().unwrap_or_default();
    let suffix = format!("-agent-{}", &config_hash[..10.min(config_hash.len())]);
    let base = names::fit(base, names::MAX_CONFIGMAP_NAME - suffix.len());
    format!("{base}{suffix}")
}

/// Path of the config file inside the agent container.
pub fn config_path() -> PathBuf {
    PathBuf::from(mounts::CONFIG).join(AGENT_CONFIG_FILE)
}
