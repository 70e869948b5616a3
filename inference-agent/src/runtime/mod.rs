//! ONNX Runtime: loading the library, finding OpenVINO's devices, choosing
//! one from an ordered preference, and running a model on it.

pub mod library;
pub mod openvino;
pub mod selection;
pub mod session;

pub use library::{LibraryError, ORT_DYLIB_PATH_ENV, OrtLibrary};
pub use openvino::OpenVinoInventory;
pub use selection::{ExecutionProvider, ProviderPolicy, SkippedDevice};
pub use session::{
    DeviceReport, InferenceError, InferenceSession, InputSignature, SessionConfig, SessionError,
};
