//! The frame loop: one thread that reads frames, infers them with the
//! serving model and hands each result to the sinks.
//!
//! The controller changes the loop only through [`Command`]s, which the
//! loop applies between two frames: a new model swaps in without the source
//! being reopened, and new settings or sinks apply to the next frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use crate::metrics::Metrics;
use crate::output::{FrameResult, now_rfc3339};
use crate::pipeline::{Pipeline, RunSettings};
use crate::source::{Frame, FramePacer, SourceError, StreamState};

use super::config::SourcePlan;
use super::input::{Input, Read};
use super::loader::LoadedModel;
use super::redact::Redactor;
use super::sinks::Sinks;
use super::snapshot::Snapshot;
use super::state::{AgentError, AgentState, ErrorKind};

/// Maximum wait for a command while the loop has no model or source, so a
/// stop request is seen quickly.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// Maximum wait for a frame, so commands and a stop request are seen
/// between frames of a stalled stream.
const READ_WAIT: Duration = Duration::from_millis(200);

/// Delay before a file or image folder that ended is opened again, so
/// `serve` replays it without spinning on an empty one.
const ENDED_REOPEN_DELAY: Duration = Duration::from_secs(1);

/// First delay before a failed source is opened again; it doubles up to
/// [`REOPEN_MAX`] and resets when a frame arrives.
const REOPEN_INITIAL: Duration = Duration::from_secs(1);
const REOPEN_MAX: Duration = Duration::from_secs(30);

/// A change the controller requests from the frame loop.
#[derive(Debug)]
pub enum Command {
    /// Serve this model from the next frame on, unless a newer model
    /// request superseded `generation`.
    Model {
        generation: u64,
        model: Box<LoadedModel>,
    },
    /// Read from this source; the current one is closed.
    Source(SourcePlan),
    /// Apply this filter and rate cap from the next frame on.
    Settings(RunSettings),
    /// Hand results to these sinks; the current ones are closed.
    Sinks(Sinks),
}

/// Everything the loop shares with the rest of the agent.
#[derive(Debug, Clone)]
pub struct Shared {
    pub state: Arc<AgentState>,
    pub metrics: Metrics,
    pub redactor: Redactor,
    /// The newest model request; a loaded model of an older one is dropped.
    pub model_generation: Arc<AtomicU64>,
    pub stop: Arc<AtomicBool>,
}

/// The open source and where its frame indices start.
#[derive(Debug)]
struct OpenInput {
    input: Input,
    /// Added to the source's own frame index, so indices keep increasing
    /// across reopenings.
    index_offset: u64,
}

/// State of the frame loop thread.
#[derive(Debug)]
pub struct FrameLoop {
    commands: Receiver<Command>,
    shared: Shared,
    pipeline: Option<Pipeline>,
    settings: RunSettings,
    pacer: FramePacer,
    /// Start of the arrival-time timeline the rate cap runs on.
    epoch: Instant,
    sinks: Sinks,
    plan: Option<SourcePlan>,
    input: Option<OpenInput>,
    reopen_at: Instant,
    reopen_delay: Duration,
    next_index: u64,
    /// The last inference error logged, so a model failing on every frame
    /// logs once.
    logged_inference_error: Option<String>,
}

impl FrameLoop {
    pub fn new(commands: Receiver<Command>, shared: Shared) -> Self {
        let settings = RunSettings::default();
        Self {
            commands,
            shared,
            pipeline: None,
            pacer: FramePacer::new(settings.max_fps),
            epoch: Instant::now(),
            settings,
            sinks: Sinks::default(),
            plan: None,
            input: None,
            reopen_at: Instant::now(),
            reopen_delay: REOPEN_INITIAL,
            next_index: 0,
            logged_inference_error: None,
        }
    }

    /// Runs until the stop flag is set or the controller is gone.
    pub fn run(mut self) {
        tracing::info!("Frame loop started");

        while !self.shared.stop.load(Ordering::Relaxed) {
            self.shared.state.heartbeat();
            if !self.apply_pending_commands() {
                break;
            }

            if self.pipeline.is_none() || self.plan.is_none() {
                self.wait_for_command(IDLE_WAIT);
                continue;
            }
            if self.input.is_none() && !self.open_input() {
                let wait = self.reopen_at.saturating_duration_since(Instant::now());
                self.wait_for_command(wait.min(IDLE_WAIT));
                continue;
            }
            self.read_and_infer();
        }

        tracing::info!("Frame loop stopped");
    }

    /// Applies every queued command; false when the controller is gone.
    fn apply_pending_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.apply(command),
                Err(std::sync::mpsc::TryRecvError::Empty) => return true,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn wait_for_command(&mut self, timeout: Duration) {
        match self.commands.recv_timeout(timeout) {
            Ok(command) => self.apply(command),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => self.shared.stop.store(true, Ordering::Relaxed),
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Model { generation, model } => self.swap_model(generation, *model),
            Command::Source(plan) => self.replace_source(plan),
            Command::Settings(settings) => self.replace_settings(settings),
            Command::Sinks(sinks) => self.sinks = sinks,
        }
    }

    /// Puts a loaded model in service between two frames.
    fn swap_model(&mut self, generation: u64, model: LoadedModel) {
        let newest = self.shared.model_generation.load(Ordering::Acquire);
        if generation != newest {
            tracing::info!(
                digest = %model.served.digest,
                "Dropping a loaded model that a newer config replaced"
            );
            return;
        }

        let LoadedModel {
            mut pipeline,
            served,
            labels,
        } = model;
        pipeline.set_settings(self.settings.clone());
        pipeline.attach_metrics(self.shared.metrics.clone());
        self.shared.metrics.retain_detection_labels(&labels);

        match self.pipeline.replace(pipeline) {
            Some(previous) => {
                self.shared.metrics.observe_model_swap();
                tracing::info!(
                    from = %previous.model().package.digest,
                    to = %served.digest,
                    device = %served.device,
                    "Swapped the model between two frames"
                );
            }
            None => tracing::info!(
                digest = %served.digest,
                device = %served.device,
                "Model serving"
            ),
        }
        self.shared.state.set_model(served);
    }

    fn replace_source(&mut self, plan: SourcePlan) {
        if self.input.take().is_some() {
            self.shared.metrics.observe_source_reopen("config");
            let previous = self
                .plan
                .as_ref()
                .map_or("", |previous| previous.display.as_str());
            tracing::info!(from = %previous, to = %plan.display, "Source changed; reopening");
        }
        self.plan = Some(plan);
        self.reopen_at = Instant::now();
        self.reopen_delay = REOPEN_INITIAL;
    }

    fn replace_settings(&mut self, settings: RunSettings) {
        if settings.max_fps != self.settings.max_fps {
            self.pacer = FramePacer::new(settings.max_fps);
        }
        if let Some(pipeline) = &mut self.pipeline {
            pipeline.set_settings(settings.clone());
        }
        self.settings = settings;
    }

    /// Opens the planned source when its reopen time has come; true on success.
    fn open_input(&mut self) -> bool {
        let Some(plan) = &self.plan else {
            return false;
        };
        if Instant::now() < self.reopen_at {
            return false;
        }

        let stall_timeout = self.shared.state.stall_timeout();
        match Input::open(plan, stall_timeout, &self.shared.metrics) {
            Ok(input) => {
                self.input = Some(OpenInput {
                    input,
                    index_offset: self.next_index,
                });
                true
            }
            Err(error) => {
                let text = self.shared.redactor.redact(&error.to_string());
                self.source_failed(source_reason(&error), &text);
                false
            }
        }
    }

    fn read_and_infer(&mut self) {
        let Some(open) = &self.input else {
            return;
        };
        match open.input.read(READ_WAIT) {
            Read::Frame(frame) => {
                let index = open.index_offset + frame.index;
                self.next_index = index + 1;
                self.reopen_delay = REOPEN_INITIAL;
                self.shared.state.record_frame_received();
                self.infer_frame(index, frame);
            }
            Read::Waiting => {
                if let StreamState::Reconnecting { last_error, .. } = open.input.state() {
                    let text = self.shared.redactor.redact(&last_error);
                    self.shared.state.set_error(
                        ErrorKind::Source,
                        AgentError::new("StreamReconnecting", &text),
                    );
                }
            }
            Read::Ended => {
                tracing::info!(
                    frames = self.next_index,
                    reopen_in_s = ENDED_REOPEN_DELAY.as_secs_f64(),
                    "Source ended; opening it again"
                );
                self.shared.metrics.observe_source_reopen("ended");
                self.input = None;
                self.reopen_at = Instant::now() + ENDED_REOPEN_DELAY;
            }
            Read::Failed(error) => {
                let text = self.shared.redactor.redact(&error);
                self.source_failed("SourceFailed", &text);
                self.shared.metrics.observe_source_reopen("failed");
                self.input = None;
            }
        }
    }

    /// Records a source error and schedules the next attempt.
    fn source_failed(&mut self, reason: &'static str, text: &str) {
        let source_name = self.plan.as_ref().map_or("", |plan| plan.display.as_str());
        tracing::warn!(
            source = %source_name,
            reason,
            error = %text,
            retry_in_s = self.reopen_delay.as_secs_f64(),
            "Source unavailable; opening it again later"
        );
        self.shared
            .state
            .set_error(ErrorKind::Source, AgentError::new(reason, text));

        self.reopen_at = Instant::now() + self.reopen_delay;
        self.reopen_delay = (self.reopen_delay * 2).min(REOPEN_MAX);
    }

    fn infer_frame(&mut self, index: u64, frame: Frame) {
        let received = Instant::now();
        if !self.is_due() {
            return;
        }
        let Some(pipeline) = &mut self.pipeline else {
            return;
        };

        let predictions = match pipeline.infer(&frame.image) {
            Ok((predictions, _)) => {
                self.logged_inference_error = None;
                predictions
            }
            Err(error) => {
                let text = self.shared.redactor.redact(&error.to_string());
                if self.logged_inference_error.as_ref() != Some(&text) {
                    tracing::warn!(frame = index, error = %text, "Inference failed");
                }
                self.shared.state.set_error(
                    ErrorKind::Inference,
                    AgentError::new("InferenceFailed", &text),
                );
                self.logged_inference_error = Some(text);
                return;
            }
        };

        let source_name = self.plan.as_ref().map_or("", |plan| plan.display.as_str());
        let result = FrameResult {
            frame: index,
            timestamp: now_rfc3339(),
            source: source_name,
            model_digest: &pipeline.model().package.digest,
            device: pipeline.device().device.as_str(),
            task: pipeline.task(),
            predictions: &predictions,
        };
        let line = match serde_json::to_vec(&result) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(frame = index, %error, "Failed to serialise a result");
                return;
            }
        };

        self.sinks.publish(&line, !predictions.is_empty());
        self.shared.metrics.observe_end_to_end(received.elapsed());
        self.shared.metrics.set_last_frame_time(SystemTime::now());
        self.shared.state.record_result(
            Arc::from(line),
            Arc::new(Snapshot {
                image: frame.image,
                predictions,
            }),
        );
    }

    /// Applies the rate cap by arrival time, which keeps increasing across
    /// reconnects and replays, unlike a stream's own timestamps.
    fn is_due(&mut self) -> bool {
        let due = self.pacer.admit_timestamp(self.epoch.elapsed());
        if !due {
            self.shared.metrics.observe_rate_cap_skip();
        }
        due
    }
}

/// Returns a CamelCase reason for a source that cannot start.
fn source_reason(error: &SourceError) -> &'static str {
    match error {
        SourceError::NotFound(_) => "SourceNotFound",
        SourceError::Credentials { .. } => "SourceCredentialsUnreadable",
        SourceError::Pipeline { .. } => "SourceUnsupported",
        _ => "SourceInvalid",
    }
}
