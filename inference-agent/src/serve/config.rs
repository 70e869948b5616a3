//! Reading the AgentConfig file and the Secret files it names into the
//! settings `serve` runs with, and checking what the operator's schema
//! cannot: exactly one model location and one source, usable sinks.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use visionfleet_api::agent_config::{AgentConfig, AgentConfigError, AgentSink, ObjectName};
use visionfleet_api::visionmodel::{AcceleratorSpec, ModelFormat, SinkKind};
use visionfleet_model::RedactedUrl;

use crate::pipeline::RunSettings;

/// Default MQTT port for `mqtt://` URLs.
pub const MQTT_PORT: u16 = 1883;
/// Default MQTT port for `mqtts://` URLs.
pub const MQTTS_PORT: u16 = 8883;

/// Node, pod and namespace of the agent, from the downward API
/// (`NODE_NAME`, `POD_NAME`, `POD_NAMESPACE`) or the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub node: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
}

impl Identity {
    /// Builds the identity, treating empty values as unset.
    pub fn new(node: Option<String>, pod: Option<String>, namespace: Option<String>) -> Self {
        let present = |value: Option<String>| value.filter(|value| !value.trim().is_empty());
        Self {
            node: present(node),
            pod: present(pod),
            namespace: present(namespace),
        }
    }

    /// Returns the node name, else the machine's host name, for topics and
    /// client ids of local runs.
    pub fn node_or_host(&self) -> String {
        if let Some(node) = &self.node {
            return node.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    }
}

/// A config file that cannot be used. Each is permanent until a file changes.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    #[error(transparent)]
    Parse(#[from] AgentConfigError),

    #[error("failed to read {purpose} file {}: {source}", path.display())]
    ReadReferenced {
        purpose: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error("invalid agent config: {0}")]
    Invalid(String),
}

impl ConfigError {
    /// Returns a CamelCase word for the pod's last error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Read { .. } | Self::ReadReferenced { .. } => "ConfigUnreadable",
            Self::Parse(_) | Self::Invalid(_) => "ConfigInvalid",
        }
    }
}

/// A user name and password read from a mounted Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"REDACTED")
            .finish()
    }
}

/// The model to serve and how to run it. Any change needs a new session,
/// except the one [`ModelRequest::needs_reload`] names.
#[derive(Clone, PartialEq)]
pub struct ModelRequest {
    /// Model URL or path; may hold a signature in its query.
    pub url: String,
    pub sha256: Option<String>,
    pub format: ModelFormat,
    pub labels: Option<Vec<String>>,
    pub accelerator: AcceleratorSpec,
}

impl fmt::Debug for ModelRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelRequest")
            .field("url", &self.redacted_url())
            .field("sha256", &self.sha256)
            .field("format", &self.format)
            .field("labels", &self.labels)
            .field("accelerator", &self.accelerator)
            .finish()
    }
}

impl ModelRequest {
    pub fn redacted_url(&self) -> RedactedUrl {
        RedactedUrl::new(&self.url)
    }

    /// Returns whether moving from `self` to `next` needs a new session. A
    /// URL that changed while both pin the same sha256, such as a renewed
    /// signature, serves the same file, so it needs none.
    pub fn needs_reload(&self, next: &Self) -> bool {
        let same_pin = self.sha256.is_some() && self.sha256 == next.sha256;
        let same_url = self.url == next.url || same_pin;
        !(same_url
            && self.sha256 == next.sha256
            && self.format == next.format
            && self.labels == next.labels
            && self.accelerator == next.accelerator)
    }
}

/// The source of frames, before any node override.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRequest {
    /// The configured source; `None` only when a node override must supply it.
    pub location: Option<SourceLocation>,
    /// Folder of the stream's credentials Secret.
    pub credentials_dir: Option<PathBuf>,
    /// The credentials read from `credentials_dir`, so a rotated password
    /// reopens the source and reaches the redactor.
    pub credentials: Option<Credentials>,
    /// Node annotation whose value replaces `location` on that node.
    pub node_override_annotation: Option<String>,
}

/// A camera, stream or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceLocation {
    /// A V4L2 device path such as `/dev/video0`.
    Camera(String),
    /// A stream URL without credentials.
    Url(String),
    /// A video file or image folder.
    File(String),
}

impl SourceLocation {
    /// Reads a node override value: a `/dev/` path is a camera, a value
    /// with `://` a stream URL, anything else a file.
    pub fn from_override(value: &str) -> Self {
        let value = value.trim();
        if value.starts_with("/dev/") {
            Self::Camera(value.to_owned())
        } else if value.contains("://") {
            Self::Url(value.to_owned())
        } else {
            Self::File(value.to_owned())
        }
    }
}

/// The source to open, after the node override.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcePlan {
    /// Device path, file path or URL, without credentials.
    pub spec: String,
    /// The source for logs and results: query values replaced.
    pub display: String,
    /// Folder with the stream's `username` and `password` files.
    pub credentials_dir: Option<PathBuf>,
}

impl SourcePlan {
    pub fn new(location: &SourceLocation, credentials_dir: Option<&Path>) -> Self {
        let (spec, display) = match location {
            SourceLocation::Camera(path) | SourceLocation::File(path) => {
                (path.clone(), path.clone())
            }
            SourceLocation::Url(url) => (url.clone(), RedactedUrl::new(url).to_string()),
        };
        Self {
            spec,
            display,
            credentials_dir: credentials_dir.map(Path::to_path_buf),
        }
    }
}

/// Settings applied between two frames without a new session.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterSettings {
    pub threshold: f32,
    pub objects_of_interest: Vec<String>,
    /// Frames per second read from the source, greater than 0.
    pub max_fps: f64,
}

impl FilterSettings {
    pub fn run_settings(&self) -> RunSettings {
        RunSettings {
            threshold: self.threshold,
            objects_of_interest: self.objects_of_interest.clone(),
            max_fps: Some(self.max_fps),
        }
    }
}

/// Result sinks and the upstream message cap.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSettings {
    pub sinks: Vec<SinkSpec>,
    /// Maximum MQTT messages per minute per sink, at least 1.
    pub messages_per_minute: u32,
}

/// One result sink, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkSpec {
    Stdout,
    File(PathBuf),
    Mqtt(MqttSpec),
}

/// An MQTT broker and topic.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSpec {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub topic: String,
    pub credentials: Option<Credentials>,
    /// The broker URL for logs; MQTT URLs carry no secrets here, because
    /// userinfo is rejected.
    pub display: String,
    /// MQTT client id, stable per VisionModel and node.
    pub client_id: String,
}

/// Everything `serve` runs with, from one version of the config files.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub vision_model: ObjectName,
    pub model: ModelRequest,
    pub source: SourceRequest,
    pub filter: FilterSettings,
    pub output: OutputSettings,
}

impl ServeConfig {
    /// Returns the secret values of this config, for the redactor.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        let credentials = self
            .output
            .sinks
            .iter()
            .filter_map(|sink| match sink {
                SinkSpec::Mqtt(mqtt) => mqtt.credentials.as_ref(),
                _ => None,
            })
            .chain(self.source.credentials.as_ref());
        for credentials in credentials {
            secrets.push(credentials.password.clone());
        }
        secrets
    }
}

/// Reads `path` and the files it names, and checks the result.
pub fn load(path: &Path, identity: &Identity) -> Result<ServeConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config = AgentConfig::from_json(&text)?;
    resolve(config, identity)
}

fn resolve(config: AgentConfig, identity: &Identity) -> Result<ServeConfig, ConfigError> {
    let model = model_request(&config)?;
    let source = source_request(&config)?;
    let filter = filter_settings(&config)?;
    let output = output_settings(&config, identity)?;

    Ok(ServeConfig {
        vision_model: config.vision_model,
        model,
        source,
        filter,
        output,
    })
}

fn model_request(config: &AgentConfig) -> Result<ModelRequest, ConfigError> {
    let url = match (&config.model.url, &config.model.url_file) {
        (Some(url), None) => url.trim().to_owned(),
        (None, Some(file)) => read_secret_file("model URL", file)?,
        _ => {
            return Err(ConfigError::Invalid(
                "model must set exactly one of url and urlFile".to_owned(),
            ));
        }
    };
    if url.is_empty() {
        return Err(ConfigError::Invalid("the model URL is empty".to_owned()));
    }

    Ok(ModelRequest {
        url,
        sha256: config.model.sha256.clone(),
        format: config.model.format,
        labels: config.model.labels.clone(),
        accelerator: config.accelerator.clone(),
    })
}

fn source_request(config: &AgentConfig) -> Result<SourceRequest, ConfigError> {
    let source = &config.source;
    let locations: Vec<SourceLocation> = [
        source.camera.clone().map(SourceLocation::Camera),
        source.url.clone().map(SourceLocation::Url),
        source.file.clone().map(SourceLocation::File),
    ]
    .into_iter()
    .flatten()
    .collect();

    if locations.len() > 1 {
        return Err(ConfigError::Invalid(
            "source must set only one of camera, url and file".to_owned(),
        ));
    }
    let location = locations.into_iter().next();
    if location.is_none() && source.node_override_annotation.is_none() {
        return Err(ConfigError::Invalid(
            "source must set one of camera, url and file, or nodeOverrideAnnotation".to_owned(),
        ));
    }
    if let Some(SourceLocation::Url(url)) = &location {
        check_stream_url(url)?;
    }

    Ok(SourceRequest {
        location,
        credentials_dir: source.credentials_dir.clone(),
        credentials: source
            .credentials_dir
            .as_deref()
            .map(|dir| read_credentials("source credentials", dir))
            .transpose()?,
        node_override_annotation: source.node_override_annotation.clone(),
    })
}

fn check_stream_url(raw: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(raw).map_err(|error| {
        ConfigError::Invalid(format!(
            "source URL {} is invalid: {error}",
            RedactedUrl::new(raw)
        ))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::Invalid(format!(
            "source URL {} carries credentials; put them in the source's credentials Secret",
            RedactedUrl::from_url(&url)
        )));
    }
    Ok(())
}

fn filter_settings(config: &AgentConfig) -> Result<FilterSettings, ConfigError> {
    let threshold = config.inference.confidence_threshold;
    if !(0.0..=1.0).contains(&threshold) {
        return Err(ConfigError::Invalid(format!(
            "confidenceThreshold {threshold} is outside 0 to 1"
        )));
    }
    let max_fps = config.source.max_fps;
    if !(max_fps.is_finite() && max_fps > 0.0) {
        return Err(ConfigError::Invalid(format!(
            "source.maxFps {max_fps} must be greater than 0"
        )));
    }

    Ok(FilterSettings {
        threshold: threshold as f32,
        objects_of_interest: config.inference.objects_of_interest.clone(),
        max_fps,
    })
}

fn output_settings(
    config: &AgentConfig,
    identity: &Identity,
) -> Result<OutputSettings, ConfigError> {
    if config.output.messages_per_minute == 0 {
        return Err(ConfigError::Invalid(
            "output.messagesPerMinute must be at least 1".to_owned(),
        ));
    }
    let sinks = config
        .output
        .sinks
        .iter()
        .enumerate()
        .map(|(index, sink)| sink_spec(index, sink, &config.vision_model, identity))
        .collect::<Result<_, _>>()?;

    Ok(OutputSettings {
        sinks,
        messages_per_minute: config.output.messages_per_minute,
    })
}

fn sink_spec(
    index: usize,
    sink: &AgentSink,
    vision_model: &ObjectName,
    identity: &Identity,
) -> Result<SinkSpec, ConfigError> {
    match sink.kind {
        SinkKind::Stdout => Ok(SinkSpec::Stdout),
        SinkKind::File => match sink.path.as_deref().map(str::trim) {
            Some(path) if !path.is_empty() => Ok(SinkSpec::File(PathBuf::from(path))),
            _ => Err(ConfigError::Invalid(format!(
                "sink {index} (File) has no path"
            ))),
        },
        SinkKind::Mqtt => mqtt_spec(index, sink, vision_model, identity).map(SinkSpec::Mqtt),
    }
}

fn mqtt_spec(
    index: usize,
    sink: &AgentSink,
    vision_model: &ObjectName,
    identity: &Identity,
) -> Result<MqttSpec, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid(format!("sink {index} (Mqtt): {message}"));
    let raw = sink
        .url
        .as_deref()
        .ok_or_else(|| invalid("no url".to_owned()))?;
    let url = url::Url::parse(raw)
        .map_err(|error| invalid(format!("url {} is invalid: {error}", RedactedUrl::new(raw))))?;

    let (tls, default_port) = match url.scheme() {
        "mqtt" => (false, MQTT_PORT),
        "mqtts" => (true, MQTTS_PORT),
        other => {
            return Err(invalid(format!(
                "url scheme {other:?} is not supported; use mqtt or mqtts"
            )));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "the url carries credentials; put them in the sink's credentials Secret".to_owned(),
        ));
    }
    let host = url
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| invalid(format!("url {} has no host", RedactedUrl::from_url(&url))))?;
    // The url crate keeps IPv6 literals in brackets, which a socket address rejects.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();

    let node = identity.node_or_host();
    let topic = sink
        .topic
        .clone()
        .filter(|topic| !topic.trim().is_empty())
        .unwrap_or_else(|| {
            format!(
                "visionfleet/{}/{}/{node}",
                vision_model.namespace, vision_model.name
            )
        });

    Ok(MqttSpec {
        host,
        port: url.port().unwrap_or(default_port),
        tls,
        topic,
        credentials: sink
            .credentials_dir
            .as_deref()
            .map(|dir| read_credentials("MQTT credentials", dir))
            .transpose()?,
        display: RedactedUrl::from_url(&url).to_string(),
        client_id: format!(
            "visionfleet-{}-{}-{node}",
            vision_model.namespace, vision_model.name
        ),
    })
}

/// Reads the `username` and `password` files of a mounted Secret.
fn read_credentials(purpose: &'static str, dir: &Path) -> Result<Credentials, ConfigError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map(|text| text.trim_end_matches(['\r', '\n']).to_owned())
            .map_err(|source| ConfigError::ReadReferenced {
                purpose,
                path,
                source,
            })
    };
    Ok(Credentials {
        username: read("username")?,
        password: read("password")?,
    })
}

fn read_secret_file(purpose: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|source| ConfigError::ReadReferenced {
            purpose,
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_json(model: &str, source: &str, sinks: &str) -> String {
        format!(
            r#"{{
              "apiVersion": "visionfleet.dev/v1alpha1",
              "kind": "AgentConfig",
              "visionModel": {{"namespace": "plant-7", "name": "defects"}},
              "model": {model},
              "accelerator": {{"preference": ["CPU"], "allowCpuFallback": true}},
              "source": {source},
              "inference": {{"confidenceThreshold": 0.6, "objectsOfInterest": ["person"]}},
              "output": {{"sinks": {sinks}, "messagesPerMinute": 30}}
            }}"#
        )
    }

    fn resolve_text(text: &str, identity: &Identity) -> Result<ServeConfig, ConfigError> {
        resolve(AgentConfig::from_json(text).unwrap(), identity)
    }

    fn node(name: &str) -> Identity {
        Identity::new(Some(name.to_owned()), None, None)
    }

    #[test]
    fn mqtt_topic_defaults_to_model_and_node() {
        let text = config_json(
            r#"{"url": "https://models.example/m.zip"}"#,
            r#"{"file": "/data/video.mp4", "maxFps": 5}"#,
            r#"[{"type": "Mqtt", "url": "mqtt://broker.site"}]"#,
        );

        let config = resolve_text(&text, &node("edge-1")).unwrap();

        let SinkSpec::Mqtt(mqtt) = &config.output.sinks[0] else {
            panic!("expected an MQTT sink");
        };
        assert_eq!(mqtt.topic, "visionfleet/plant-7/defects/edge-1");
        assert_eq!(mqtt.port, MQTT_PORT);
        assert!(!mqtt.tls);
    }

    #[test]
    fn model_url_read_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "https://models.example/m.zip?sig=SECRET\n").unwrap();
        let text = config_json(
            &format!(r#"{{"urlFile": "{}"}}"#, file.display()),
            r#"{"file": "/data/video.mp4", "maxFps": 5}"#,
            r#"[{"type": "Stdout"}]"#,
        );

        let config = resolve_text(&text, &Identity::default()).unwrap();

        assert_eq!(config.model.url, "https://models.example/m.zip?sig=SECRET");
        assert!(!format!("{:?}", config.model).contains("SECRET"));
    }

    #[test]
    fn two_source_locations_rejected() {
        let text = config_json(
            r#"{"url": "https://models.example/m.zip"}"#,
            r#"{"file": "/data/video.mp4", "camera": "/dev/video0", "maxFps": 5}"#,
            r#"[{"type": "Stdout"}]"#,
        );

        let error = resolve_text(&text, &Identity::default()).unwrap_err();

        assert_eq!(error.reason(), "ConfigInvalid");
    }

    #[test]
    fn mqtt_url_with_password_rejected() {
        let text = config_json(
            r#"{"url": "https://models.example/m.zip"}"#,
            r#"{"file": "/data/video.mp4", "maxFps": 5}"#,
            r#"[{"type": "Mqtt", "url": "mqtts://user:pw@broker.site"}]"#,
        );

        let error = resolve_text(&text, &Identity::default()).unwrap_err();

        assert!(error.to_string().contains("credentials Secret"), "{error}");
        assert!(!error.to_string().contains("pw@"), "{error}");
    }

    #[test]
    fn stream_query_values_stay_out_of_display() {
        let plan = SourcePlan::new(
            &SourceLocation::Url("rtsp://cam.local:554/stream1?token=abc".to_owned()),
            Some(Path::new("/var/run/visionfleet/source-credentials")),
        );

        assert_eq!(plan.spec, "rtsp://cam.local:554/stream1?token=abc");
        assert_eq!(plan.display, "rtsp://cam.local:554/stream1?token=REDACTED");
    }

    #[test]
    fn renewed_signature_same_pin_needs_no_reload() {
        let request = ModelRequest {
            url: "https://models.example/m.zip?sig=old".to_owned(),
            sha256: Some("ab".repeat(32)),
            format: ModelFormat::Auto,
            labels: None,
            accelerator: AcceleratorSpec::default(),
        };
        let renewed = ModelRequest {
            url: "https://models.example/m.zip?sig=new".to_owned(),
            ..request.clone()
        };
        let other_pin = ModelRequest {
            sha256: Some("cd".repeat(32)),
            ..renewed.clone()
        };

        assert!(!request.needs_reload(&renewed));
        assert!(request.needs_reload(&other_pin));
    }

    #[test]
    fn override_value_kinds() {
        assert_eq!(
            SourceLocation::from_override("/dev/video2"),
            SourceLocation::Camera("/dev/video2".to_owned())
        );
        assert_eq!(
            SourceLocation::from_override(" rtsp://cam-7/live "),
            SourceLocation::Url("rtsp://cam-7/live".to_owned())
        );
        assert_eq!(
            SourceLocation::from_override("/data/line-3.mp4"),
            SourceLocation::File("/data/line-3.mp4".to_owned())
        );
    }
}
