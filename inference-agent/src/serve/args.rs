//! Command-line arguments of `serve`. The DaemonSet passes only `--config`;
//! the other flags and the environment serve local runs and tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::cli::{ProviderArg, RuntimeArgs};

use super::snapshot::DEFAULT_FONT_PATH;

/// Arguments of `visionfleet-agent serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// AgentConfig JSON file, as the operator mounts it from a ConfigMap.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,

    /// Address of the HTTP server with /results/latest, /snapshot.jpg,
    /// /metrics, /healthz and /readyz. Port 0 picks a free port, which the
    /// log names.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9464")]
    pub http_addr: SocketAddr,

    /// Folder of the model cache.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/visionfleet/models"
    )]
    pub cache_dir: PathBuf,

    /// Folder where OpenVINO caches compiled models, so restarts skip compilation.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/visionfleet/openvino"
    )]
    pub compile_cache_dir: PathBuf,

    /// Seconds between two reads of the config file and the Secret files it
    /// names, to find changes.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, value_parser = parse_seconds)]
    pub config_poll_interval: f64,

    /// Seconds without a frame after which the agent reports not ready and
    /// a stream counts as stalled.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_seconds)]
    pub stall_timeout: f64,

    /// TrueType font for the labels of /snapshot.jpg; without it, snapshots
    /// show boxes only.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_FONT_PATH)]
    pub font: PathBuf,

    /// Execution provider.
    #[arg(long, value_enum, default_value_t = ProviderArg::Openvino)]
    pub execution_provider: ProviderArg,

    /// Threads per operator for ONNX Runtime and OpenVINO. Default: one per core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// Name of the node: the source override annotation is read from it, and
    /// it ends the default MQTT topic.
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// Name of the agent's own pod, on which it publishes its state.
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub pod_name: Option<String>,

    /// Namespace of the agent's own pod.
    #[arg(long, env = "POD_NAMESPACE", value_name = "NAMESPACE")]
    pub pod_namespace: Option<String>,

    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

impl ServeArgs {
    pub fn config_poll_interval(&self) -> Duration {
        Duration::from_secs_f64(self.config_poll_interval)
    }

    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.stall_timeout)
    }
}

fn parse_seconds(value: &str) -> Result<f64, String> {
    let seconds: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number of seconds"))?;
    if seconds.is_finite() && seconds > 0.0 {
        Ok(seconds)
    } else {
        Err(format!("{seconds} must be greater than 0"))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn serve_args(argv: &[&str]) -> ServeArgs {
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => *args,
            _ => panic!("expected serve"),
        }
    }

    #[test]
    fn daemonset_args_take_defaults() {
        let args = serve_args(&[
            "visionfleet-agent",
            "serve",
            "--config",
            "/etc/visionfleet/agent-config.json",
        ]);

        assert_eq!(args.http_addr, "0.0.0.0:9464".parse().unwrap());
        assert_eq!(args.cache_dir, PathBuf::from("/var/lib/visionfleet/models"));
        assert_eq!(
            args.compile_cache_dir,
            PathBuf::from("/var/lib/visionfleet/openvino")
        );
        assert_eq!(args.config_poll_interval(), Duration::from_secs(5));
        assert_eq!(args.stall_timeout(), Duration::from_secs(10));
    }

    #[test]
    fn zero_stall_timeout_rejected() {
        let parsed = Cli::try_parse_from([
            "visionfleet-agent",
            "serve",
            "--config",
            "c.json",
            "--stall-timeout",
            "0",
        ]);

        assert!(parsed.is_err());
    }
}
