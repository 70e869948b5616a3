//! The VisionFleet operator: turns each VisionModel into a verified model,
//! an agent ConfigMap and agent DaemonSets, and reports the fleet's state.

pub mod accelerators;
pub mod build;
pub mod context;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod reconcile;
pub mod server;
pub mod settings;
pub mod status;
