//! The `serve` command: the long-running agent a DaemonSet runs on each
//! node.
//!
//! It reads its AgentConfig file, serves the model on its source forever
//! and applies config changes while frames flow. The tokio runtime runs the
//! HTTP server, the config watcher, the controller, model downloads, the
//! MQTT clients and the pod reporter. One dedicated thread runs the frame
//! loop (source, model, sinks). A new model compiles and warms up on
//! tokio's blocking pool beside it, so a swap costs no frame.

pub mod args;
pub mod cluster;
pub mod config;
pub mod config_watch;
pub mod controller;
pub mod frame_loop;
pub mod http;
pub mod input;
pub mod loader;
pub mod pod_status;
pub mod redact;
pub mod sinks;
pub mod snapshot;
pub mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Context;
use visionfleet_model::ModelStore;

pub use args::ServeArgs;

use self::cluster::Cluster;
use self::config::Identity;
use self::controller::Controller;
use self::frame_loop::{FrameLoop, Shared};
use self::http::HttpContext;
use self::loader::ModelLoader;
use self::redact::Redactor;
use self::state::AgentState;
use crate::metrics::Metrics;
use crate::runtime::{LibraryError, OrtLibrary};

/// Runs the agent until SIGINT or SIGTERM. Returns an error only when it
/// cannot start: ONNX Runtime missing or the HTTP port taken. A bad config
/// or model keeps it running, not ready, with the reason at `/readyz` and
/// on its pod.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let library = load_library(&args)?;
    let metrics = Metrics::new()?;
    let identity = Identity::new(
        args.node_name.clone(),
        args.pod_name.clone(),
        args.pod_namespace.clone(),
    );
    let state = Arc::new(AgentState::new(args.stall_timeout()));
    let redactor = Redactor::default();
    let cluster = Cluster::default();

    let http_context = HttpContext {
        state: state.clone(),
        metrics: metrics.clone(),
        font: snapshot::load_font(&args.font),
    };
    let (_, http_server) = http::start(args.http_addr, http_context).await?;
    let reporter = pod_status::spawn(
        state.clone(),
        metrics.clone(),
        &identity,
        cluster.clone(),
        redactor.clone(),
    );

    let shared = Shared {
        state,
        metrics: metrics.clone(),
        redactor,
        model_generation: Arc::new(AtomicU64::new(0)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let (commands, command_receiver) = std::sync::mpsc::channel();
    let frame_loop = FrameLoop::new(command_receiver, shared.clone());
    let frame_thread = std::thread::Builder::new()
        .name("frame-loop".to_owned())
        .spawn(move || frame_loop.run())
        .context("failed to start the frame loop thread")?;

    let loader = Arc::new(ModelLoader {
        library,
        store: ModelStore::new(&args.cache_dir),
        metrics,
        policy: args.execution_provider.into(),
        threads: args.threads.map(usize::from),
        compile_cache_dir: args.compile_cache_dir.clone(),
    });
    let (updates, watcher) = config_watch::spawn(
        args.config.clone(),
        args.config_poll_interval(),
        identity.clone(),
    );
    let controller = Controller::new(
        loader,
        commands,
        shared.clone(),
        identity,
        cluster,
        tokio::runtime::Handle::current(),
    );
    let controller = tokio::spawn(controller.run(updates));
    tracing::info!(config = %args.config.display(), "Agent started");

    wait_for_signal().await;
    tracing::info!("Stop signal received, finishing the current frame");
    shared.stop.store(true, Ordering::Relaxed);
    watcher.abort();
    controller.abort();

    tokio::task::spawn_blocking(move || frame_thread.join())
        .await
        .context("failed to wait for the frame loop")?
        .map_err(|_| anyhow::anyhow!("the frame loop thread panicked"))?;
    reporter.abort();
    http_server.abort();
    tracing::info!("Agent stopped");
    Ok(())
}

fn load_library(args: &ServeArgs) -> Result<Arc<OrtLibrary>, LibraryError> {
    match &args.runtime.ort_dylib_path {
        Some(path) => OrtLibrary::load(path),
        None => Err(LibraryError::NotSet),
    }
}

async fn wait_for_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "Cannot listen for SIGTERM; only Ctrl-C stops the agent");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
