//! Time per step of the agent's frame loop: the steps of the `run` loop
//! called one after the other on a video, each timed on its own.
//!
//! The steps are those of `Pipeline::run`. `next_frame` waits for the next
//! decoded frame, which GStreamer decodes and converts to RGB on its own
//! threads. `prepare` resizes and converts it to a tensor, `inference` calls
//! ONNX Runtime, `decode` decodes and filters the outputs and `json` writes
//! the result line. Prints one
//! JSON object with the total seconds of each step. `scripts/bench agent`
//! runs it once per model and provider to explain the gap to the ceiling.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde_json::json;
use visionfleet_agent::cli::{ProviderArg, RuntimeArgs};
use visionfleet_agent::decode;
use visionfleet_agent::model;
use visionfleet_agent::output::{FrameResult, JsonLines, now_rfc3339};
use visionfleet_agent::preprocess::ImageInput;
use visionfleet_agent::runtime::{InferenceSession, OrtLibrary, SessionConfig};
use visionfleet_agent::source::{self, SourceOptions};
use visionfleet_api::Accelerator;
use visionfleet_model::ModelStore;

/// Times each step of the agent's frame loop on a video.
#[derive(Debug, Parser)]
struct Args {
    /// Model: a Custom Vision export zip or an .onnx file, as a path or URL.
    #[arg(long, default_value_os_t = repository_path("assets/models/customvision/orientation-classification.zip"))]
    model: PathBuf,

    /// Video (or image folder) to read.
    #[arg(long, default_value_os_t = repository_path("assets/video/photos-10fps.mp4"))]
    source: PathBuf,

    /// Execution provider, as `visionfleet-agent run --execution-provider`.
    #[arg(long, value_enum, default_value_t = ProviderArg::Openvino)]
    execution_provider: ProviderArg,

    /// Intra-op threads, as `visionfleet-agent run --threads`. Default: one per core.
    #[arg(long)]
    threads: Option<usize>,

    /// Minimum prediction score to report, from 0 to 1.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,

    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,

    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// Accumulated time of each step.
#[derive(Debug, Default)]
struct Steps {
    next_frame: Duration,
    prepare: Duration,
    inference: Duration,
    decode: Duration,
    json: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scratch = tempfile::tempdir().context("failed to create a temporary cache folder")?;
    let library = OrtLibrary::load(
        args.runtime
            .ort_dylib_path
            .as_deref()
            .context("ORT_DYLIB_PATH is not set: run `source assets/onnxruntime/env` first")?,
    )?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = ModelStore::new(scratch.path());
    let (package, _) =
        runtime.block_on(model::fetch(&store, &args.model.to_string_lossy(), None))?;
    let model = model::prepare(package, None, Default::default())?;

    let config = SessionConfig {
        preference: vec![Accelerator::Cpu],
        allow_cpu_fallback: true,
        policy: args.execution_provider.into(),
        threads: args.threads,
        compile_cache_dir: Some(scratch.path().join("openvino")),
    };
    let mut session = InferenceSession::open(&library, &model.package.model_path, &config)?;
    let input = ImageInput::from_model(session.inputs(), &model.metadata)?;
    let options = SourceOptions::default();
    let mut frames = source::open(&args.source.to_string_lossy(), &options)?;
    let mut output = JsonLines::new(std::io::sink());
    let task = model.layout.task().to_string();

    let mut steps = Steps::default();
    let mut count = 0u64;
    let started = Instant::now();
    loop {
        let mark = Instant::now();
        let Some(frame) = frames.next_frame()? else {
            break;
        };
        steps.next_frame += mark.elapsed();

        let mark = Instant::now();
        let tensor = input.prepare(&frame.image);
        steps.prepare += mark.elapsed();

        let mark = Instant::now();
        let outputs = session.run(tensor)?;
        steps.inference += mark.elapsed();

        let mark = Instant::now();
        let predictions = model
            .decoder
            .decode(&outputs, &model.labels, args.threshold)?;
        let predictions = decode::filter(predictions, args.threshold, &[]);
        steps.decode += mark.elapsed();

        let mark = Instant::now();
        output.write(&FrameResult {
            frame: frame.index,
            timestamp: now_rfc3339(),
            source: &frame.origin,
            model_digest: &model.package.digest,
            device: session.device().device.as_str(),
            task: &task,
            predictions: &predictions,
        })?;
        steps.json += mark.elapsed();
        count += 1;
    }
    let elapsed = started.elapsed();

    let report = json!({
        "model": args.model,
        "provider": session.device().provider.as_str(),
        "threads": args.threads,
        "frames": count,
        "elapsed_s": elapsed.as_secs_f64(),
        "fps": count as f64 / elapsed.as_secs_f64(),
        "next_frame_s": steps.next_frame.as_secs_f64(),
        "prepare_s": steps.prepare.as_secs_f64(),
        "inference_s": steps.inference.as_secs_f64(),
        "decode_s": steps.decode.as_secs_f64(),
        "json_s": steps.json.as_secs_f64(),
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{report}")?;
    Ok(())
}

fn repository_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}
