//! The inference loop: frames from a source through pre-processing, the
//! model and the decoder, to JSON lines and metrics.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::decode::{self, DecodeError, Prediction};
use crate::metrics::{Metrics, ModelInfo};
use crate::model::PreparedModel;
use crate::output::{FrameResult, JsonLines, now_rfc3339};
use crate::preprocess::{ImageInput, PreprocessError};
use crate::runtime::{DeviceReport, InferenceError, InferenceSession};
use crate::source::{FramePacer, FrameSource, SourceError};

/// Prediction filter and frame pacing of a run.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Minimum score, from 0 to 1, for a prediction to be reported.
    pub threshold: f32,
    /// Labels to report; empty reports every label.
    pub objects_of_interest: Vec<String>,
    /// Frame-rate cap; `None` infers every frame.
    pub max_fps: Option<f64>,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            objects_of_interest: Vec::new(),
            max_fps: None,
        }
    }
}

/// Error that stopped a run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the model input cannot be fed from frames: {0}")]
    Preprocess(#[from] PreprocessError),

    #[error(transparent)]
    Inference(#[from] InferenceError),

    #[error("failed to decode the model outputs: {0}")]
    Decode(#[from] DecodeError),

    #[error(transparent)]
    Source(#[from] SourceError),

    #[error("failed to write results: {0}")]
    Output(io::Error),
}

/// Counters of one run, for the closing summary line.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub frames_inferred: u64,
    pub frames_skipped: u64,
    /// Wall-clock time from the first read to the end, decoding included.
    pub elapsed: Duration,
    /// Time spent in ONNX Runtime only.
    pub inference_time: Duration,
    pub device: String,
    pub provider: String,
    /// How often each label was reported.
    pub label_counts: BTreeMap<String, u64>,
}

impl RunSummary {
    /// Inferred frames per second of wall-clock time.
    pub fn fps(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.frames_inferred as f64 / seconds
        } else {
            0.0
        }
    }

    /// Mean ONNX Runtime time per frame in milliseconds.
    pub fn mean_inference_ms(&self) -> f64 {
        if self.frames_inferred == 0 {
            return 0.0;
        }
        self.inference_time.as_secs_f64() * 1000.0 / self.frames_inferred as f64
    }

    /// Up to five labels, most frequent first.
    pub fn top_labels(&self) -> Vec<(&str, u64)> {
        let mut counts: Vec<(&str, u64)> = self
            .label_counts
            .iter()
            .map(|(label, count)| (label.as_str(), *count))
            .collect();
        counts.sort_by(|left, right| right.1.cmp(&left.1).then_with(|| left.0.cmp(right.0)));
        counts.truncate(5);
        counts
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let top: Vec<String> = self
            .top_labels()
            .iter()
            .map(|(label, count)| format!("{label}:{count}"))
            .collect();
        write!(
            f,
            "summary: frames={} skipped={} elapsed_s={:.2} fps={:.1} mean_inference_ms={:.2} device={} provider={} top_labels={}",
            self.frames_inferred,
            self.frames_skipped,
            self.elapsed.as_secs_f64(),
            self.fps(),
            self.mean_inference_ms(),
            self.device,
            self.provider,
            if top.is_empty() {
                "none".to_owned()
            } else {
                top.join(",")
            },
        )
    }
}

/// A model loaded on a device, ready to infer frames.
#[derive(Debug)]
pub struct Pipeline {
    session: InferenceSession,
    input: ImageInput,
    model: PreparedModel,
    task: String,
    settings: RunSettings,
    metrics: Option<Metrics>,
}

impl Pipeline {
    /// Derives the pre-processing from the session's input and the model's
    /// metadata, logs it once, and records the model in `metrics`.
    pub fn new(
        session: InferenceSession,
        model: PreparedModel,
        settings: RunSettings,
        metrics: Option<Metrics>,
    ) -> Result<Self, PipelineError> {
        let input = ImageInput::from_model(session.inputs(), &model.metadata)?;
        let task = model.layout.task().to_string();

        tracing::info!(
            digest = %model.package.digest,
            layout = %model.layout,
            labels = model.labels.len(),
            label_source = ?model.label_source,
            input = %input.name,
            size = %format!("{}x{}", input.width, input.height),
            tensor_layout = ?input.layout,
            pixel_format = ?input.format,
            pixel_range = ?input.range,
            defaults = ?input.defaults_used,
            "Model ready"
        );

        let pipeline = Self {
            session,
            input,
            model,
            task,
            settings,
            metrics,
        };
        pipeline.record_model_info();
        Ok(pipeline)
    }

    /// Starts counting inferences in `metrics` and records this model as the
    /// served one. `serve` builds a new model's pipeline without metrics
    /// beside the serving one, and calls this when the new one takes over.
    pub fn attach_metrics(&mut self, metrics: Metrics) {
        self.metrics = Some(metrics);
        self.record_model_info();
    }

    fn record_model_info(&self) {
        if let Some(metrics) = &self.metrics {
            let device = self.session.device();
            metrics.set_model(ModelInfo {
                digest: &self.model.package.digest,
                task: &self.task,
                format: self.model.format(),
                layout: self.model.layout.name(),
                device: device.device.as_str(),
                provider: device.provider.as_str(),
            });
        }
    }

    /// Replaces the threshold, objects of interest and frame-rate cap; the
    /// next inference uses them.
    pub fn set_settings(&mut self, settings: RunSettings) {
        self.settings = settings;
    }

    pub fn settings(&self) -> &RunSettings {
        &self.settings
    }

    pub fn model(&self) -> &PreparedModel {
        &self.model
    }

    /// `Classification` or `ObjectDetection`.
    pub fn task(&self) -> &str {
        &self.task
    }

    pub fn device(&self) -> &DeviceReport {
        self.session.device()
    }

    pub fn input(&self) -> &ImageInput {
        &self.input
    }

    /// Runs the model on one image and returns the predictions that pass
    /// the threshold and the objects-of-interest filter, with the time
    /// ONNX Runtime took.
    pub fn infer(
        &mut self,
        image: &RgbImage,
    ) -> Result<(Vec<Prediction>, Duration), PipelineError> {
        let tensor = self.input.prepare(image);

        let started = Instant::now();
        let outputs = self.session.run(tensor)?;
        let inference_time = started.elapsed();

        let device = self.session.device().device.as_str();
        if let Some(metrics) = &self.metrics {
            metrics.observe_inference(device, inference_time);
        }

        let predictions =
            self.model
                .decoder
                .decode(&outputs, &self.model.labels, self.settings.threshold)?;
        let reported = decode::filter(
            predictions,
            self.settings.threshold,
            &self.settings.objects_of_interest,
        );
        if let Some(metrics) = &self.metrics {
            metrics.observe_detections(&reported);
        }
        Ok((reported, inference_time))
    }

    /// Infers every due frame of `source` and writes one line per frame,
    /// until the source ends, `stop` is set, or the output is closed.
    pub fn run<W: Write>(
        &mut self,
        source: &mut dyn FrameSource,
        output: &mut JsonLines<W>,
        stop: &AtomicBool,
    ) -> Result<RunSummary, PipelineError> {
        let mut pacer = FramePacer::new(self.settings.max_fps);
        let device = self.session.device();
        let mut summary = RunSummary {
            frames_inferred: 0,
            frames_skipped: 0,
            elapsed: Duration::ZERO,
            inference_time: Duration::ZERO,
            device: device.device.to_string(),
            provider: device.provider.to_string(),
            label_counts: BTreeMap::new(),
        };
        let started = Instant::now();

        while !stop.load(Ordering::Relaxed) {
            let Some(frame) = source.next_frame()? else {
                break;
            };

            if !self.is_due(&mut pacer, frame.timestamp, source.has_timeline()) {
                summary.frames_skipped += 1;
                continue;
            }

            let (predictions, inference_time) = self.infer(&frame.image)?;
            summary.frames_inferred += 1;
            summary.inference_time += inference_time;
            for prediction in &predictions {
                *summary
                    .label_counts
                    .entry(prediction.label.clone())
                    .or_default() += 1;
            }

            let result = FrameResult {
                frame: frame.index,
                timestamp: now_rfc3339(),
                source: &frame.origin,
                model_digest: &self.model.package.digest,
                device: self.session.device().device.as_str(),
                task: &self.task,
                predictions: &predictions,
            };
            match output.write(&result) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                    tracing::info!("Output closed, stopping");
                    break;
                }
                Err(error) => return Err(PipelineError::Output(error)),
            }
        }

        summary.elapsed = started.elapsed();
        Ok(summary)
    }

    fn is_due(
        &self,
        pacer: &mut FramePacer,
        timestamp: Option<Duration>,
        has_timeline: bool,
    ) -> bool {
        match timestamp {
            Some(timestamp) if has_timeline => {
                let due = pacer.admit_timestamp(timestamp);
                if !due && let Some(metrics) = &self.metrics {
                    metrics.observe_rate_cap_skip();
                }
                due
            }
            _ => {
                pacer.wait_for_slot();
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_lists_top_labels() {
        let summary = RunSummary {
            frames_inferred: 8,
            frames_skipped: 2,
            elapsed: Duration::from_secs(2),
            inference_time: Duration::from_millis(40),
            device: "CPU".to_owned(),
            provider: "OpenVINOExecutionProvider".to_owned(),
            label_counts: BTreeMap::from([("0".to_owned(), 3), ("90".to_owned(), 5)]),
        };

        assert_eq!(
            summary.to_string(),
            "summary: frames=8 skipped=2 elapsed_s=2.00 fps=4.0 mean_inference_ms=5.00 device=CPU \
             provider=OpenVINOExecutionProvider top_labels=90:5,0:3"
        );
    }
}
