//! The AgentConfig contract: what the operator renders into a ConfigMap and
//! the agent reads from its mounted file.
//!
//! The config carries references, never secret values: a Secret-held model
//! URL or stream password reaches the agent as a file path under a Secret
//! volume mount.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::visionmodel::{AcceleratorSpec, InferenceSpec, ModelFormat, SinkKind};

/// `apiVersion` of the config this crate writes and reads.
pub const AGENT_CONFIG_API_VERSION: &str = "visionfleet.dev/v1alpha1";

/// `kind` of the config.
pub const AGENT_CONFIG_KIND: &str = "AgentConfig";

/// File name of the config inside the ConfigMap and the agent's mount.
pub const AGENT_CONFIG_FILE: &str = "agent-config.json";

/// Settings of one agent, rendered by the operator from a VisionModel.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfig {
    /// Always [`AGENT_CONFIG_API_VERSION`].
    pub api_version: String,

    /// Always [`AGENT_CONFIG_KIND`].
    pub kind: String,

    /// The VisionModel this config was rendered from, for logs and metrics.
    pub vision_model: ObjectName,

    /// The model to serve.
    pub model: AgentModel,

    /// Device preference and CPU fallback.
    pub accelerator: AcceleratorSpec,

    /// The video source.
    pub source: AgentSource,

    /// Prediction filtering.
    pub inference: InferenceSpec,

    /// Result outputs.
    pub output: AgentOutput,
}

/// Namespace and name of a VisionModel.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectName {
    pub namespace: String,
    pub name: String,
}

/// Where the agent gets the model. Exactly one of `url` and `urlFile` is set.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentModel {
    /// Model URL, when it holds no secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// File whose content is the model URL (a mounted Secret key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,

    /// sha256 the download must have, as 64 lowercase hex digits. The operator
    /// sets the digest it verified, so nodes never serve a file the operator
    /// has not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,

    /// Package layout.
    #[serde(default)]
    pub format: ModelFormat,

    /// Labels that replace the package's `labels.txt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
}

/// The agent's video source. Exactly one of `camera`, `url` and `file` is set.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSource {
    /// V4L2 device path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,

    /// Stream URL without credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// Video file or image folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,

    /// Folder with `username` and `password` files (a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_dir: Option<PathBuf>,

    /// Node annotation whose value replaces the source on that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_override_annotation: Option<String>,

    /// Maximum frames per second read from the source.
    pub max_fps: f64,
}

/// The agent's result outputs.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentOutput {
    /// Result sinks.
    pub sinks: Vec<AgentSink>,

    /// Cap on upstream messages per minute.
    pub messages_per_minute: u32,
}

/// One result sink of the agent.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSink {
    /// Sink type.
    #[serde(rename = "type")]
    pub kind: SinkKind,

    /// File path, for `File`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,

    /// Broker URL, for `Mqtt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// Topic, for `Mqtt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,

    /// Folder with `username` and `password` files (a mounted Secret), for `Mqtt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_dir: Option<PathBuf>,
}

/// Why an agent config file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum AgentConfigError {
    #[error(
        "agent config is not valid JSON for {AGENT_CONFIG_API_VERSION} {AGENT_CONFIG_KIND}: {0}"
    )]
    Parse(#[from] serde_json::Error),

    #[error(
        "agent config has apiVersion {found:?} and kind {kind:?}; this agent reads {AGENT_CONFIG_API_VERSION} {AGENT_CONFIG_KIND}: upgrade the agent image to match the operator"
    )]
    UnsupportedVersion { found: String, kind: String },
}

impl AgentConfig {
    /// Parses a config file and checks that this agent understands its version.
    pub fn from_json(text: &str) -> Result<Self, AgentConfigError> {
        let config: Self = serde_json::from_str(text)?;

        if config.api_version != AGENT_CONFIG_API_VERSION || config.kind != AGENT_CONFIG_KIND {
            return Err(AgentConfigError::UnsupportedVersion {
                found: config.api_version,
                kind: config.kind,
            });
        }
        Ok(config)
    }

    /// Renders the config as pretty JSON with stable field order, so its hash
    /// changes only when a setting does.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: every map key is a string.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accelerator::Accelerator;

    fn sample() -> AgentConfig {
        AgentConfig {
            api_version: AGENT_CONFIG_API_VERSION.to_owned(),
            kind: AGENT_CONFIG_KIND.to_owned(),
            vision_model: ObjectName {
                namespace: "plant-7".to_owned(),
                name: "defects".to_owned(),
            },
            model: AgentModel {
                url_file: Some(PathBuf::from("/var/run/visionfleet/model-url/url")),
                sha256: Some("ab".repeat(32)),
                format: ModelFormat::CustomVision,
                ..AgentModel::default()
            },
            accelerator: AcceleratorSpec {
                preference: vec![Accelerator::Myriad, Accelerator::Gpu, Accelerator::Cpu],
                allow_cpu_fallback: true,
            },
            source: AgentSource {
                url: Some("rtsp://camera.local:554/stream1".to_owned()),
                credentials_dir: Some(PathBuf::from("/var/run/visionfleet/source-credentials")),
                node_override_annotation: Some("visionfleet.dev/camera-url".to_owned()),
                max_fps: 2.5,
                ..AgentSource::default()
            },
            inference: InferenceSpec {
                confidence_threshold: 0.6,
                objects_of_interest: vec!["person".to_owned()],
            },
            output: AgentOutput {
                sinks: vec![AgentSink {
                    kind: SinkKind::Mqtt,
                    url: Some("mqtt://broker.local:1883".to_owned()),
                    topic: Some("site/line-3".to_owned()),
                    ..AgentSink::default()
                }],
                messages_per_minute: 30,
            },
        }
    }

    #[test]
    fn round_trips_through_json() {
        let config = sample();

        let parsed = AgentConfig::from_json(&config.to_json()).unwrap();

        assert_eq!(parsed, config);
    }

    #[test]
    fn rendering_is_stable() {
        assert_eq!(sample().to_json(), sample().to_json());
    }

    #[test]
    fn rejects_other_api_version() {
        let text = sample()
            .to_json()
            .replace(AGENT_CONFIG_API_VERSION, "visionfleet.dev/v9");

        let error = AgentConfig::from_json(&text).unwrap_err();

        assert!(matches!(error, AgentConfigError::UnsupportedVersion { .. }));
        assert!(
            error.to_string().contains("upgrade the agent image"),
            "{error}"
        );
    }

    #[test]
    fn rejects_unknown_fields() {
        let text = sample().to_json().replacen("{", "{\n  \"surprise\": 1,", 1);

        assert!(matches!(
            AgentConfig::from_json(&text),
            Err(AgentConfigError::Parse(_))
        ));
    }

    #[test]
    fn reads_documented_json_shape() {
        let text = r#"{
          "apiVersion": "visionfleet.dev/v1alpha1",
          "kind": "AgentConfig",
          "visionModel": {"namespace": "shop", "name": "shelves"},
          "model": {"url": "https://models.example.com/shelves.zip", "format": "Auto"},
          "accelerator": {"preference": ["GPU", "CPU"], "allowCpuFallback": false},
          "source": {"camera": "/dev/video0", "maxFps": 5.0},
          "inference": {"confidenceThreshold": 0.5},
          "output": {"sinks": [{"type": "Stdout"}], "messagesPerMinute": 10}
        }"#;

        let config = AgentConfig::from_json(text).unwrap();

        assert_eq!(
            config.accelerator.preference,
            vec![Accelerator::Gpu, Accelerator::Cpu]
        );
        assert!(!config.accelerator.allow_cpu_fallback);
        assert_eq!(config.source.camera.as_deref(), Some("/dev/video0"));
        assert!(config.inference.objects_of_interest.is_empty());
    }
}
