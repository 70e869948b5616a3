//! The agent's state as its endpoints and its pod report it: the served
//! model, the errors it currently has, when the last frame arrived, and the
//! latest result and frame.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::snapshot::Snapshot;

/// Maximum characters of an error message kept for `/readyz` and the pod.
/// Annotations and condition messages are for people, and a GStreamer
/// error with its debug text can run to several kilobytes.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 1024;

/// Minimum time without progress after which the frame loop counts as
/// wedged. One iteration blocks at most for one source read (the stall
/// timeout) or one inference, which takes seconds at worst.
pub const MIN_WEDGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The model the frame loop serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedModel {
    /// `sha256:<hex>` of the package.
    pub digest: String,
    /// The device that runs it: `CPU`, `GPU`, `NPU` or `MYRIAD`.
    pub device: String,
    pub provider: String,
    /// True when the device is not the first preference.
    pub fallback: bool,
}

/// Part of the agent an error concerns. The state keeps at most one error
/// per kind, replaced by the next and cleared when that part recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The config file is unreadable or invalid; the agent keeps the last good one.
    Config,
    /// The newest model failed to load; an older one may still serve.
    Model,
    /// The node's source override annotation cannot be read.
    NodeOverride,
    /// The source cannot be opened or failed.
    Source,
    /// The model failed on a frame.
    Inference,
}

/// An error with a CamelCase reason, as the pod's last error shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentError {
    pub reason: String,
    /// Redacted message, at most [`MAX_ERROR_MESSAGE_CHARS`] characters.
    pub message: String,
}

impl AgentError {
    pub fn new(reason: impl Into<String>, message: &str) -> Self {
        let message = if message.chars().count() > MAX_ERROR_MESSAGE_CHARS {
            let mut cut: String = message.chars().take(MAX_ERROR_MESSAGE_CHARS).collect();
            cut.push('…');
            cut
        } else {
            message.to_owned()
        };
        Self {
            reason: reason.into(),
            message,
        }
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// Whether the agent is ready, as `/readyz` and the pod condition report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// CamelCase reason, such as `Serving` or `FramesStalled`.
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug)]
struct Inner {
    model: Option<ServedModel>,
    errors: BTreeMap<ErrorKind, AgentError>,
    last_frame: Option<Instant>,
    heartbeat: Instant,
    latest_result: Option<Arc<[u8]>>,
    snapshot: Option<Arc<Snapshot>>,
}

/// State shared by the frame loop, the controller, the HTTP server and the
/// pod reporter.
#[derive(Debug)]
pub struct AgentState {
    inner: Mutex<Inner>,
    stall_timeout: Duration,
    wedge_timeout: Duration,
}

impl AgentState {
    /// Creates the state; frames older than `stall_timeout` no longer count
    /// as flowing.
    pub fn new(stall_timeout: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                model: None,
                errors: BTreeMap::new(),
                last_frame: None,
                heartbeat: Instant::now(),
                latest_result: None,
                snapshot: None,
            }),
            stall_timeout,
            wedge_timeout: MIN_WEDGE_TIMEOUT.max(stall_timeout * 3),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    /// Records the model that now serves; it clears the model error.
    pub fn set_model(&self, model: ServedModel) {
        let mut inner = self.lock();
        inner.model = Some(model);
        inner.errors.remove(&ErrorKind::Model);
    }

    pub fn model(&self) -> Option<ServedModel> {
        self.lock().model.clone()
    }

    pub fn set_error(&self, kind: ErrorKind, error: AgentError) {
        self.lock().errors.insert(kind, error);
    }

    pub fn clear_error(&self, kind: ErrorKind) {
        self.lock().errors.remove(&kind);
    }

    /// Returns the most important current error: config, then model, node
    /// override, source and inference.
    pub fn last_error(&self) -> Option<AgentError> {
        self.lock().errors.values().next().cloned()
    }

    /// Records that the frame loop made progress.
    pub fn heartbeat(&self) {
        self.lock().heartbeat = Instant::now();
    }

    /// Records a frame read from the source, inferred or skipped by the
    /// rate cap; it clears the source error.
    pub fn record_frame_received(&self) {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.last_frame = Some(now);
        inner.heartbeat = now;
        inner.errors.remove(&ErrorKind::Source);
    }

    /// Stores an inferred frame's result line and snapshot; it clears the
    /// inference error.
    pub fn record_result(&self, line: Arc<[u8]>, snapshot: Arc<Snapshot>) {
        let mut inner = self.lock();
        inner.latest_result = Some(line);
        inner.snapshot = Some(snapshot);
        inner.errors.remove(&ErrorKind::Inference);
    }

    /// Returns the latest result as one JSON object.
    pub fn latest_result(&self) -> Option<Arc<[u8]>> {
        self.lock().latest_result.clone()
    }

    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.lock().snapshot.clone()
    }

    /// Returns `Err` with a message when the frame loop made no progress for
    /// the wedge timeout: the larger of one minute and three stall timeouts.
    pub fn liveness(&self) -> Result<(), String> {
        let idle = self.lock().heartbeat.elapsed();
        if idle > self.wedge_timeout {
            return Err(format!(
                "the frame loop made no progress for {} s",
                idle.as_secs()
            ));
        }
        Ok(())
    }

    /// Returns whether a model is loaded and a frame arrived within the
    /// stall timeout, with the reason when not.
    pub fn readiness(&self) -> Readiness {
        let inner = self.lock();
        let error = |kind| inner.errors.get(&kind).map(ToString::to_string);
        let not_ready = |reason, message: String| Readiness {
            ready: false,
            reason,
            message,
        };

        let Some(model) = &inner.model else {
            if let Some(error) = error(ErrorKind::Config) {
                return not_ready("ConfigInvalid", error);
            }
            if let Some(error) = error(ErrorKind::Model) {
                return not_ready("ModelLoadFailed", error);
            }
            return not_ready(
                "ModelLoading",
                "The model is being fetched and compiled".to_owned(),
            );
        };

        let Some(last_frame) = inner.last_frame else {
            let message = error(ErrorKind::NodeOverride)
                .or_else(|| error(ErrorKind::Source))
                .unwrap_or_else(|| "No frame from the source yet".to_owned());
            return not_ready("WaitingForFrames", message);
        };
        if last_frame.elapsed() > self.stall_timeout {
            let stalled = format!(
                "No frame for more than {} s",
                self.stall_timeout.as_secs_f64()
            );
            let message = match error(ErrorKind::Source) {
                Some(error) => format!("{stalled}; {error}"),
                None => stalled,
            };
            return not_ready("FramesStalled", message);
        }
        if let Some(error) = error(ErrorKind::Inference) {
            return not_ready("InferenceFailed", error);
        }

        Readiness {
            ready: true,
            reason: "Serving",
            message: format!(
                "Model {} runs on {} and frames arrive",
                model.digest, model.device
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ServedModel {
        ServedModel {
            digest: "sha256:ab".to_owned(),
            device: "CPU".to_owned(),
            provider: "OpenVINOExecutionProvider".to_owned(),
            fallback: false,
        }
    }

    #[test]
    fn not_ready_before_model() {
        let state = AgentState::new(Duration::from_secs(10));

        let readiness = state.readiness();

        assert!(!readiness.ready);
        assert_eq!(readiness.reason, "ModelLoading");
    }

    #[test]
    fn ready_after_model_and_frame() {
        let state = AgentState::new(Duration::from_secs(10));
        state.set_model(model());
        assert_eq!(state.readiness().reason, "WaitingForFrames");

        state.record_frame_received();

        assert!(state.readiness().ready);
    }

    #[test]
    fn stalled_after_timeout() {
        let state = AgentState::new(Duration::from_millis(1));
        state.set_model(model());
        state.record_frame_received();
        std::thread::sleep(Duration::from_millis(5));

        assert_eq!(state.readiness().reason, "FramesStalled");
    }

    #[test]
    fn config_error_ranks_first() {
        let state = AgentState::new(Duration::from_secs(10));
        state.set_error(ErrorKind::Source, AgentError::new("StreamFailed", "gone"));
        state.set_error(ErrorKind::Config, AgentError::new("ConfigInvalid", "bad"));

        assert_eq!(
            state.last_error().map(|error| error.to_string()),
            Some("ConfigInvalid: bad".to_owned())
        );
    }

    #[test]
    fn long_message_cut() {
        let error = AgentError::new("X", &"a".repeat(MAX_ERROR_MESSAGE_CHARS + 10));

        assert_eq!(error.message.chars().count(), MAX_ERROR_MESSAGE_CHARS + 1);
        assert!(error.message.ends_with('…'));
    }
}
