//! Label, annotation and condition names shared by the operator and the agent.

/// API group of VisionFleet's resources.
pub const GROUP: &str = "visionfleet.dev";

/// Field manager the operator uses for server-side apply.
pub const OPERATOR_FIELD_MANAGER: &str = "visionfleet-operator";

/// Field manager the agent uses when it patches its own pod.
pub const AGENT_FIELD_MANAGER: &str = "visionfleet-agent";

/// Label on every object the operator makes, with the VisionModel's name.
pub const VISION_MODEL_LABEL: &str = "visionfleet.dev/vision-model";

/// Standard label naming the component: `inference-agent` on agent pods.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// Value of [`COMPONENT_LABEL`] on agent pods.
pub const AGENT_COMPONENT: &str = "inference-agent";

/// Standard label naming the tool that manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Pod template annotation with the hash of the rendered agent config, so
/// that a new model or setting rolls the DaemonSet.
pub const CONFIG_HASH_ANNOTATION: &str = "visionfleet.dev/config-hash";

/// Agent pod annotation: digest of the model the agent serves, `sha256:<hex>`.
pub const POD_MODEL_DIGEST_ANNOTATION: &str = "visionfleet.dev/model-digest";

/// Agent pod annotation: the inference device the agent really uses.
pub const POD_DEVICE_ANNOTATION: &str = "visionfleet.dev/device";

/// Agent pod annotation: `true` when the agent fell back from a preferred device to the CPU.
pub const POD_FALLBACK_ANNOTATION: &str = "visionfleet.dev/accelerator-fallback";

/// Agent pod annotation: the agent's last error as `Reason: message`, absent when healthy.
pub const POD_LAST_ERROR_ANNOTATION: &str = "visionfleet.dev/last-error";

/// Pod condition the agent sets on its own pod: `True` while a model is
/// loaded and frames flow.
pub const POD_CONDITION_INFERENCE_READY: &str = "visionfleet.dev/InferenceReady";

/// VisionModel condition types.
pub mod condition {
    /// The model was downloaded and checked by the operator.
    pub const MODEL_VERIFIED: &str = "ModelVerified";
    /// Every desired node serves the current model.
    pub const READY: &str = "Ready";
    /// A new model or setting is rolling out.
    pub const PROGRESSING: &str = "Progressing";
    /// Some nodes fail, or the spec or model is invalid.
    pub const DEGRADED: &str = "Degraded";
    /// Some nodes run on the CPU because none of the preferred devices is present.
    pub const ACCELERATOR_FALLBACK: &str = "AcceleratorFallback";

    /// Every condition type, in the order the status lists them.
    pub const ALL: [&str; 5] = [
        MODEL_VERIFIED,
        READY,
        PROGRESSING,
        DEGRADED,
        ACCELERATOR_FALLBACK,
    ];
}
