//! [`LiveSource`]: a source read on its own thread into a one-frame mailbox,
//! reconnected forever when it is live, with its state readable at any time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

use super::launch;
use super::session::POLL_INTERVAL;
use super::spec::{SourceKind, SourceSpec};
use super::supervisor::Supervisor;
use super::{Frame, SourceError, SourceOptions};

/// How long dropping a [`LiveSource`] waits for its thread: one poll plus
/// the pipeline teardown limit, with a margin.
const STOP_TIMEOUT: Duration = Duration::from_secs(7);

/// Connection state of a source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StreamState {
    /// The first connection attempt; no frame yet.
    #[default]
    Connecting,
    /// Frames arrive.
    Streaming,
    /// The stream failed, stalled or ended, and the source waits for or
    /// makes reconnection attempt `attempt` (from 1, reset after a healthy
    /// period). `last_error` is redacted.
    Reconnecting { attempt: u32, last_error: String },
    /// A file or image folder without looping reached its end.
    Ended,
    /// A permanent error, such as a missing GStreamer plugin or a file that
    /// does not decode; the source does not retry. `error` is redacted.
    Failed { error: String },
}

impl StreamState {
    /// Short lower-case name, for status reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Streaming => "streaming",
            Self::Reconnecting { .. } => "reconnecting",
            Self::Ended => "ended",
            Self::Failed { .. } => "failed",
        }
    }

    /// Whether the source will deliver no more frames.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Ended | Self::Failed { .. })
    }
}

/// Counters of a source since it started, across reconnects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Frames decoded, including dropped ones.
    pub frames_read: u64,
    /// Frames a newer frame replaced before [`LiveSource::next_frame`] took them.
    pub frames_dropped_stale: u64,
    /// Frames skipped by the frame-rate cap.
    pub frames_dropped_rate_cap: u64,
    /// Reconnection attempts.
    pub reconnects: u64,
    /// Time since the last frame was read; `None` before the first.
    pub last_frame_age: Option<Duration>,
}

/// Result of [`LiveSource::next_frame`].
#[derive(Debug)]
pub enum NextFrame {
    /// The newest frame not yet taken.
    Frame(Frame),
    /// No new frame within the timeout; [`LiveSource::state`] returns the reason.
    TimedOut,
    /// A file or image folder without looping reached its end.
    Ended,
    /// The source failed permanently; the text is redacted.
    Failed(String),
}

/// A source read on its own thread. See the [module documentation of
/// `source`](super) for how to use it.
#[derive(Debug)]
pub struct LiveSource {
    shared: Arc<Shared>,
    name: String,
    display: String,
    worker: Option<Worker>,
}

#[derive(Debug)]
struct Worker {
    thread: JoinHandle<()>,
    /// Disconnects when the thread ends, normally or by a panic.
    exited: mpsc::Receiver<()>,
}

impl LiveSource {
    /// Parses `spec` (see [`SourceSpec::parse`]) and starts reading it on a
    /// thread named `source-<name>`. Returns an error only for a spec that
    /// can never play: invalid, missing, or contradicting `options`.
    /// Connection failures show in [`LiveSource::state`] instead.
    pub fn start(
        spec: &str,
        options: SourceOptions,
        metrics: Option<&Metrics>,
    ) -> Result<Self, SourceError> {
        let spec = SourceSpec::parse(spec)?;
        if spec.kind() != SourceKind::Images {
            launch::describe(&spec, &options, launch::Delivery::Newest)?;
        }

        let name = options
            .name
            .clone()
            .unwrap_or_else(|| spec.kind().name().to_owned());
        let redacted = spec.display().to_owned();
        let shared = Arc::new(Shared::default());
        let source_metrics = metrics.map(|metrics| metrics.source(&name));
        let supervisor =
            Supervisor::new(spec, options, name.clone(), shared.clone(), source_metrics);

        let (exit_sender, exited) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("source-{name}"))
            .spawn(move || {
                let _exit = exit_sender;
                supervisor.run();
            })
            .map_err(|error| SourceError::Pipeline {
                uri: redacted.clone(),
                message: format!("failed to start the source thread: {error}"),
            })?;

        tracing::info!(source = %name, url = %redacted, "Source started");
        Ok(Self {
            shared,
            name,
            display: redacted,
            worker: Some(Worker { thread, exited }),
        })
    }

    /// Waits up to `timeout` for a frame newer than the last one taken, and
    /// takes it. Never blocks longer than `timeout`, whatever the stream does.
    pub fn next_frame(&self, timeout: Duration) -> NextFrame {
        let deadline = Instant::now() + timeout;
        let mut mailbox = self.shared.lock();
        loop {
            if let Some(frame) = mailbox.frame.take() {
                // Wakes an image reader waiting for the slot to empty.
                self.shared.changed.notify_all();
                return NextFrame::Frame(frame);
            }
            match &mailbox.state {
                StreamState::Ended => return NextFrame::Ended,
                StreamState::Failed { error } => return NextFrame::Failed(error.clone()),
                _ => {}
            }

            let Some(remaining) = deadline.checked_duration_since(Instant::now()) else {
                return NextFrame::TimedOut;
            };
            mailbox = self
                .shared
                .changed
                .wait_timeout(mailbox, remaining)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    pub fn state(&self) -> StreamState {
        self.shared.lock().state.clone()
    }

    pub fn stats(&self) -> StreamStats {
        let mailbox = self.shared.lock();
        StreamStats {
            last_frame_age: mailbox.last_frame_at.map(|at| at.elapsed()),
            ..mailbox.stats.clone()
        }
    }

    /// Returns the `source` metric label, also the thread name suffix.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the spec with secrets redacted, for logs and status.
    pub fn display(&self) -> &str {
        &self.display
    }
}

impl Drop for LiveSource {
    /// Stops the thread and waits up to [`STOP_TIMEOUT`] for it to tear the
    /// pipeline down.
    fn drop(&mut self) {
        self.shared.request_stop();
        let Some(worker) = self.worker.take() else {
            return;
        };

        match worker.exited.recv_timeout(STOP_TIMEOUT) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    source = %self.name,
                    timeout_s = STOP_TIMEOUT.as_secs(),
                    "Source thread did not stop in time; leaving it to finish"
                );
            }
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                if worker.thread.join().is_err() {
                    tracing::error!(source = %self.name, "Source thread panicked");
                }
                tracing::info!(source = %self.name, "Source stopped");
            }
        }
    }
}

/// State shared by a [`LiveSource`] and its thread.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    mailbox: Mutex<Mailbox>,
    /// Signalled on a new frame, a taken frame, a state change and a stop.
    changed: Condvar,
    stop: AtomicBool,
}

#[derive(Debug, Default)]
struct Mailbox {
    frame: Option<Frame>,
    state: StreamState,
    stats: StreamStats,
    last_frame_at: Option<Instant>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Mailbox> {
        self.mailbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn request_stop(&self) {
        // Set under the lock, so a thread between its check and its wait
        // cannot miss the wake-up.
        let _mailbox = self.lock();
        self.stop.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub(crate) fn set_state(&self, state: StreamState) {
        let mut mailbox = self.lock();
        mailbox.state = state;
        self.changed.notify_all();
    }

    /// Counts a frame read from the input.
    pub(crate) fn observe_read(&self) {
        let mut mailbox = self.lock();
        mailbox.stats.frames_read += 1;
        mailbox.last_frame_at = Some(Instant::now());
    }

    pub(crate) fn observe_rate_cap_drop(&self) {
        self.lock().stats.frames_dropped_rate_cap += 1;
    }

    pub(crate) fn observe_reconnect(&self) {
        self.lock().stats.reconnects += 1;
    }

    /// Puts `frame` in the mailbox and returns whether it replaced a frame
    /// the consumer had not taken.
    pub(crate) fn post(&self, frame: Frame) -> bool {
        let mut mailbox = self.lock();
        let replaced = mailbox.frame.replace(frame).is_some();
        if replaced {
            mailbox.stats.frames_dropped_stale += 1;
        }
        self.changed.notify_all();
        replaced
    }

    /// Drops a frame the consumer has not taken, counted as stale, and
    /// returns whether there was one.
    pub(crate) fn discard_frame(&self) -> bool {
        let mut mailbox = self.lock();
        let discarded = mailbox.frame.take().is_some();
        if discarded {
            mailbox.stats.frames_dropped_stale += 1;
        }
        discarded
    }

    /// Puts `frame` in the mailbox once it is empty, so no frame is
    /// dropped. Returns `false` when a stop was requested first.
    pub(crate) fn post_when_empty(&self, frame: Frame) -> bool {
        let mut mailbox = self.lock();
        while mailbox.frame.is_some() {
            if self.stopping() {
                return false;
            }
            mailbox = self
                .changed
                .wait_timeout(mailbox, POLL_INTERVAL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        mailbox.frame = Some(frame);
        self.changed.notify_all();
        true
    }

    /// Sleeps for `duration` unless a stop is requested first; returns
    /// whether the full time passed.
    pub(crate) fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut mailbox = self.lock();
        loop {
            if self.stopping() {
                return false;
            }
            let Some(remaining) = deadline.checked_duration_since(Instant::now()) else {
                return true;
            };
            mailbox = self
                .changed
                .wait_timeout(mailbox, remaining)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}
