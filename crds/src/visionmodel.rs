//! The `VisionModel` custom resource (`visionfleet.dev/v1alpha1`).
//!
//! Doc comments on the spec and status fields become the OpenAPI descriptions
//! that `kubectl explain visionmodel.spec` shows, so they are written for users.

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::accelerator::Accelerator;

/// Maximum number of entries kept in `status.failingNodes`.
pub const MAX_FAILING_NODES: usize = 10;

/// A computer-vision model rolled out to the edge nodes that match a label selector.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "visionfleet.dev",
    version = "v1alpha1",
    kind = "VisionModel",
    namespaced,
    shortname = "vmodel",
    category = "visionfleet",
    status = "VisionModelStatus",
    printcolumn = r#"{"name":"Ready","type":"integer","description":"Nodes whose agent serves the current model","jsonPath":".status.nodes.ready"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","description":"Nodes that match the selector","jsonPath":".status.nodes.desired"}"#,
    printcolumn = r#"{"name":"Digest","type":"string","description":"First 12 hex digits of the verified model's sha256","jsonPath":".status.model.shortDigest"}"#,
    printcolumn = r#"{"name":"Devices","type":"string","description":"Inference devices in use, with node counts","jsonPath":".status.devicesSummary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VisionModelSpec {
    /// Where the model comes from and how to check it.
    pub model: ModelSpec,

    /// Nodes that run the model, as a standard label selector
    /// (`matchLabels` and `matchExpressions`). An empty selector matches every
    /// node the agent tolerates. Example: `matchLabels: {site: plant-7}`.
    #[serde(default)]
    pub node_selector: LabelSelector,

    /// Which inference device each agent prefers, and whether it may fall back to the CPU.
    #[serde(default)]
    pub accelerator: AcceleratorSpec,

    /// The camera or stream each agent reads.
    pub source: SourceSpec,

    /// How predictions are filtered.
    #[serde(default)]
    pub inference: InferenceSpec,

    /// Where results go and how often.
    #[serde(default)]
    pub output: OutputSpec,

    /// How fast a new model or setting spreads across the nodes.
    #[serde(default)]
    pub rollout: RolloutSpec,

    /// The agent pods' image, resources and tolerations.
    #[serde(default)]
    pub agent: AgentSpec,
}

/// Where the model comes from. Set exactly one of `url` and `urlFrom`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// URL of an Azure Custom Vision ONNX export zip or a bare `.onnx` file.
    /// Schemes: `https`, `http`, or `file` for a path on the node.
    /// Example: `https://models.example.com/defects/v3.zip`.
    /// A URL that carries a secret, such as a SAS token, belongs in `urlFrom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(https?|file)://.+"))]
    pub url: Option<String>,

    /// A key of a Secret in the VisionModel's namespace whose value is the model
    /// URL. Use it for signed URLs: the value never appears in the spec, the
    /// status, events, logs or metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_from: Option<SecretKeyRef>,

    /// Expected sha256 of the downloaded file, as 64 lowercase hex digits.
    /// When set, a download with another digest is rejected and never served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,

    /// Package layout: `Auto` (default) detects it from the file,
    /// `CustomVision` requires a Custom Vision export zip, `Onnx` a bare ONNX model.
    #[serde(default)]
    pub format: ModelFormat,

    /// Class labels in output order, replacing the package's `labels.txt`.
    /// Required for a bare ONNX model whose labels should have names;
    /// without them, labels are the class indices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
}

/// A key in a Secret of the VisionModel's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,

    /// Key within the Secret's data.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// Package layout of a model.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ModelFormat {
    /// Detected from the file: a zip is read as a Custom Vision export, anything else as ONNX.
    #[default]
    Auto,
    /// An Azure Custom Vision ONNX export zip (`model.onnx`, `labels.txt`,
    /// `cvexport.manifest`, `metadata_properties.json`).
    CustomVision,
    /// A bare ONNX model file.
    Onnx,
}

/// Ordered device preference for ONNX Runtime's OpenVINO execution provider.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcceleratorSpec {
    /// Devices in order of preference. Each agent uses the first one its node
    /// really has. Spellings: `MYRIAD` (Intel Neural Compute Stick 2), `GPU`
    /// (Intel integrated or discrete GPU), `NPU` (Intel NPU), `CPU`.
    /// Default: `[CPU]`. Example: `[MYRIAD, GPU, CPU]`.
    #[serde(default = "default_preference")]
    #[schemars(length(min = 1, max = 4))]
    pub preference: Vec<Accelerator>,

    /// Whether an agent whose node has none of the preferred devices runs on
    /// the CPU (reported by the `AcceleratorFallback` condition) instead of
    /// failing. Default: `true`.
    #[serde(default = "default_true")]
    pub allow_cpu_fallback: bool,
}

impl Default for AcceleratorSpec {
    fn default() -> Self {
        Self {
            preference: default_preference(),
            allow_cpu_fallback: true,
        }
    }
}

fn default_preference() -> Vec<Accelerator> {
    vec![Accelerator::Cpu]
}

fn default_true() -> bool {
    true
}

/// The video source. Set exactly one of `camera`, `url` and `file`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// V4L2 camera device on the node. Example: `/dev/video0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/dev/.+"))]
    pub camera: Option<String>,

    /// Stream URL: `rtsp`, `rtsps`, `rtspt` (RTSP over TCP), or `http`/`https`
    /// for MJPEG. Put user and password in `credentialsFrom`, not in the URL.
    /// Example: `rtsp://10.0.4.21:554/stream1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(rtsp|rtsps|rtspt|http|https)://.+"))]
    pub url: Option<String>,

    /// Video file or image folder on the node. Example: `/data/line-3.mp4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/.+"))]
    pub file: Option<String>,

    /// Secret in the VisionModel's namespace with `username` and `password`
    /// keys for the stream. It is mounted into the agent, never copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub credentials_secret: Option<String>,

    /// Name of a node annotation whose value, when present on a node, replaces
    /// the source URL or device for that node's agent, so one VisionModel can
    /// serve cameras with different addresses.
    /// Example: `visionfleet.dev/camera-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_override_annotation: Option<String>,

    /// Maximum frames per second read from the source; extra frames are
    /// skipped before inference. Must be greater than 0. Default: `5`.
    #[serde(default = "default_max_fps")]
    #[schemars(extend("minimum" = 0, "exclusiveMinimum" = true))]
    pub max_fps: f64,
}

fn default_max_fps() -> f64 {
    5.0
}

/// Prediction filtering.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferenceSpec {
    /// Minimum score, from 0 to 1, for a prediction to be reported. Default: `0.5`.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub confidence_threshold: f64,

    /// Labels to report. Empty (the default) reports every label.
    /// Example: `[person, forklift]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects_of_interest: Vec<String>,
}

impl Default for InferenceSpec {
    fn default() -> Self {
        Self {
            confidence_threshold: default_threshold(),
            objects_of_interest: Vec::new(),
        }
    }
}

fn default_threshold() -> f64 {
    0.5
}

/// Result outputs.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputSpec {
    /// Where each agent sends results. Default: one `Stdout` sink.
    #[serde(default = "default_sinks")]
    pub sinks: Vec<OutputSink>,

    /// Maximum result messages per minute each agent sends to upstream sinks
    /// (`Mqtt`). `Stdout` and `File` sinks receive every result. Default: `10`.
    #[serde(default = "default_messages_per_minute")]
    #[schemars(range(min = 1, max = 6000))]
    pub messages_per_minute: u32,
}

impl Default for OutputSpec {
    fn default() -> Self {
        Self {
            sinks: default_sinks(),
            messages_per_minute: default_messages_per_minute(),
        }
    }
}

fn default_sinks() -> Vec<OutputSink> {
    vec![OutputSink {
        kind: SinkKind::Stdout,
        ..OutputSink::default()
    }]
}

fn default_messages_per_minute() -> u32 {
    10
}

/// One result sink.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputSink {
    /// Sink type: `Stdout` (JSON lines in the pod log), `File` (JSON lines
    /// appended to `path`) or `Mqtt` (a message per result to `url` and `topic`).
    #[serde(rename = "type")]
    pub kind: SinkKind,

    /// File path on the node, for `File`. Example: `/var/lib/visionfleet/results.jsonl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,

    /// Broker URL, for `Mqtt`. Schemes `mqtt` and `mqtts`. Example: `mqtt://broker.site:1883`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^mqtts?://.+"))]
    pub url: Option<String>,

    /// Topic, for `Mqtt`. Default: `visionfleet/<namespace>/<name>/<node>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,

    /// Secret with `username` and `password` keys for the broker, for `Mqtt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

/// Type of a result sink.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum SinkKind {
    /// JSON lines on the agent's standard output.
    #[default]
    Stdout,
    /// JSON lines appended to a file.
    File,
    /// MQTT messages, capped by `messagesPerMinute`.
    Mqtt,
}

/// Rollout pace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Most nodes whose agent may be unavailable while a new model or setting
    /// rolls out: a count (`2`) or a percentage of the matching nodes (`"10%"`,
    /// rounded up). Default: `"25%"`.
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: IntOrString,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            max_unavailable: default_max_unavailable(),
        }
    }
}

fn default_max_unavailable() -> IntOrString {
    IntOrString::String("25%".to_owned())
}

/// Settings of the agent pods.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// Agent container image. Default: the image the operator was installed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// CPU and memory requests and limits of the agent container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Extra tolerations, for example for edge nodes tainted `dedicated=camera:NoSchedule`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// What the operator and the agents observed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VisionModelStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Standard conditions: `ModelVerified`, `Ready`, `Progressing`, `Degraded`
    /// and `AcceleratorFallback`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The model the operator verified and the agents serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ResolvedModel>,

    /// Node counts of the agent DaemonSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeCounts>,

    /// Inference devices in use, with how many nodes use each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceCount>,

    /// The devices in one line, as `kubectl get` shows them. Example: `MYRIAD=9,CPU=3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices_summary: Option<String>,

    /// Nodes whose agent fails, with the reason; at most 10, sorted by node name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing_nodes: Vec<FailingNode>,
}

/// A verified model.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedModel {
    /// sha256 of the downloaded file, as `sha256:<64 hex digits>`.
    pub digest: String,

    /// The first 12 hex digits of the digest.
    pub short_digest: String,

    /// What the model does: `Classification` or `ObjectDetection`.
    pub task: String,

    /// The output layout the agents decode, such as `CustomVisionDetectionS1`.
    pub format: String,

    /// Number of class labels.
    pub label_count: u32,

    /// Input tensor shape, with -1 for a dynamic dimension. Example: `[1, 3, 320, 320]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_shape: Vec<i64>,
}

/// Node counts, from the agent DaemonSet's status.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCounts {
    /// Nodes that match the selector and should run an agent.
    pub desired: i32,

    /// Nodes whose agent pod runs the current model and settings.
    pub updated: i32,

    /// Nodes whose agent pod is ready.
    pub ready: i32,

    /// Nodes whose agent pod has been ready for the minimum ready time.
    pub available: i32,
}

/// Nodes using one inference device.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCount {
    /// Device name as OpenVINO reports it, or `CPU`.
    pub device: String,

    /// Number of nodes.
    pub nodes: i32,
}

/// A node whose agent fails.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailingNode {
    /// Node name.
    pub node: String,

    /// CamelCase reason, such as `ModelLoadFailed` or `StreamDown`.
    pub reason: String,

    /// What failed, in a sentence.
    pub message: String,
}
