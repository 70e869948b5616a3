//! Prometheus metrics of the agent and the `/metrics` endpoint.
//!
//! Every label has a small, fixed set of values (device, provider, task,
//! layout, the one model digest the agent serves), so series never grow
//! with traffic.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;

/// Inference latency buckets in seconds. A compact Custom Vision model
/// (224 x 224 classifier, 320-416 pixel detector) takes an estimated 2-20 ms
/// on a desktop CPU, 10-100 ms on an Atom-class CPU or an Intel NCS2, and up
/// to about a second on a slow ARM board. Slower than 2.5 s means something
/// is wrong, and the `+Inf` bucket still counts it.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
];

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

        Ok(Self {
            registry,
            frames_inferred,
            frames_skipped,
            inference_duration,
            model_info,
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
}
