//! `visionfleet-operator`: reconciles VisionModels into inference-agent DaemonSets.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::runtime::events::Reporter;
use visionfleet_model::{FetchPolicy, ModelStore};
use visionfleet_operator::accelerators::AcceleratorMapping;
use visionfleet_operator::controller::{self, ControllerParts};
use visionfleet_operator::crd;
use visionfleet_operator::leader::{self, LeaseSettings};
use visionfleet_operator::metrics::Metrics;
use visionfleet_operator::reconcile::verify::Verifier;
use visionfleet_operator::server::{self, Health};
use visionfleet_operator::settings::AgentSettings;

/// Kubernetes operator that rolls VisionModels out to edge nodes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the VisionModel CustomResourceDefinition as YAML.
    Crd,
    /// Run the controller against the cluster of the current kubeconfig or service account.
    Run(Box<RunArgs>),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Address of the `/metrics`, `/healthz` and `/readyz` endpoints.
    #[arg(long, env = "VISIONFLEET_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "VISIONFLEET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,

    /// Agent image for VisionModels that set none.
    #[arg(
        long,
        env = "VISIONFLEET_AGENT_IMAGE",
        default_value = "ghcr.io/visionfleet/visionfleet-agent:0.1.0"
    )]
    agent_image: String,

    /// Image pull policy of agent containers.
    #[arg(
        long,
        env = "VISIONFLEET_AGENT_IMAGE_PULL_POLICY",
        default_value = "IfNotPresent"
    )]
    agent_image_pull_policy: String,

    /// ServiceAccount of agent pods.
    #[arg(
        long,
        env = "VISIONFLEET_AGENT_SERVICE_ACCOUNT",
        default_value = "visionfleet-agent"
    )]
    agent_service_account: String,

    /// Folder on each node for the model and compile caches.
    #[arg(
        long,
        env = "VISIONFLEET_NODE_CACHE_PATH",
        default_value = "/var/lib/visionfleet"
    )]
    node_cache_path: String,

    /// Extended resource that gives pods access to cameras, from a camera device plugin.
    #[arg(long, env = "VISIONFLEET_CAMERA_RESOURCE")]
    camera_resource: Option<String>,

    /// YAML file mapping accelerators to node labels and device-plugin resources; unset uses the defaults.
    #[arg(long, env = "VISIONFLEET_ACCELERATOR_MAPPING")]
    accelerator_mapping: Option<PathBuf>,

    /// Folder where the operator caches the models it verifies.
    #[arg(
        long,
        env = "VISIONFLEET_MODEL_CACHE_DIR",
        default_value = "/tmp/visionfleet-models"
    )]
    model_cache_dir: PathBuf,

    /// Allow model URLs that resolve to link-local or cloud metadata addresses.
    #[arg(long, env = "VISIONFLEET_ALLOW_LINK_LOCAL_MODEL_URLS")]
    allow_link_local_model_urls: bool,

    /// Watch VisionModels in this namespace only; unset watches every namespace.
    #[arg(long, env = "VISIONFLEET_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,

    /// Skip leader election; only for a single replica.
    #[arg(long, env = "VISIONFLEET_NO_LEADER_ELECTION")]
    no_leader_election: bool,

    /// Namespace of the leader election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,

    /// Name of the leader election Lease.
    #[arg(long, default_value = "visionfleet-operator")]
    lease_name: String,

    /// This replica's identity in the Lease and in Events.
    #[arg(long, env = "POD_NAME", default_value = "visionfleet-operator")]
    identity: String,
}

/// Time the controller gets after SIGTERM or Ctrl-C to finish the reconciles
/// that are running. A reconcile can wait minutes on a slow model origin,
/// and Kubernetes kills the pod 30 s after SIGTERM by default anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();

    match cli.command {
        Command::Crd => {
            let yaml = crd::render()?;
            std::io::stdout().write_all(yaml.as_bytes())?;
            Ok(())
        }
        Command::Run(args) => run(*args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    tokio::spawn(exit_after_shutdown_grace());

    let settings = agent_settings(&args)?;
    let client = kube::Client::try_default()
        .await
        .context("failed to configure the Kubernetes client")?;
    let metrics = Arc::new(Metrics::new()?);
    let ready = Arc::new(AtomicBool::new(false));

    let health = Health {
        metrics: Arc::clone(&metrics),
        ready: Arc::clone(&ready),
    };
    let server = tokio::spawn(server::serve(args.metrics_addr, health));

    let leadership = if args.no_leader_election {
        None
    } else {
        Some(
            leader::acquire(client.clone(), lease_settings(&args))
                .await
                .context("leader election failed")?,
        )
    };

    let policy = FetchPolicy {
        block_link_local_and_metadata: !args.allow_link_local_model_urls,
        ..FetchPolicy::default()
    };
    let parts = ControllerParts {
        client,
        settings,
        verifier: Verifier::new(ModelStore::new(&args.model_cache_dir), policy),
        metrics,
        reporter: Reporter {
            controller: "visionfleet-operator".to_owned(),
            instance: Some(args.identity.clone()),
        },
        namespace: args.watch_namespace.clone(),
    };
    let on_ready = move || ready.store(true, Ordering::Relaxed);

    let lost_leadership = async move {
        match leadership {
            Some(leadership) => leadership.keep().await,
            None => std::future::pending().await,
        }
    };

    tokio::select! {
        result = controller::run(parts, on_ready) => result?,
        error = lost_leadership => anyhow::bail!("lost leadership, exiting so that a restart campaigns again: {error}"),
        result = server => anyhow::bail!("the metrics server stopped: {result:?}"),
    }
    Ok(())
}

/// Exits the process when reconciles still run `SHUTDOWN_GRACE` after the
/// shutdown signal; the controller's own graceful shutdown waits for them.
async fn exit_after_shutdown_grace() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "Failed to listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }

    tokio::time::sleep(SHUTDOWN_GRACE).await;
    tracing::warn!(
        grace_seconds = SHUTDOWN_GRACE.as_secs(),
        "Reconciles still running after the shutdown grace period, exiting"
    );
    std::process::exit(0);
}

fn agent_settings(args: &RunArgs) -> anyhow::Result<AgentSettings> {
    let accelerators = match &args.accelerator_mapping {
        Some(path) => AcceleratorMapping::from_file(path)?,
        None => AcceleratorMapping::default(),
    };

    Ok(AgentSettings {
        image: args.agent_image.clone(),
        image_pull_policy: args.agent_image_pull_policy.clone(),
        service_account: args.agent_service_account.clone(),
        node_cache_path: args.node_cache_path.clone(),
        camera_resource: args.camera_resource.clone(),
        accelerators,
        ..AgentSettings::default()
    })
}

fn lease_settings(args: &RunArgs) -> LeaseSettings {
    LeaseSettings {
        namespace: args.lease_namespace.clone(),
        name: args.lease_name.clone(),
        identity: args.identity.clone(),
        lease_duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);

    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
