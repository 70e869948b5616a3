//! VisionFleet's API: the `VisionModel` custom resource, the AgentConfig
//! contract between operator and agent, and the label, annotation and
//! condition names both sides share.
//!
//! This crate has no Kubernetes client or async runtime, so the agent and
//! tools can depend on it cheaply.

pub mod accelerator;
pub mod agent_config;
pub mod labels;
pub mod validation;
pub mod visionmodel;

pub use accelerator::Accelerator;
pub use agent_config::AgentConfig;
pub use visionmodel::*;
