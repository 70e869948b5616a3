//! The `run` and `devices` commands: wiring the runtime, the model, the
//! source, the output and the metrics together.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use serde::Serialize;
use visionfleet_model::ModelStore;

use crate::cli::{RunArgs, RuntimeArgs};
use crate::metrics::Metrics;
use crate::model::{self, PreparedModel};
use crate::output::JsonLines;
use crate::pipeline::{Pipeline, RunSettings, RunSummary};
use crate::runtime::{
    InferenceSession, LibraryError, OpenVinoInventory, OrtLibrary, SessionConfig,
};
use crate::source;

/// Runs a model on a source until the source ends or a stop signal arrives,
/// and prints the summary line on stderr.
pub async fn run(args: RunArgs) -> anyhow::Result<RunSummary> {
    let library = load_library(&args.runtime)?;
    let model = fetch_and_prepare(&args).await?;
    let metrics = start_metrics(&args).await?;

    let config = SessionConfig {
        preference: args.accelerator.clone(),
        allow_cpu_fallback: !args.no_cpu_fallback,
        policy: args.execution_provider.into(),
        threads: args.threads.map(usize::from),
        compile_cache_dir: Some(args.compile_cache_dir()),
    };
    let settings = RunSettings {
        threshold: args.threshold,
        objects_of_interest: args.objects_of_interest.clone(),
        max_fps: args.max_fps,
    };
    let source_spec = args.source.clone();
    let source_options = args.source_options();

    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(stop.clone());

    let metrics_for_run = metrics.as_ref().map(|(metrics, _)| metrics.clone());
    let summary = tokio::task::spawn_blocking(move || -> anyhow::Result<RunSummary> {
        let session = InferenceSession::open(&library, &model.package.model_path, &config)?;
        let mut pipeline = Pipeline::new(session, model, settings, metrics_for_run)?;
        let mut source = source::open(&source_spec, &source_options)?;
        let mut output = JsonLines::new(std::io::stdout().lock());
        Ok(pipeline.run(source.as_mut(), &mut output, &stop)?)
    })
    .await
    .context("the inference thread panicked")??;

    if let Some((_, server)) = metrics {
        server.abort();
    }
    let mut stderr = std::io::stderr().lock();
    writeln!(stderr, "{summary}").context("failed to write the summary to stderr")?;
    Ok(summary)
}

/// Lists OpenVINO's version and devices as JSON on stdout.
pub fn devices(args: &RuntimeArgs) -> anyhow::Result<()> {
    let library = load_library(args)?;
    let inventory = OpenVinoInventory::probe(library.dir());

    let report = DevicesReport {
        onnxruntime: library.path().to_path_buf(),
        openvino_build: inventory.build().map(str::to_owned),
        openvino_devices: inventory.devices().to_vec(),
        openvino_error: match &inventory {
            OpenVinoInventory::Unavailable { reason } => Some(reason.clone()),
            OpenVinoInventory::Available { .. } => None,
        },
    };
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &report)?;
    writeln!(stdout)?;
    Ok(())
}

#[derive(Debug, Serialize)]
struct DevicesReport {
    onnxruntime: PathBuf,
    openvino_build: Option<String>,
    openvino_devices: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    openvino_error: Option<String>,
}

fn load_library(args: &RuntimeArgs) -> Result<Arc<OrtLibrary>, LibraryError> {
    match &args.ort_dylib_path {
        Some(path) => OrtLibrary::load(path),
        None => Err(LibraryError::NotSet),
    }
}

async fn fetch_and_prepare(args: &RunArgs) -> anyhow::Result<PreparedModel> {
    let store = ModelStore::new(args.cache_dir());
    let (package, report) = model::fetch(&store, &args.model, args.sha256.as_deref()).await?;
    tracing::info!(
        digest = %package.digest,
        cache = report.cache.as_str(),
        bytes_downloaded = report.bytes_downloaded,
        path = %package.model_path.display(),
        "Model fetched"
    );

    let labels = args
        .labels
        .as_deref()
        .map(model::read_labels_file)
        .transpose()?;
    let overrides = model::parse_metadata_overrides(&args.metadata)?;
    Ok(model::prepare(package, labels, overrides)?)
}

async fn start_metrics(
    args: &RunArgs,
) -> anyhow::Result<Option<(Metrics, tokio::task::JoinHandle<()>)>> {
    let Some(addr) = args.metrics_addr else {
        return Ok(None);
    };
    let metrics = Metrics::new()?;
    let (_, server) = metrics.serve(addr).await?;
    Ok(Some((metrics, server)))
}

/// Sets `stop` on SIGINT or SIGTERM, so the current frame finishes and the
/// summary is still printed.
fn spawn_signal_handler(stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Stop signal received, finishing the current frame");
        stop.store(true, Ordering::Relaxed);
    });
}

async fn wait_for_signal() {
    let mut terminate = match tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::terminate(),
    ) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::warn!(%error, "Cannot listen for SIGTERM; only Ctrl-C stops the run early");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
