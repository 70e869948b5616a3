//! Model download, verification, safe unpacking, caching and inspection,
//! shared by the VisionFleet operator and agent.
//!
//! [`ModelStore::fetch`] takes a [`ModelSource`] (an `https`, `http` or `file`
//! URL, or a local path, with an optional sha256 pin) and returns a verified
//! [`ModelPackage`]: an Azure Custom Vision ONNX export zip or a bare `.onnx`
//! model, unpacked into `<cache>/sha256/<hex>/`. [`onnx::OnnxSignature`]
//! reads a model's inputs, outputs and metadata without ONNX Runtime, and
//! [`layout::detect`] names its output format.
//!
//! URLs may carry secrets such as SAS signatures; every error and log line
//! shows them through [`RedactedUrl`], with each query value replaced.

mod cache;
mod download;
mod error;
mod http;
pub mod layout;
pub mod onnx;
pub mod package;
mod policy;
mod redact;
mod source;
mod store;
pub mod unpack;

pub use error::FetchError;
pub use layout::{LayoutError, ModelLayout, Task};
pub use onnx::{OnnxError, OnnxSignature};
pub use package::{CustomVisionManifest, ModelPackage, PackageError};
pub use policy::FetchPolicy;
pub use redact::{REDACTED, RedactedUrl};
pub use source::ModelSource;
pub use store::{CacheStatus, FetchReport, ModelStore};
pub use unpack::UnpackError;
