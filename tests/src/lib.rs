//! Test harness for VisionFleet's end-to-end tests against a real
//! kube-apiserver 1.20.2 started by `scripts/local-cluster up`.
//!
//! The local control plane has no kubelet. Tests register fake [`fleet`]
//! nodes and run a [`kubelet::FakeKubelet`] that plays the kubelet's part:
//! it heartbeats the nodes and reports the pods bound to them as running.
//! Each test works in its own [`namespace::TestNamespace`], so tests run in
//! parallel on one shared cluster.

pub mod cluster;
pub mod crd;
pub mod fleet;
pub mod kubelet;
pub mod manifest;
pub mod model_server;
pub mod namespace;
pub mod operator;
pub mod wait;
pub mod world;

pub use cluster::TestCluster;
pub use fleet::{Fleet, NodeTemplate};
pub use kubelet::{FakeKubelet, NodeBehaviour};
pub use manifest::{apply_yaml, apply_yaml_file};
pub use namespace::TestNamespace;
pub use wait::{Unmet, wait_for};

/// Field manager name for every write the harness makes.
pub const FIELD_MANAGER: &str = "visionfleet-e2e";
