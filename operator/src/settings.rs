//! Operator-wide settings that shape every agent DaemonSet.

use crate::accelerators::AcceleratorMapping;

/// Settings from the command line and Helm values.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// Agent image used when a VisionModel sets none.
    pub image: String,

    /// Image pull policy of the agent container.
    pub image_pull_policy: String,

    /// ServiceAccount the agent pods run as (the chart creates it with the
    /// RBAC the agent needs to patch its own pod).
    pub service_account: String,

    /// Folder on each node for the model and OpenVINO compile caches.
    pub node_cache_path: String,

    /// Port of the agent's HTTP server (`/metrics`, `/healthz`, `/readyz`).
    pub http_port: i32,

    /// Extended resource that gives a pod access to V4L2 cameras, for
    /// clusters with a device plugin for them; `None` mounts the device node
    /// from the host.
    pub camera_resource: Option<String>,

    /// Node labels and device-plugin resources per accelerator.
    pub accelerators: AcceleratorMapping,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            image: "ghcr.io/visionfleet/visionfleet-agent:0.1.0".to_owned(),
            image_pull_policy: "IfNotPresent".to_owned(),
            service_account: "visionfleet-agent".to_owned(),
            node_cache_path: "/var/lib/visionfleet".to_owned(),
            http_port: 9464,
            camera_resource: None,
            accelerators: AcceleratorMapping::default(),
        }
    }
}
