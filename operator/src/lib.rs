//! The VisionFleet operator: turns each VisionModel into a verified model,
//! an agent ConfigMap and agent DaemonSets, and reports the fleet's state.

pub mod accelerators;
pub mod build;
pub mod crd;
pub mod names;
pub mod settings;
pub mod status;
