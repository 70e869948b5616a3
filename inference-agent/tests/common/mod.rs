//! Shared helpers for tests that run real models from `assets/`, which
//! `scripts/fetch-assets` fills. Without it, those tests print a loud
//! message and pass without checking anything.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use visionfleet_model::ModelStore;

use visionfleet_agent::model::{self, PreparedModel};
use visionfleet_agent::runtime::{InferenceSession, OrtLibrary, SessionConfig};

/// Returns the repository's `assets/` folder.
pub fn assets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("assets")
}

/// `assets/<relative>`, or `None` after printing why the test is skipped.
pub fn asset(relative: &str) -> Option<PathBuf> {
    let path = assets_dir().join(relative);
    if path.exists() {
        return Some(path);
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: {} is missing; run scripts/fetch-assets to test with real models !!!!!!!!\n",
        path.display()
    );
    None
}

/// Returns the value, or returns from the test after the skip message.
#[macro_export]
macro_rules! require_asset {
    ($relative:expr) => {
        match common::asset($relative) {
            Some(path) => path,
            None => return,
        }
    };
}

/// Returns the ONNX Runtime library path: `ORT_DYLIB_PATH` when set, else
/// the library that `scripts/fetch-assets` unpacks.
pub fn ort_dylib_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|path| !path.is_empty()) {
        return Some(PathBuf::from(path));
    }
    asset("onnxruntime/libonnxruntime.so.1.24.1")
}

/// Loads ONNX Runtime once per test process.
pub fn ort_library() -> Option<Arc<OrtLibrary>> {
    let path = ort_dylib_path()?;
    Some(OrtLibrary::load(&path).expect("ONNX Runtime loads"))
}

/// Returns the test binary's model store. Each binary has its own, so
/// concurrent tests share its per-URL locks and no two processes write the
/// same cache.
fn store() -> &'static ModelStore {
    static STORE: OnceLock<ModelStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let binary = std::env::current_exe().expect("test binary path");
        let name = binary.file_stem().expect("test binary name").to_owned();
        ModelStore::new(
            Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join("model-cache")
                .join(name),
        )
    })
}

/// Fetches a fixture through the model store and prepares it with the
/// given labels and metadata overrides.
pub fn prepare_model(
    path: &Path,
    labels: Option<Vec<String>>,
    overrides: &[(&str, &str)],
) -> PreparedModel {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let url = path.to_str().expect("UTF-8 path");

    let (package, _) = runtime
        .block_on(model::fetch(store(), url, None))
        .expect("the fixture fetches");

    let overrides = overrides
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    model::prepare(package, labels, overrides).expect("the fixture prepares")
}

/// Opens a session on the CPU through OpenVINO.
pub fn cpu_session(library: &OrtLibrary, model: &PreparedModel) -> InferenceSession {
    InferenceSession::open(
        library,
        &model.package.model_path,
        &SessionConfig::default(),
    )
    .expect("session opens")
}
