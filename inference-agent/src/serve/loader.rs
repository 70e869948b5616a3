//! Loading a model beside the serving one: fetch and verify it, compile a
//! session, and run one warm-up inference, all off the frame loop.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;
use visionfleet_api::visionmodel::ModelFormat;
use visionfleet_model::{FetchError, ModelStore};

use super::config::ModelRequest;
use super::state::ServedModel;
use crate::metrics::{Metrics, ModelLoadPhase};
use crate::model::{self, ModelError, PreparedModel};
use crate::pipeline::{Pipeline, PipelineError, RunSettings};
use crate::runtime::{InferenceSession, OrtLibrary, ProviderPolicy, SessionConfig, SessionError};

/// Failure to load a model. The serving model, if any, stays.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Fetch(#[from] FetchError),

    #[error("the config expects a {expected:?} model, but the package is {found}")]
    FormatMismatch {
        expected: ModelFormat,
        found: &'static str,
    },

    #[error(transparent)]
    Prepare(ModelError),

    #[error(transparent)]
    Session(#[from] SessionError),

    #[error("the model cannot be fed from frames: {0}")]
    Pipeline(PipelineError),

    #[error("the warm-up inference failed: {0}")]
    WarmUp(PipelineError),

    #[error("the model loading thread panicked")]
    Panicked,
}

impl LoadError {
    /// Returns a CamelCase word for the metric label and the pod's last error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Fetch(error) => error.reason(),
            Self::FormatMismatch { .. } => "FormatMismatch",
            Self::Prepare(ModelError::Layout { source, .. }) => source.reason(),
            Self::Prepare(ModelError::Fetch(error)) => error.reason(),
            Self::Prepare(_) => "InvalidModel",
            Self::Session(SessionError::NoUsableDevice { .. }) => "NoUsableDevice",
            Self::Session(SessionError::ModelNotFound(_)) => "ModelFileMissing",
            Self::Session(SessionError::CompileCache { .. }) => "CompileCacheFailed",
            Self::Pipeline(_) => "UnsupportedInput",
            Self::WarmUp(_) => "WarmUpFailed",
            Self::Panicked => "LoaderPanicked",
        }
    }

    /// Returns whether loading again later may succeed: network and server
    /// failures, and cache folder I/O. A bad file, an unsupported model or a
    /// missing device needs a config change.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Fetch(error) => error.is_transient(),
            Self::Prepare(error) => error.is_transient(),
            Self::Session(SessionError::CompileCache { .. }) | Self::Panicked => true,
            _ => false,
        }
    }
}

/// A model ready to take over: compiled, warmed up and not yet counted in
/// the metrics.
#[derive(Debug)]
pub struct LoadedModel {
    pub pipeline: Pipeline,
    pub served: ServedModel,
    /// Labels the model can report, for pruning the detections counter.
    pub labels: BTreeSet<String>,
}

/// Everything loading needs, shared by every load.
#[derive(Debug)]
pub struct ModelLoader {
    pub library: Arc<OrtLibrary>,
    pub store: ModelStore,
    pub metrics: Metrics,
    pub policy: ProviderPolicy,
    pub threads: Option<usize>,
    pub compile_cache_dir: std::path::PathBuf,
}

impl ModelLoader {
    /// Fetches, compiles and warms up `request`'s model; `settings` are the
    /// filter it starts with.
    pub async fn load(
        self: &Arc<Self>,
        request: &ModelRequest,
        settings: RunSettings,
    ) -> Result<LoadedModel, LoadError> {
        let prepared = self.fetch(request).await?;

        let loader = self.clone();
        let accelerator = request.accelerator.clone();
        tokio::task::spawn_blocking(move || {
            let config = SessionConfig {
                preference: accelerator.preference,
                allow_cpu_fallback: accelerator.allow_cpu_fallback,
                policy: loader.policy,
                threads: loader.threads,
                compile_cache_dir: Some(loader.compile_cache_dir.clone()),
            };
            loader.compile_and_warm_up(prepared, &config, settings)
        })
        .await
        .map_err(|_| LoadError::Panicked)?
    }

    async fn fetch(&self, request: &ModelRequest) -> Result<PreparedModel, LoadError> {
        let started = Instant::now();
        let (package, report) = model::fetch(&self.store, &request.url, request.sha256.as_deref())
            .await
            .map_err(|error| match error {
                ModelError::Fetch(error) => LoadError::Fetch(error),
                other => LoadError::Prepare(other),
            })?;
        self.metrics
            .add_model_download_bytes(report.bytes_downloaded);
        self.metrics
            .observe_model_load_phase(ModelLoadPhase::Fetch, started.elapsed());
        tracing::info!(
            digest = %package.digest,
            cache = report.cache.as_str(),
            bytes_downloaded = report.bytes_downloaded,
            "Model fetched"
        );

        check_format(request.format, package.manifest.is_some())?;
        model::prepare(package, request.labels.clone(), Default::default())
            .map_err(LoadError::Prepare)
    }

    fn compile_and_warm_up(
        &self,
        model: PreparedModel,
        config: &SessionConfig,
        settings: RunSettings,
    ) -> Result<LoadedModel, LoadError> {
        let started = Instant::now();
        let session = InferenceSession::open(&self.library, &model.package.model_path, config)?;
        self.metrics
            .observe_model_load_phase(ModelLoadPhase::Compile, started.elapsed());

        let device = session.device();
        let served = ServedModel {
            digest: model.package.digest.clone(),
            device: device.device.to_string(),
            provider: device.provider.to_string(),
            fallback: device.fallback,
        };
        let labels = label_set(&model);
        let mut pipeline =
            Pipeline::new(session, model, settings, None).map_err(LoadError::Pipeline)?;

        // A black frame of the input size: the first run on an OpenVINO
        // device allocates and is often much slower than the ones after it.
        let started = Instant::now();
        let input = pipeline.input();
        let blank = RgbImage::new(input.width as u32, input.height as u32);
        pipeline.infer(&blank).map_err(LoadError::WarmUp)?;
        self.metrics
            .observe_model_load_phase(ModelLoadPhase::WarmUp, started.elapsed());

        Ok(LoadedModel {
            pipeline,
            served,
            labels,
        })
    }
}

fn check_format(expected: ModelFormat, is_custom_vision: bool) -> Result<(), LoadError> {
    let found = if is_custom_vision {
        "a Custom Vision export"
    } else {
        "a bare ONNX model"
    };
    match (expected, is_custom_vision) {
        (ModelFormat::CustomVision, false) | (ModelFormat::Onnx, true) => {
            Err(LoadError::FormatMismatch { expected, found })
        }
        _ => Ok(()),
    }
}

/// Returns the labels the model reports: its label list, or its class
/// indices when it has none.
fn label_set(model: &PreparedModel) -> BTreeSet<String> {
    if !model.labels.is_empty() {
        return model.labels.iter().cloned().collect();
    }
    let classes = model.layout.class_count().unwrap_or_default();
    (0..classes).map(|index| index.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_mismatch_detected() {
        assert!(check_format(ModelFormat::CustomVision, false).is_err());
        assert!(check_format(ModelFormat::Onnx, true).is_err());
        assert!(check_format(ModelFormat::Auto, true).is_ok());
        assert!(check_format(ModelFormat::Onnx, false).is_ok());
    }
}
