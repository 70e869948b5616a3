//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use visionfleet_api::Accelerator;

use crate::runtime::{ORT_DYLIB_PATH_ENV, ProviderPolicy};
use crate::source::{RtspTransport, SourceOptions};

/// VisionFleet edge agent: runs a Custom Vision or ONNX model on images or
/// video with ONNX Runtime and OpenVINO, one JSON line per frame on stdout.
#[derive(Debug, Parser)]
#[command(name = "visionfleet-agent", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a model on an image, an image folder or a video.
    Run(Box<RunArgs>),
    /// Print the OpenVINO version and devices found beside ONNX Runtime, as JSON.
    Devices(RuntimeArgs),
    /// Serve the model of an AgentConfig file on its source until stopped,
    /// applying config changes while frames flow.
    Serve(Box<crate::serve::ServeArgs>),
}

/// Location of ONNX Runtime.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// ONNX Runtime shared library, such as libonnxruntime.so.1.24.1 from the
    /// onnxruntime-openvino wheel; OpenVINO's libraries must sit beside it.
    #[arg(long, env = ORT_DYLIB_PATH_ENV, value_name = "FILE")]
    pub ort_dylib_path: Option<PathBuf>,
}

/// ONNX Runtime execution provider to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderArg {
    /// OpenVINO on the first available --accelerator device, then ONNX Runtime's CPU provider.
    Openvino,
    /// ONNX Runtime's own CPU provider only; --accelerator is ignored.
    Cpu,
}

impl From<ProviderArg> for ProviderPolicy {
    fn from(value: ProviderArg) -> Self {
        match value {
            ProviderArg::Openvino => Self::OpenVinoFirst,
            ProviderArg::Cpu => Self::CpuOnly,
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Model: an http, https or file URL, or a local path, of a Custom Vision
    /// ONNX export zip or a bare .onnx file.
    #[arg(long, value_name = "URL|PATH")]
    pub model: String,

    /// Expected sha256 of the model file, as 64 hex digits.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,

    /// Label file (one label per line, in output order) replacing the package's labels.txt.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,

    /// Model metadata property to set or override, such as
    /// Image.BitmapPixelFormat=Rgb8 or CustomVision.Preprocess.NormalizeMean=[0.485,0.456,0.406]. Repeatable.
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,

    /// Frames: an image file, a folder of images (read in name order), a video
    /// file, or a URI GStreamer can play (file, http, rtsp).
    #[arg(long, value_name = "IMAGE|FOLDER|VIDEO")]
    pub source: String,

    /// Devices in order of preference, comma-separated: MYRIAD, GPU, NPU, CPU.
    #[arg(long, value_delimiter = ',', value_parser = parse_accelerator, default_value = "CPU")]
    pub accelerator: Vec<Accelerator>,

    /// Fail instead of running on the CPU when no preferred device is usable.
    #[arg(long)]
    pub no_cpu_fallback: bool,

    /// Execution provider.
    #[arg(long, value_enum, default_value_t = ProviderArg::Openvino)]
    pub execution_provider: ProviderArg,

    /// Minimum prediction score to report, from 0 to 1.
    #[arg(long, default_value_t = 0.5, value_parser = parse_threshold)]
    pub threshold: f32,

    /// Labels to report, comma-separated; all labels when absent.
    #[arg(long, value_delimiter = ',')]
    pub objects_of_interest: Vec<String>,

    /// Maximum frames inferred per second of video time (still images: per
    /// second of wall-clock time). No cap when absent.
    #[arg(long, value_name = "FPS", value_parser = parse_positive)]
    pub max_fps: Option<f64>,

    /// Folder of the model cache. Default: $XDG_CACHE_HOME/visionfleet, else
    /// ~/.cache/visionfleet.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Folder where OpenVINO caches compiled models, so restarts skip
    /// compilation. Default: the openvino folder inside the model cache.
    #[arg(long, value_name = "DIR")]
    pub compile_cache_dir: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics, such as 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Threads per operator for ONNX Runtime and OpenVINO. Default: one per core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// Seconds a video that delivered frames may deliver none before the
    /// run fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_positive)]
    pub source_timeout: f64,

    /// Seconds a newly opened video, camera or stream may take to deliver
    /// its first frame.
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0, value_parser = parse_positive)]
    pub source_open_timeout: f64,

    /// Restart a video file at its end; the run then ends only on a stop signal.
    #[arg(long = "loop")]
    pub loop_video: bool,

    /// Transport of an rtsp:// or rtsps:// source.
    #[arg(long, value_enum, default_value_t = RtspTransport::Auto)]
    pub rtsp_transport: RtspTransport,

    /// Folder with `username` and `password` files for the stream, such as
    /// a mounted Secret. Default: the VISIONFLEET_SOURCE_USERNAME and
    /// VISIONFLEET_SOURCE_PASSWORD environment variables.
    #[arg(long, value_name = "DIR")]
    pub source_credentials_dir: Option<PathBuf>,

    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

impl RunArgs {
    pub fn source_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.source_timeout)
    }

    /// Returns the source settings of the run.
    pub fn source_options(&self) -> SourceOptions {
        SourceOptions {
            open_timeout: Duration::from_secs_f64(self.source_open_timeout),
            stall_timeout: self.source_timeout(),
            rtsp_transport: self.rtsp_transport,
            loop_video: self.loop_video,
            credentials_dir: self.source_credentials_dir.clone(),
            ..SourceOptions::default()
        }
    }

    /// Returns the model cache folder: `--cache-dir`, or the user's cache folder.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(dir) = &self.cache_dir {
            return dir.clone();
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("visionfleet")
    }

    /// Returns the OpenVINO compile cache folder: `--compile-cache-dir`, or
    /// `openvino` inside the model cache, next to the store's own folders.
    pub fn compile_cache_dir(&self) -> PathBuf {
        self.compile_cache_dir
            .clone()
            .unwrap_or_else(|| self.cache_dir().join("openvino"))
    }
}

fn parse_accelerator(value: &str) -> Result<Accelerator, String> {
    value
        .trim()
        .parse()
        .map_err(|error: visionfleet_api::accelerator::UnknownAccelerator| error.to_string())
}

fn parse_threshold(value: &str) -> Result<f32, String> {
    let threshold: f32 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    if (0.0..=1.0).contains(&threshold) {
        Ok(threshold)
    } else {
        Err(format!("{threshold} is outside 0 to 1"))
    }
}

fn parse_positive(value: &str) -> Result<f64, String> {
    let number: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    if number.is_finite() && number > 0.0 {
        Ok(number)
    } else {
        Err(format!("{number} must be greater than 0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(extra: &[&str]) -> RunArgs {
        let mut argv = vec![
            "visionfleet-agent",
            "run",
            "--model",
            "m.zip",
            "--source",
            "frames",
        ];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(args) => *args,
            Command::Devices(_) | Command::Serve(_) => panic!("expected run"),
        }
    }

    #[test]
    fn accelerator_list_parses_in_order() {
        let args = run_args(&["--accelerator", "MYRIAD,GPU, CPU"]);

        assert_eq!(
            args.accelerator,
            vec![Accelerator::Myriad, Accelerator::Gpu, Accelerator::Cpu]
        );
    }

    #[test]
    fn unknown_accelerator_rejected() {
        let error = Cli::try_parse_from([
            "visionfleet-agent",
            "run",
            "--model",
            "m",
            "--source",
            "s",
            "--accelerator",
            "TPU",
        ])
        .unwrap_err();

        assert!(
            error
                .to_string()
                .contains("expected one of MYRIAD, GPU, NPU, CPU"),
            "{error}"
        );
    }

    #[test]
    fn defaults_cpu_threshold_half() {
        let args = run_args(&[]);

        assert_eq!(args.accelerator, vec![Accelerator::Cpu]);
        assert!((args.threshold - 0.5).abs() < f32::EPSILON);
        assert!(!args.no_cpu_fallback);
        assert_eq!(args.execution_provider, ProviderArg::Openvino);
    }

    #[test]
    fn threshold_outside_unit_rejected() {
        assert!(
            Cli::try_parse_from([
                "visionfleet-agent",
                "run",
                "--model",
                "m",
                "--source",
                "s",
                "--threshold",
                "1.5"
            ])
            .is_err()
        );
    }

    #[test]
    fn compile_cache_inside_model_cache() {
        let args = run_args(&["--cache-dir", "/var/cache/visionfleet"]);

        assert_eq!(
            args.compile_cache_dir(),
            PathBuf::from("/var/cache/visionfleet/openvino")
        );
    }

    #[test]
    fn objects_of_interest_split() {
        let args = run_args(&["--objects-of-interest", "person,forklift"]);

        assert_eq!(args.objects_of_interest, vec!["person", "forklift"]);
    }
}
