//! Prometheus metrics of the agent and the `/metrics` endpoint.
//!
//! Every label has a small, fixed set of values (device, provider, task,
//! layout, the one model digest the agent serves, reasons and phases named
//! in code, and the served model's class labels), so series never grow
//! with traffic.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;

use crate::decode::Prediction;

/// Inference latency buckets in seconds. A compact Custom Vision model
/// (224 x 224 classifier, 320-416 pixel detector) takes an estimated 2-20 ms
/// on a desktop CPU and 10-100 ms on an Atom-class CPU or an Intel NCS2. On
/// a slow ARM board it takes up to about a second. Slower than 2.5 s means
/// something is wrong, and the `+Inf` bucket still counts it.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// End-to-end latency buckets in seconds, from the moment the agent receives
/// a frame from the decoder to the moment every sink has its result. Beyond
/// the model run this adds pre-processing, decoding the outputs and writing
/// the result, so the smallest bucket is the fastest model run (about 5 ms).
/// Results older than 10 s are stale for live monitoring, and the `+Inf`
/// bucket still counts them.
pub const END_TO_END_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Model load buckets in seconds, per phase: a cached package loads in
/// milliseconds, compiling for a GPU or an NCS2 takes tens of seconds, and
/// downloading a model over a slow edge uplink can take minutes.
pub const MODEL_LOAD_BUCKETS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Maximum characters of a `label` value of the detections counter; longer
/// class names are cut, so one odd label file cannot bloat every scrape.
pub const MAX_LABEL_VALUE_CHARS: usize = 64;

/// Failure to start the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("failed to register metric: {0}")]
    Register(#[from] prometheus::Error),

    #[error("failed to listen for metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The agent's metrics, registered in their own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    frames_inferred: IntCounterVec,
    frames_skipped: IntCounterVec,
    inference_duration: HistogramVec,
    model_info: IntGaugeVec,
    serve: ServeMetrics,
    source: SourceFamilies,
}

/// Metrics of the long-running `serve` command. `run` registers them too,
/// so both commands expose one set of names.
#[derive(Debug, Clone)]
struct ServeMetrics {
    end_to_end_latency: Histogram,
    detections: IntCounterVec,
    /// `label` values of `detections` that have a series, so a model swap
    /// removes exactly the series that exist.
    detection_labels: Arc<Mutex<BTreeSet<String>>>,
    model_download_bytes: IntCounter,
    model_load_failures: IntCounterVec,
    model_load_duration: HistogramVec,
    model_swaps: IntCounter,
    mqtt_messages_sent: IntCounter,
    mqtt_messages_dropped: IntCounterVec,
    source_reopens: IntCounterVec,
    config_reloads: IntCounterVec,
    inference_ready: IntGauge,
    last_frame_timestamp: Gauge,
}

/// A phase of loading a model, for the load duration histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelLoadPhase {
    /// Downloading or copying, verifying and unpacking the package.
    Fetch,
    /// Creating the ONNX Runtime session, which compiles the model for the device.
    Compile,
    /// The first inference, which OpenVINO devices often run slower than later ones.
    WarmUp,
}

impl ModelLoadPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fetch => "fetch",
            Self::Compile => "compile",
            Self::WarmUp => "warm_up",
        }
    }
}

/// Labels of the model info gauge.
#[derive(Debug, Clone, Copy)]
pub struct ModelInfo<'a> {
    pub digest: &'a str,
    pub task: &'a str,
    /// `CustomVision` for a Custom Vision export, `ONNX` for a bare model.
    pub format: &'a str,
    /// The output layout, such as `CustomVisionDetectionS1`.
    pub layout: &'a str,
    pub device: &'a str,
    pub provider: &'a str,
}

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();

        let frames_inferred = IntCounterVec::new(
            Opts::new(
                "visionfleet_agent_frames_inferred_total",
                "Frames run through the model, whatever their predictions, by the device that ran them.",
            ),
            &["device"],
        )?;
        let frames_skipped = IntCounterVec::new(
            Opts::new(
                "visionfleet_agent_frames_skipped_total",
                "Frames read from the source but not inferred, by reason (max_fps: dropped by the frame-rate cap).",
            ),
            &["reason"],
        )?;
        let inference_duration = HistogramVec::new(
            HistogramOpts::new(
                "visionfleet_agent_inference_duration_seconds",
                "Time ONNX Runtime took to run the model on one frame, without decoding, pre- or post-processing.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["device"],
        )?;
        let model_info = IntGaugeVec::new(
            Opts::new(
                "visionfleet_agent_model_info",
                "Always 1: the model the agent serves and the device and execution provider running it.",
            ),
            &[
                "model_digest",
                "task",
                "format",
                "layout",
                "device",
                "provider",
            ],
        )?;

        registry.register(Box::new(frames_inferred.clone()))?;
        registry.register(Box::new(frames_skipped.clone()))?;
        registry.register(Box::new(inference_duration.clone()))?;
        registry.register(Box::new(model_info.clone()))?;
        let serve = ServeMetrics::register(&registry)?;
        let source = SourceFamilies::register(&registry)?;

        Ok(Self {
            registry,
            frames_inferred,
            frames_skipped,
            inference_duration,
            model_info,
            serve,
            source,
        })
    }

    /// Records the served model; the previous model's series are removed.
    pub fn set_model(&self, info: ModelInfo<'_>) {
        self.model_info.reset();
        self.model_info
            .with_label_values(&[
                info.digest,
                info.task,
                info.format,
                info.layout,
                info.device,
                info.provider,
            ])
            .set(1);
    }

    /// Counts one inferred frame and its model run time.
    pub fn observe_inference(&self, device: &str, duration: Duration) {
        self.frames_inferred.with_label_values(&[device]).inc();
        self.inference_duration
            .with_label_values(&[device])
            .observe(duration.as_secs_f64());
    }

    /// Counts one frame dropped by the frame-rate cap.
    pub fn observe_rate_cap_skip(&self) {
        self.frames_skipped.with_label_values(&["max_fps"]).inc();
    }

    /// Records the time from receiving a frame to publishing its result.
    pub fn observe_end_to_end(&self, latency: Duration) {
        self.serve.end_to_end_latency.observe(latency.as_secs_f64());
    }

    /// Counts each reported prediction by its label, sanitised with
    /// [`sanitize_label_value`].
    pub fn observe_detections(&self, predictions: &[Prediction]) {
        if predictions.is_empty() {
            return;
        }
        let mut known = self
            .serve
            .detection_labels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for prediction in predictions {
            let label = sanitize_label_value(&prediction.label);
            self.serve.detections.with_label_values(&[&label]).inc();
            known.insert(label);
        }
    }

    /// Removes the detection series whose label is not in `labels`, such as
    /// a previous model's classes after a swap. `labels` are sanitised here.
    pub fn retain_detection_labels(&self, labels: &BTreeSet<String>) {
        let keep: BTreeSet<String> = labels
            .iter()
            .map(|label| sanitize_label_value(label))
            .collect();
        let mut known = self
            .serve
            .detection_labels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        known.retain(|label| {
            if keep.contains(label) {
                return true;
            }
            // Every label in `known` has a series, so removal cannot fail.
            let _ = self.serve.detections.remove_label_values(&[label]);
            false
        });
    }

    /// Counts model bytes received over the network by a successful fetch.
    // NOTE: the model store reports bytes only for a fetch that succeeds, so
    // a download that fails or is cut off adds nothing here.
    pub fn add_model_download_bytes(&self, bytes: u64) {
        self.serve.model_download_bytes.inc_by(bytes);
    }

    /// Counts a model that failed to download, verify, load or warm up.
    /// `reason` is a CamelCase word from a fixed set, such as `DigestMismatch`.
    pub fn observe_model_load_failure(&self, reason: &str) {
        self.serve
            .model_load_failures
            .with_label_values(&[reason])
            .inc();
    }

    /// Records how long one phase of loading a model took.
    pub fn observe_model_load_phase(&self, phase: ModelLoadPhase, duration: Duration) {
        self.serve
            .model_load_duration
            .with_label_values(&[phase.as_str()])
            .observe(duration.as_secs_f64());
    }

    /// Counts a new model taking over from a serving one.
    pub fn observe_model_swap(&self) {
        self.serve.model_swaps.inc();
    }

    /// Counts an MQTT message the broker acknowledged.
    pub fn observe_mqtt_sent(&self) {
        self.serve.mqtt_messages_sent.inc();
    }

    /// Counts an MQTT message not sent. `reason` is `rate_cap` (over
    /// `messagesPerMinute`) or `queue_full` (the client's queue is full,
    /// typically because the broker is unreachable).
    pub fn observe_mqtt_dropped(&self, reason: &str) {
        self.serve
            .mqtt_messages_dropped
            .with_label_values(&[reason])
            .inc();
    }

    /// Counts a source opened again. `reason` is `ended` (a file finished),
    /// `failed` (an error or stall) or `config` (the source setting changed).
    pub fn observe_source_reopen(&self, reason: &str) {
        self.serve.source_reopens.with_label_values(&[reason]).inc();
    }

    /// Counts a changed config file: `result` is `applied` or `invalid`.
    pub fn observe_config_reload(&self, result: &str) {
        self.serve.config_reloads.with_label_values(&[result]).inc();
    }

    /// Mirrors `/readyz`: 1 while a model is loaded and frames flow.
    pub fn set_inference_ready(&self, ready: bool) {
        self.serve.inference_ready.set(i64::from(ready));
    }

    /// Records when the last frame was inferred.
    pub fn set_last_frame_time(&self, time: SystemTime) {
        self.serve.last_frame_timestamp.set(unix_seconds(time));
    }

    /// Renders every metric in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "Failed to encode metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }

    /// Binds `addr` and returns the bound address and the server task,
    /// which serves `GET /metrics` until dropped or aborted.
    pub async fn serve(
        &self,
        addr: SocketAddr,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| MetricsError::Bind { addr, source })?;

        let metrics = self.clone();
        let app = Router::new().route("/metrics", get(move || render_response(metrics.clone())));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "Metrics server stopped");
            }
        });

        tracing::info!(addr = %bound, "Serving metrics at /metrics");
        Ok((bound, server))
    }
}

impl ServeMetrics {
    fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let metrics = Self {
            end_to_end_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "visionfleet_agent_end_to_end_latency_seconds",
                    "Time from receiving a frame from the decoder to handing its result to every sink.",
                )
                .buckets(END_TO_END_BUCKETS.to_vec()),
            )?,
            detections: IntCounterVec::new(
                Opts::new(
                    "visionfleet_agent_detections_total",
                    "Reported predictions (above the threshold and of interest) by label; labels of a replaced model are removed.",
                ),
                &["label"],
            )?,
            detection_labels: Arc::new(Mutex::new(BTreeSet::new())),
            model_download_bytes: IntCounter::with_opts(Opts::new(
                "visionfleet_agent_model_download_bytes_total",
                "Model bytes received over the network by successful fetches, retries included; cache hits add nothing.",
            ))?,
            model_load_failures: IntCounterVec::new(
                Opts::new(
                    "visionfleet_agent_model_load_failures_total",
                    "Models that failed to download, verify, load or warm up, by reason such as DigestMismatch or HtmlPage.",
                ),
                &["reason"],
            )?,
            model_load_duration: HistogramVec::new(
                HistogramOpts::new(
                    "visionfleet_agent_model_load_duration_seconds",
                    "Time of each phase of loading a model: fetch, compile (session creation) and warm_up (first inference).",
                )
                .buckets(MODEL_LOAD_BUCKETS.to_vec()),
                &["phase"],
            )?,
            model_swaps: IntCounter::with_opts(Opts::new(
                "visionfleet_agent_model_swaps_total",
                "Times a new model took over from a serving one between two frames.",
            ))?,
            mqtt_messages_sent: IntCounter::with_opts(Opts::new(
                "visionfleet_agent_mqtt_messages_sent_total",
                "MQTT result messages the broker acknowledged (QoS 1).",
            ))?,
            mqtt_messages_dropped: IntCounterVec::new(
                Opts::new(
                    "visionfleet_agent_mqtt_messages_dropped_total",
                    "MQTT result messages not sent, by reason: rate_cap (over messagesPerMinute) or queue_full (broker unreachable).",
                ),
                &["reason"],
            )?,
            source_reopens: IntCounterVec::new(
                Opts::new(
                    "visionfleet_agent_source_reopens_total",
                    "Times the source was opened again, by reason: ended, failed or config.",
                ),
                &["reason"],
            )?,
            config_reloads: IntCounterVec::new(
                Opts::new(
                    "visionfleet_agent_config_reloads_total",
                    "Changes of the config file, by result: applied or invalid.",
                ),
                &["result"],
            )?,
            inference_ready: IntGauge::with_opts(Opts::new(
                "visionfleet_agent_inference_ready",
                "1 while a model is loaded and frames arrived within the stall timeout, as /readyz reports; else 0.",
            ))?,
            last_frame_timestamp: Gauge::with_opts(Opts::new(
                "visionfleet_agent_last_frame_timestamp_seconds",
                "Unix time of the last inferred frame, or of the agent's start before the first, so time() minus it is how long no frame was inferred.",
            ))?,
        };

        metrics
            .last_frame_timestamp
            .set(unix_seconds(SystemTime::now()));

        registry.register(Box::new(metrics.end_to_end_latency.clone()))?;
        registry.register(Box::new(metrics.detections.clone()))?;
        registry.register(Box::new(metrics.model_download_bytes.clone()))?;
        registry.register(Box::new(metrics.model_load_failures.clone()))?;
        registry.register(Box::new(metrics.model_load_duration.clone()))?;
        registry.register(Box::new(metrics.model_swaps.clone()))?;
        registry.register(Box::new(metrics.mqtt_messages_sent.clone()))?;
        registry.register(Box::new(metrics.mqtt_messages_dropped.clone()))?;
        registry.register(Box::new(metrics.source_reopens.clone()))?;
        registry.register(Box::new(metrics.config_reloads.clone()))?;
        registry.register(Box::new(metrics.inference_ready.clone()))?;
        registry.register(Box::new(metrics.last_frame_timestamp.clone()))?;
        Ok(metrics)
    }
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Makes a class label safe as a Prometheus label value: control
/// characters removed, at most [`MAX_LABEL_VALUE_CHARS`] characters, and
/// `unnamed` for a label left blank.
pub fn sanitize_label_value(label: &str) -> String {
    let cleaned: String = label
        .chars()
        .filter(|character| !character.is_control())
        .take(MAX_LABEL_VALUE_CHARS)
        .collect();
    if cleaned.trim().is_empty() {
        "unnamed".to_owned()
    } else {
        cleaned
    }
}

// ---------------------------------------------------------------------------
// Video source metrics
// ---------------------------------------------------------------------------

/// Metric families of the video sources. The `source` label is a short,
/// stable name (`camera`, `rtsp`, `http`, `file` or a configured name),
/// never a URL, so credentials never reach a label and series stay few.
#[derive(Debug, Clone)]
struct SourceFamilies {
    frames_read: IntCounterVec,
    frames_dropped: IntCounterVec,
    stream_up: IntGaugeVec,
    reconnects: IntCounterVec,
}

impl SourceFamilies {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let families = Self {
            frames_read: IntCounterVec::new(
                Opts::new(
                    "visionfleet_agent_frames_read_total",
                    "Frames decoded from the video source, before the frame-rate cap and before the model takes them.",
                ),
                &["source"],
            )?,
            frames_dropped: IntCounterVec::new(
                Opts::new(
                    "visionfleet_agent_frames_dropped_total",
                    "Frames read from the video source that never reached the model, by reason (stale: replaced by a newer frame before the model was free; rate_cap: over the frame-rate cap).",
                ),
                &["source", "reason"],
            )?,
            stream_up: IntGaugeVec::new(
                Opts::new(
                    "visionfleet_agent_stream_up",
                    "1 while the video source delivers frames, 0 while it connects, reconnects, has ended or failed.",
                ),
                &["source"],
            )?,
            reconnects: IntCounterVec::new(
                Opts::new(
                    "visionfleet_agent_stream_reconnects_total",
                    "Reconnection attempts of a live video source after it failed, stalled or ended.",
                ),
                &["source"],
            )?,
        };
        registry.register(Box::new(families.frames_read.clone()))?;
        registry.register(Box::new(families.frames_dropped.clone()))?;
        registry.register(Box::new(families.stream_up.clone()))?;
        registry.register(Box::new(families.reconnects.clone()))?;
        Ok(families)
    }
}

/// Reason a frame read from a source never reached the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameDropReason {
    /// A newer frame replaced it while the model was busy.
    Stale,
    /// It came sooner than the frame-rate cap allows.
    RateCap,
}

impl FrameDropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stale => "stale",
            Self::RateCap => "rate_cap",
        }
    }
}

/// The series of one video source, created with every label value so they
/// are exported as 0 before the first event.
#[derive(Debug, Clone)]
pub struct SourceMetrics {
    frames_read: IntCounter,
    dropped_stale: IntCounter,
    dropped_rate_cap: IntCounter,
    stream_up: IntGauge,
    reconnects: IntCounter,
}

impl SourceMetrics {
    pub fn observe_frame_read(&self) {
        self.frames_read.inc();
    }

    pub fn observe_frame_dropped(&self, reason: FrameDropReason) {
        match reason {
            FrameDropReason::Stale => self.dropped_stale.inc(),
            FrameDropReason::RateCap => self.dropped_rate_cap.inc(),
        }
    }

    pub fn set_stream_up(&self, up: bool) {
        self.stream_up.set(i64::from(up));
    }

    pub fn observe_reconnect(&self) {
        self.reconnects.inc();
    }
}

impl Metrics {
    /// Returns the series of the source named `name`, sanitised like a class
    /// label.
    pub fn source(&self, name: &str) -> SourceMetrics {
        let name = sanitize_label_value(name);
        let families = &self.source;
        SourceMetrics {
            frames_read: families.frames_read.with_label_values(&[name.as_str()]),
            dropped_stale: families
                .frames_dropped
                .with_label_values(&[name.as_str(), FrameDropReason::Stale.as_str()]),
            dropped_rate_cap: families
                .frames_dropped
                .with_label_values(&[name.as_str(), FrameDropReason::RateCap.as_str()]),
            stream_up: families.stream_up.with_label_values(&[name.as_str()]),
            reconnects: families.reconnects.with_label_values(&[name.as_str()]),
        }
    }
}

async fn render_response(metrics: Metrics) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_info() {
        let metrics = Metrics::new().unwrap();
        metrics.set_model(ModelInfo {
            digest: "sha256:ab",
            task: "Classification",
            format: "CustomVision",
            layout: "CustomVisionClassification",
            device: "CPU",
            provider: "OpenVINOExecutionProvider",
        });

        metrics.observe_inference("CPU", Duration::from_millis(12));
        metrics.observe_rate_cap_skip();

        let text = metrics.render();
        assert!(
            text.contains("visionfleet_agent_frames_inferred_total{device=\"CPU\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "visionfleet_agent_inference_duration_seconds_bucket{device=\"CPU\",le=\"0.02\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "visionfleet_agent_inference_duration_seconds_bucket{device=\"CPU\",le=\"0.01\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains("visionfleet_agent_frames_skipped_total{reason=\"max_fps\"} 1"),
            "{text}"
        );
        assert!(text.contains("visionfleet_agent_model_info{device=\"CPU\",format=\"CustomVision\",layout=\"CustomVisionClassification\",model_digest=\"sha256:ab\",provider=\"OpenVINOExecutionProvider\",task=\"Classification\"} 1"), "{text}");
    }

    #[test]
    fn new_model_replaces_info_series() {
        let metrics = Metrics::new().unwrap();
        let info = |digest| ModelInfo {
            digest,
            task: "Classification",
            format: "ONNX",
            layout: "PlainClassification",
            device: "CPU",
            provider: "CPUExecutionProvider",
        };

        metrics.set_model(info("sha256:old"));
        metrics.set_model(info("sha256:new"));

        let text = metrics.render();
        assert!(!text.contains("sha256:old"), "{text}");
        assert!(text.contains("sha256:new"), "{text}");
    }

    fn prediction(label: &str) -> Prediction {
        Prediction {
            label: label.to_owned(),
            score: 0.9,
            bbox: None,
        }
    }

    #[test]
    fn label_values_sanitised() {
        assert_eq!(sanitize_label_value("fork\nlift\u{7}"), "forklift");
        assert_eq!(sanitize_label_value(" \t"), "unnamed");
        assert_eq!(
            sanitize_label_value(&"x".repeat(100)).chars().count(),
            MAX_LABEL_VALUE_CHARS
        );
    }

    #[test]
    fn swap_removes_vanished_label_series() {
        let metrics = Metrics::new().unwrap();
        metrics.observe_detections(&[prediction("cat"), prediction("dog"), prediction("dog")]);

        metrics.retain_detection_labels(&BTreeSet::from(["dog".to_owned(), "bird".to_owned()]));
        metrics.retain_detection_labels(&BTreeSet::new());
        metrics.observe_detections(&[prediction("bird")]);

        let text = metrics.render();
        assert!(!text.contains("label=\"cat\""), "{text}");
        assert!(!text.contains("label=\"dog\""), "{text}");
        assert!(
            text.contains("visionfleet_agent_detections_total{label=\"bird\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn source_series_start_at_zero() {
        let metrics = Metrics::new().unwrap();

        let source = metrics.source("dock-door");
        source.observe_frame_dropped(FrameDropReason::RateCap);

        let text = metrics.render();
        for series in [
            "visionfleet_agent_frames_read_total{source=\"dock-door\"} 0",
            "visionfleet_agent_frames_dropped_total{reason=\"stale\",source=\"dock-door\"} 0",
            "visionfleet_agent_frames_dropped_total{reason=\"rate_cap\",source=\"dock-door\"} 1",
            "visionfleet_agent_stream_up{source=\"dock-door\"} 0",
            "visionfleet_agent_stream_reconnects_total{source=\"dock-door\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing in\n{text}");
        }
    }
}
