//! Raw inference ceiling: the agent's own ONNX Runtime session called in a
//! loop on tensors prepared before the loop starts.
//!
//! `scripts/bench agent` divides the agent's end-to-end frames per second by
//! this loop's, and `scripts/bench memory` subtracts this process's maximum
//! resident memory from the agent's. The session is opened by
//! [`InferenceSession::open`] with the same [`SessionConfig`] the `run`
//! command builds, so provider, device, threads and compile cache match.
//!
//! Only [`InferenceSession::run`] is timed: it wraps the tensor in an ONNX
//! Runtime value, runs the model and copies the outputs out. The clone of
//! the prepared tensor that `run` consumes happens outside the timed region.
//!
//! Prints one JSON object on stdout. `cargo bench -p visionfleet-agent
//! --bench ceiling` runs the orientation classifier on the photo frames.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde_json::json;
use visionfleet_agent::cli::{ProviderArg, RuntimeArgs};
use visionfleet_agent::model::{self, PreparedModel};
use visionfleet_agent::preprocess::ImageInput;
use visionfleet_agent::runtime::{InferenceSession, OrtLibrary, SessionConfig};
use visionfleet_agent::source::{self, SourceOptions};
use visionfleet_agent::tensor::InputTensor;
use visionfleet_api::Accelerator;
use visionfleet_model::ModelStore;

/// Runs the agent's ONNX Runtime session in a loop on prepared tensors.
#[derive(Debug, Parser)]
struct Args {
    /// Model: a Custom Vision export zip or an .onnx file, as a path or URL.
    #[arg(long, default_value_os_t = repository_path("assets/models/customvision/orientation-classification.zip"))]
    model: PathBuf,

    /// An image, or a folder of images; each becomes one prepared tensor and
    /// the loop cycles through them.
    #[arg(long, default_value_os_t = repository_path("assets/frames"))]
    frames: PathBuf,

    /// Execution provider, as `visionfleet-agent run --execution-provider`.
    #[arg(long, value_enum, default_value_t = ProviderArg::Openvino)]
    execution_provider: ProviderArg,

    /// Intra-op threads, as `visionfleet-agent run --threads`. Default: one per core.
    #[arg(long)]
    threads: Option<usize>,

    /// Timed calls.
    #[arg(long, default_value_t = 400)]
    iterations: u32,

    /// Untimed calls before the timed ones.
    #[arg(long, default_value_t = 20)]
    warmup: u32,

    /// Model cache folder; the OpenVINO compile cache is its `openvino` folder.
    /// Default: a temporary folder.
    #[arg(long)]
    cache_dir: Option<PathBuf>,

    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,

    #[command(flatten)]
    runtime: RuntimeArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scratch = tempfile::tempdir().context("failed to create a temporary cache folder")?;
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());

    let library = load_library(&args.runtime)?;
    let model = prepare_model(&args.model, &cache_dir)?;
    let config = SessionConfig {
        preference: vec![Accelerator::Cpu],
        allow_cpu_fallback: true,
        policy: args.execution_provider.into(),
        threads: args.threads,
        compile_cache_dir: Some(cache_dir.join("openvino")),
    };
    let mut session = InferenceSession::open(&library, &model.package.model_path, &config)?;
    let input = ImageInput::from_model(session.inputs(), &model.metadata)?;
    let tensors = prepare_tensors(&input, &args.frames)?;

    run_calls(&mut session, &tensors, args.warmup)?;
    let timings = run_calls(&mut session, &tensors, args.iterations)?;

    let report = report(&args, &session, &input, tensors.len(), &timings);
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn repository_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn load_library(args: &RuntimeArgs) -> anyhow::Result<Arc<OrtLibrary>> {
    let path = args
        .ort_dylib_path
        .as_deref()
        .context("ORT_DYLIB_PATH is not set: run `source assets/onnxruntime/env` first")?;
    Ok(OrtLibrary::load(path)?)
}

/// Fetches the model into `cache_dir` through the model store, as the agent does.
fn prepare_model(spec: &Path, cache_dir: &Path) -> anyhow::Result<PreparedModel> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = ModelStore::new(cache_dir);
    let spec = spec.to_string_lossy();
    let (package, _) = runtime.block_on(model::fetch(&store, &spec, None))?;
    Ok(model::prepare(package, None, Default::default())?)
}

fn prepare_tensors(input: &ImageInput, frames: &Path) -> anyhow::Result<Vec<InputTensor>> {
    let options = SourceOptions::default();
    let mut source = source::open(&frames.to_string_lossy(), &options)?;
    let mut tensors = Vec::new();
    while let Some(frame) = source.next_frame()? {
        tensors.push(input.prepare(&frame.image));
    }
    anyhow::ensure!(!tensors.is_empty(), "{} has no images", frames.display());
    Ok(tensors)
}

/// Calls the session `count` times, cycling through `tensors`, and returns
/// the duration of each call.
fn run_calls(
    session: &mut InferenceSession,
    tensors: &[InputTensor],
    count: u32,
) -> anyhow::Result<Vec<Duration>> {
    let mut timings = Vec::with_capacity(count as usize);
    for tensor in tensors.iter().cycle().take(count as usize) {
        let tensor = tensor.clone();

        let started = Instant::now();
        let outputs = session.run(tensor)?;
        timings.push(started.elapsed());

        drop(outputs);
    }
    Ok(timings)
}

fn report(
    args: &Args,
    session: &InferenceSession,
    input: &ImageInput,
    tensor_count: usize,
    timings: &[Duration],
) -> serde_json::Value {
    let total: Duration = timings.iter().sum();
    let mut milliseconds: Vec<f64> = timings
        .iter()
        .map(|timing| timing.as_secs_f64() * 1000.0)
        .collect();
    milliseconds.sort_by(f64::total_cmp);
    let device = session.device();

    json!({
        "model": args.model,
        "provider": device.provider.as_str(),
        "device": device.device.as_str(),
        "threads": args.threads,
        "input": format!("{}x{}", input.width, input.height),
        "tensors": tensor_count,
        "iterations": timings.len(),
        "total_s": total.as_secs_f64(),
        "fps": timings.len() as f64 / total.as_secs_f64(),
        "mean_ms": total.as_secs_f64() * 1000.0 / timings.len() as f64,
        "p10_ms": percentile(&milliseconds, 0.10),
        "p50_ms": percentile(&milliseconds, 0.50),
        "p90_ms": percentile(&milliseconds, 0.90),
    })
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
