//! An ONNX Runtime session on the first usable device of a preference, with
//! one report of what was chosen and what was skipped.

use std::path::{Path, PathBuf};

use half::f16;
use ort::ep;
use ort::session::Session;
use ort::value::{DynMapValueType, DynValue, Tensor, TensorElementType, ValueType};
use visionfleet_api::Accelerator;

use super::library::OrtLibrary;
use super::openvino::OpenVinoInventory;
use super::selection::{self, Candidate, ExecutionProvider, ProviderPolicy, SkippedDevice};
use crate::tensor::{InputData, InputElement, InputTensor, ModelOutputs, OutputValue, TensorData};

/// How to choose the device and configure ONNX Runtime.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Devices in order of preference; the first usable one is used.
    pub preference: Vec<Accelerator>,
    /// Whether to run on the CPU when no preferred device is usable.
    pub allow_cpu_fallback: bool,
    pub policy: ProviderPolicy,
    /// Threads per operator (ONNX Runtime's intra-op pool and OpenVINO's
    /// `num_of_threads`). `None` keeps each runtime's default, one thread per
    /// physical core.
    pub threads: Option<usize>,
    /// Folder where OpenVINO stores compiled models, so a restart loads the
    /// compiled blob instead of compiling again. `None` disables the cache.
    pub compile_cache_dir: Option<PathBuf>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            preference: vec![Accelerator::Cpu],
            allow_cpu_fallback: true,
            policy: ProviderPolicy::default(),
            threads: None,
            compile_cache_dir: None,
        }
    }
}

/// Device a session runs on, and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceReport {
    pub device: Accelerator,
    pub provider: ExecutionProvider,
    pub requested: Vec<Accelerator>,
    /// True when the device is not the first preference: an earlier
    /// preferred device was absent or failed, or the CPU was used as the
    /// allowed fallback.
    pub fallback: bool,
    /// Preferred devices and providers that were ruled out, in order.
    pub skipped: Vec<SkippedDevice>,
    pub openvino: OpenVinoInventory,
}

/// Failure to create a session on any device.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("model file {} does not exist", .0.display())]
    ModelNotFound(PathBuf),

    #[error("failed to create the OpenVINO compile cache folder {}: {source}", path.display())]
    CompileCache {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "no requested accelerator is usable (requested: {requested}; {openvino}; {reasons}){hint}",
        hint = if *.allow_cpu_fallback { "" } else { "; CPU fallback is disabled (--no-cpu-fallback or allowCpuFallback: false)" }
    )]
    NoUsableDevice {
        requested: String,
        openvino: String,
        reasons: String,
        allow_cpu_fallback: bool,
    },
}

/// Failure of one inference.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("failed to create the input tensor {name:?} with shape {shape:?}: {message}")]
    Input {
        name: String,
        shape: Vec<usize>,
        message: String,
    },

    #[error("ONNX Runtime failed to run the model: {0}")]
    Run(String),

    #[error("failed to read model output {name:?}: {message}")]
    Output { name: String, message: String },
}

/// Name, element type and shape of a model input. Dynamic dimensions are
/// `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSignature {
    pub name: String,
    /// `None` when the element type is neither float32 nor float16.
    pub element: Option<InputElement>,
    pub element_name: String,
    pub shape: Vec<Option<usize>>,
}

/// A loaded model on one device.
#[derive(Debug)]
pub struct InferenceSession {
    session: Session,
    device: DeviceReport,
    inputs: Vec<InputSignature>,
    output_names: Vec<String>,
    metadata: Vec<(String, String)>,
}

impl InferenceSession {
    /// Loads `model_path` on the first usable device of `config.preference`.
    ///
    /// Logs the device used once at info, and one warning that lists every
    /// skipped device with its reason and the devices OpenVINO found.
    pub fn open(
        library: &OrtLibrary,
        model_path: &Path,
        config: &SessionConfig,
    ) -> Result<Self, SessionError> {
        if !model_path.is_file() {
            return Err(SessionError::ModelNotFound(model_path.to_path_buf()));
        }
        if let Some(dir) = &config.compile_cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| SessionError::CompileCache {
                path: dir.clone(),
                source,
            })?;
        }

        let openvino = match config.policy {
            ProviderPolicy::OpenVinoFirst => OpenVinoInventory::probe(library.dir()),
            ProviderPolicy::CpuOnly => OpenVinoInventory::Unavailable {
                reason: "not used: the CPU execution provider was requested".to_owned(),
            },
        };
        let plan = selection::plan(
            &config.preference,
            config.allow_cpu_fallback,
            config.policy,
            &openvino,
        );
        let mut skipped = plan.skipped;

        for candidate in plan.candidates {
            match build_session(library, model_path, candidate, config) {
                Ok(session) => {
                    let device = DeviceReport {
                        device: candidate.device,
                        provider: candidate.provider,
                        requested: config.preference.clone(),
                        fallback: candidate.fallback
                            || config.preference.first() != Some(&candidate.device),
                        skipped,
                        openvino,
                    };
                    log_selection(&device);
                    return Ok(Self::new(session, device));
                }
                Err(message) => skipped.push(SkippedDevice {
                    device: candidate.device,
                    provider: candidate.provider,
                    reason: format!(
                        "failed to load the model with {}: {message}",
                        candidate.provider
                    ),
                }),
            }
        }

        Err(SessionError::NoUsableDevice {
            requested: join_devices(&config.preference),
            openvino: openvino.summary(),
            reasons: join_skipped(&skipped),
            allow_cpu_fallback: config.allow_cpu_fallback,
        })
    }

    fn new(session: Session, device: DeviceReport) -> Self {
        let inputs = session
            .inputs()
            .iter()
            .map(|outlet| input_signature(outlet.name(), outlet.dtype()))
            .collect();
        let output_names = session
            .outputs()
            .iter()
            .map(|outlet| outlet.name().to_owned())
            .collect();
        let metadata = read_metadata(&session);
        Self {
            session,
            device,
            inputs,
            output_names,
            metadata,
        }
    }

    pub fn device(&self) -> &DeviceReport {
        &self.device
    }

    pub fn inputs(&self) -> &[InputSignature] {
        &self.inputs
    }

    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// Returns the ONNX model's `metadata_props`, such as `Image.BitmapPixelFormat`.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    /// Runs the model on one input and copies every output out of ONNX Runtime.
    pub fn run(&mut self, input: InputTensor) -> Result<ModelOutputs, InferenceError> {
        let name = input.name.clone();
        let value = input_value(input)?;

        let outputs = self
            .session
            .run(ort::inputs![name.as_str() => value])
            .map_err(|error| InferenceError::Run(error.to_string()))?;

        let mut copied = ModelOutputs::default();
        for (name, value) in outputs.iter() {
            let output = copy_output(&value).map_err(|message| InferenceError::Output {
                name: name.to_owned(),
                message,
            })?;
            copied.insert(name, output);
        }
        Ok(copied)
    }
}

fn build_session(
    library: &OrtLibrary,
    model_path: &Path,
    candidate: Candidate,
    config: &SessionConfig,
) -> Result<Session, String> {
    let mut builder = Session::builder(library.environment()).map_err(|error| error.to_string())?;

    if let Some(threads) = config.threads {
        builder = builder
            .with_intra_threads(threads)
            .map_err(|error| error.to_string())?;
    }

    if candidate.provider == ExecutionProvider::OpenVino {
        let mut openvino = ep::OpenVINO::default().with_device_type(candidate.device.as_str());
        if let Some(dir) = &config.compile_cache_dir {
            openvino = openvino.with_cache_dir(dir.display());
        }
        if let Some(threads) = config.threads {
            openvino = openvino.with_num_threads(threads);
        }
        builder = builder
            .with_execution_providers([openvino.build().error_on_failure()])
            .map_err(|error| error.to_string())?;
    }

    builder
        .commit_from_file(model_path)
        .map_err(|error| error.to_string())
}

fn log_selection(report: &DeviceReport) {
    if !report.skipped.is_empty() {
        tracing::warn!(
            requested = %join_devices(&report.requested),
            using = %report.device,
            provider = %report.provider,
            openvino = %report.openvino.summary(),
            skipped = %join_skipped(&report.skipped),
            "Preferred accelerator unavailable, falling back"
        );
    }
    tracing::info!(
        device = %report.device,
        provider = %report.provider,
        fallback = report.fallback,
        "Inference device selected"
    );
}

fn join_devices(devices: &[Accelerator]) -> String {
    devices
        .iter()
        .map(|device| device.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn join_skipped(skipped: &[SkippedDevice]) -> String {
    skipped
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn input_signature(name: &str, dtype: &ValueType) -> InputSignature {
    let (element, element_name, shape) = match dtype {
        ValueType::Tensor { ty, shape, .. } => {
            let element = match ty {
                TensorElementType::Float32 => Some(InputElement::Float32),
                TensorElementType::Float16 => Some(InputElement::Float16),
                _ => None,
            };
            let dims = shape
                .iter()
                .map(|&dim| usize::try_from(dim).ok().filter(|&dim| dim > 0))
                .collect();
            (element, ty.to_string(), dims)
        }
        other => (None, other.to_string(), Vec::new()),
    };
    InputSignature {
        name: name.to_owned(),
        element,
        element_name,
        shape,
    }
}

fn read_metadata(session: &Session) -> Vec<(String, String)> {
    let Ok(metadata) = session.metadata() else {
        return Vec::new();
    };
    let keys = metadata.custom_keys().unwrap_or_default();
    keys.into_iter()
        .filter_map(|key| metadata.custom(&key).map(|value| (key, value)))
        .collect()
}

fn input_value(input: InputTensor) -> Result<DynValue, InferenceError> {
    let shape = input.shape.clone();
    let created = match input.data {
        InputData::Float32(data) => Tensor::from_array((input.shape, data)).map(Tensor::into_dyn),
        InputData::Float16(data) => Tensor::from_array((input.shape, data)).map(Tensor::into_dyn),
    };
    created.map_err(|error| InferenceError::Input {
        name: input.name,
        shape,
        message: error.to_string(),
    })
}

fn copy_output(value: &DynValue) -> Result<OutputValue, String> {
    match value.dtype() {
        ValueType::Tensor { ty, .. } => copy_tensor(value, *ty),
        ValueType::Sequence(inner) if matches!(**inner, ValueType::Map { .. }) => {
            copy_map_sequence(value)
        }
        other => Err(format!("unsupported output type {other}")),
    }
}

fn copy_tensor(value: &DynValue, element: TensorElementType) -> Result<OutputValue, String> {
    let shape: Vec<usize> = value
        .shape()
        .iter()
        .map(|&dim| usize::try_from(dim).unwrap_or(0))
        .collect();

    let data = match element {
        TensorElementType::Float32 => TensorData::Float(extract::<f32>(value)?.to_vec()),
        TensorElementType::Float16 => {
            TensorData::Float(extract::<f16>(value)?.iter().map(|v| v.to_f32()).collect())
        }
        TensorElementType::Float64 => {
            TensorData::Float(extract::<f64>(value)?.iter().map(|&v| v as f32).collect())
        }
        TensorElementType::Int64 => TensorData::Int(extract::<i64>(value)?.to_vec()),
        TensorElementType::Int32 => TensorData::Int(
            extract::<i32>(value)?
                .iter()
                .map(|&v| i64::from(v))
                .collect(),
        ),
        TensorElementType::Uint8 => TensorData::Int(
            extract::<u8>(value)?
                .iter()
                .map(|&v| i64::from(v))
                .collect(),
        ),
        TensorElementType::Int8 => TensorData::Int(
            extract::<i8>(value)?
                .iter()
                .map(|&v| i64::from(v))
                .collect(),
        ),
        TensorElementType::String => {
            let (_, strings) = value
                .try_extract_strings()
                .map_err(|error| error.to_string())?;
            TensorData::String(strings)
        }
        other => return Err(format!("unsupported tensor element type {other}")),
    };
    Ok(OutputValue::Tensor { shape, data })
}

fn extract<T: ort::value::PrimitiveTensorElementType>(value: &DynValue) -> Result<&[T], String> {
    value
        .try_extract_tensor::<T>()
        .map(|(_, data)| data)
        .map_err(|error| error.to_string())
}

fn copy_map_sequence(value: &DynValue) -> Result<OutputValue, String> {
    let maps = value
        .try_extract_sequence::<DynMapValueType>()
        .map_err(|error| error.to_string())?;

    let mut entries = Vec::with_capacity(maps.len());
    for map in maps {
        let pairs = map
            .try_extract_key_values::<String, f32>()
            .map_err(|error| format!("expected a map from string to float: {error}"))?;
        entries.push(pairs);
    }
    Ok(OutputValue::MapSequence(entries))
}
