//! Loading the ONNX Runtime shared library and creating the process-wide
//! ONNX Runtime environment.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::environment::Environment;

/// Environment variable with the path of the ONNX Runtime shared library,
/// the same name `ort`'s `load-dynamic` feature reads.
pub const ORT_DYLIB_PATH_ENV: &str = "ORT_DYLIB_PATH";

/// Failure to load ONNX Runtime. Every variant is permanent, because the
/// library or its configuration has to change before a retry can succeed.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error(
        "{ORT_DYLIB_PATH_ENV} is not set: set it to the ONNX Runtime shared library, for example \
         libonnxruntime.so.1.24.1 from the onnxruntime-openvino wheel (scripts/fetch-assets writes \
         assets/onnxruntime/env, which exports it)"
    )]
    NotSet,

    #[error("{ORT_DYLIB_PATH_ENV}={} does not exist: point it at libonnxruntime.so", path.display())]
    NotFound { path: PathBuf },

    #[error("failed to load ONNX Runtime from {}: {message}", path.display())]
    Load { path: PathBuf, message: String },

    #[error("failed to create the ONNX Runtime environment: {0}")]
    Environment(String),

    #[error(
        "ONNX Runtime is already loaded from {} in this process, so {} cannot be loaded as well",
        loaded.display(),
        requested.display()
    )]
    AlreadyLoaded { loaded: PathBuf, requested: PathBuf },
}

/// The loaded ONNX Runtime library and its environment. ONNX Runtime allows
/// one environment per process, so there is at most one of these.
#[derive(Debug)]
pub struct OrtLibrary {
    path: PathBuf,
    environment: Environment,
}

static LOADED: Mutex<Option<Arc<OrtLibrary>>> = Mutex::new(None);

impl OrtLibrary {
    /// Loads ONNX Runtime from the path in [`ORT_DYLIB_PATH_ENV`].
    pub fn from_env() -> Result<Arc<Self>, LibraryError> {
        let path = std::env::var_os(ORT_DYLIB_PATH_ENV)
            .filter(|value| !value.is_empty())
            .ok_or(LibraryError::NotSet)?;
        Self::load(Path::new(&path))
    }

    /// Loads ONNX Runtime from `path`, or returns the library this process
    /// already loaded from the same path.
    pub fn load(path: &Path) -> Result<Arc<Self>, LibraryError> {
        let mut loaded = LOADED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());

        if let Some(library) = loaded.as_ref() {
            if same_file(&library.path, path) {
                return Ok(library.clone());
            }
            return Err(LibraryError::AlreadyLoaded {
                loaded: library.path.clone(),
                requested: path.to_path_buf(),
            });
        }

        if !path.exists() {
            return Err(LibraryError::NotFound {
                path: path.to_path_buf(),
            });
        }

        let builder = ort::init_from(path).map_err(|error| LibraryError::Load {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
        let environment = builder
            .with_name("visionfleet-agent")
            .build()
            .map_err(|error| LibraryError::Environment(error.to_string()))?;
        // ONNX Runtime reports every graph transformation at info level; the
        // agent keeps its warnings and errors only.
        environment.set_log_level(ort::logging::LogLevel::Warning);

        let library = Arc::new(Self {
            path: path.to_path_buf(),
            environment,
        });
        *loaded = Some(library.clone());
        tracing::debug!(path = %path.display(), "Loaded ONNX Runtime");
        Ok(library)
    }

    /// Path of the loaded shared library.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Folder of the shared library, where the OpenVINO execution provider
    /// and OpenVINO's own libraries sit in the onnxruntime-openvino wheel.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or_else(|| Path::new("."))
    }

    pub(crate) fn environment(&self) -> &Environment {
        &self.environment
    }
}

fn same_file(left: &Path, right: &Path) -> bool {
    match (left.canonicalize(), right.canonicalize()) {
        (Ok(left), Ok(right)) => left == right,
        _ => left == right,
    }
}
