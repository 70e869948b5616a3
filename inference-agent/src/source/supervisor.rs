//! The thread behind a [`super::LiveSource`]: it runs one pipeline session
//! after another, applies the frame-rate cap, posts frames to the mailbox,
//! and reconnects a live input with backoff after it fails or stalls.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;

use crate::metrics::{FrameDropReason, SourceMetrics};

use super::backoff::Backoff;
use super::images::ImageFiles;
use super::launch::Delivery;
use super::live::{Shared, StreamState};
use super::session::{POLL_INTERVAL, Pulled, Session};
use super::spec::{Input, SourceSpec};
use super::{Frame, FramePacer, FrameSource, SourceError, SourceOptions};

/// How often the same reconnect error is logged at WARN; other attempts
/// with that error log at DEBUG.
const REPEAT_WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Outcome of one session.
#[derive(Debug)]
enum End {
    /// The handle was dropped.
    Stopped,
    /// A file or image folder without looping reached its end.
    Finished,
    Failed(SourceError),
}

/// A session's end and how long it delivered frames, which decides whether
/// the backoff starts over.
#[derive(Debug)]
struct Run {
    end: End,
    streamed_for: Duration,
}

impl Run {
    fn ended(end: End) -> Self {
        Self {
            end,
            streamed_for: Duration::ZERO,
        }
    }
}

pub(crate) struct Supervisor {
    spec: SourceSpec,
    options: SourceOptions,
    name: String,
    shared: Arc<Shared>,
    metrics: Option<SourceMetrics>,
    pacer: FramePacer,
    started: Instant,
    next_index: u64,
    reconnect_log: ReconnectLog,
}

impl Supervisor {
    pub(crate) fn new(
        spec: SourceSpec,
        options: SourceOptions,
        name: String,
        shared: Arc<Shared>,
        metrics: Option<SourceMetrics>,
    ) -> Self {
        Self {
            pacer: FramePacer::new(options.max_fps),
            spec,
            options,
            name,
            shared,
            metrics,
            started: Instant::now(),
            next_index: 0,
            reconnect_log: ReconnectLog::default(),
        }
    }

    /// Reads the source until it ends, fails permanently, or a stop is
    /// requested.
    pub(crate) fn run(mut self) {
        let _panic_guard = PanicGuard(self.shared.clone());
        let mut backoff = Backoff::new(self.options.reconnect.clone());
        let mut attempt = 0;

        loop {
            // The session is torn down only after the state shows the
            // failure, because teardown may take up to a few seconds.
            let (run, session) = match self.spec.input() {
                Input::Images { path } => {
                    let path = path.clone();
                    (self.read_images(&path), None)
                }
                _ => self.stream_once(attempt),
            };
            self.set_stream_up(false);

            let error = match run.end {
                End::Stopped => return,
                End::Finished => {
                    tracing::info!(source = %self.name, frames = self.next_index, "Source ended");
                    self.shared.set_state(StreamState::Ended);
                    return;
                }
                End::Failed(error) if !(self.spec.is_live() && error.is_transient()) => {
                    tracing::error!(source = %self.name, %error, "Source failed; not retrying");
                    self.shared.set_state(StreamState::Failed {
                        error: error.to_string(),
                    });
                    return;
                }
                End::Failed(error) => error,
            };

            let delay;
            (attempt, delay) = self.enter_reconnecting(&mut backoff, &error, run.streamed_for);
            drop(session);
            if !self.shared.sleep(delay) {
                return;
            }
            self.shared.observe_reconnect();
            if let Some(metrics) = &self.metrics {
                metrics.observe_reconnect();
            }
        }
    }

    /// Publishes the failure as the `Reconnecting` state, logs it, and
    /// returns the next attempt number and the delay before it.
    fn enter_reconnecting(
        &mut self,
        backoff: &mut Backoff,
        error: &SourceError,
        streamed_for: Duration,
    ) -> (u32, Duration) {
        // The last frame before a failure may be a stall timeout old.
        if self.shared.discard_frame() {
            self.observe_dropped(FrameDropReason::Stale);
        }

        let (attempt, delay) = backoff.record_failure(streamed_for);
        let last_error = error.to_string();
        self.reconnect_log
            .report(&self.name, attempt, delay, &last_error);
        self.shared.set_state(StreamState::Reconnecting {
            attempt,
            last_error,
        });
        (attempt, delay)
    }

    /// Runs one pipeline until it ends, fails, stalls or a stop is
    /// requested, and returns it still running so the caller decides when
    /// to tear it down. `attempt` is 0 for the first connection.
    fn stream_once(&mut self, attempt: u32) -> (Run, Option<Session>) {
        let delivery = if self.spec.is_live() {
            Delivery::Newest
        } else {
            Delivery::NewestRealtime
        };
        let mut session = match Session::start(&self.spec, &self.options, delivery) {
            Ok(session) => session,
            Err(error) => return (Run::ended(End::Failed(error)), None),
        };

        let opened = Instant::now();
        let mut first_frame_at = None;
        let mut last_frame_at = opened;
        let end = loop {
            if self.shared.stopping() {
                break End::Stopped;
            }
            match session.pull(POLL_INTERVAL) {
                Ok(Pulled::Sample(sample)) => {
                    last_frame_at = Instant::now();
                    if first_frame_at.is_none() {
                        first_frame_at = Some(last_frame_at);
                        self.report_connected(attempt);
                    }
                    if let Err(error) = self.deliver(&mut session, &sample, last_frame_at) {
                        break End::Failed(error);
                    }
                }
                Ok(Pulled::Idle) => {
                    if let Some(error) =
                        self.check_timeouts(first_frame_at.is_some(), last_frame_at)
                    {
                        break End::Failed(error);
                    }
                }
                Ok(Pulled::Ended) if self.spec.is_live() => {
                    break End::Failed(session.stream_error("the stream ended".to_owned()));
                }
                Ok(Pulled::Ended) => break End::Finished,
                Err(error) => break End::Failed(error),
            }
        };

        let run = Run {
            end,
            streamed_for: first_frame_at
                .map(|first| last_frame_at.duration_since(first))
                .unwrap_or_default(),
        };
        (run, Some(session))
    }

    /// Returns the timeout error when no frame came within the open timeout
    /// of starting, or within the stall timeout of the last frame.
    fn check_timeouts(&self, streaming: bool, last_frame_at: Instant) -> Option<SourceError> {
        let uri = self.spec.display().to_owned();
        let silent_for = last_frame_at.elapsed();
        if !streaming && silent_for >= self.options.open_timeout {
            return Some(SourceError::OpenTimedOut {
                uri,
                timeout: self.options.open_timeout,
            });
        }
        if streaming && silent_for >= self.options.stall_timeout {
            return Some(SourceError::Stalled {
                uri,
                timeout: self.options.stall_timeout,
            });
        }
        None
    }

    fn report_connected(&self, attempt: u32) {
        if attempt == 0 {
            tracing::info!(source = %self.name, url = %self.spec.display(), "Stream connected");
        } else {
            tracing::info!(source = %self.name, url = %self.spec.display(), attempt, "Stream reconnected");
        }
        self.shared.set_state(StreamState::Streaming);
        self.set_stream_up(true);
    }

    /// Counts the sample, applies the frame-rate cap by arrival time, and
    /// posts the frame, replacing one the consumer has not taken.
    fn deliver(
        &mut self,
        session: &mut Session,
        sample: &gst::Sample,
        arrived: Instant,
    ) -> Result<(), SourceError> {
        let index = self.next_index;
        self.next_index += 1;
        self.observe_read();

        if !self
            .pacer
            .admit_timestamp(arrived.duration_since(self.started))
        {
            self.observe_dropped(FrameDropReason::RateCap);
            return Ok(());
        }

        let frame = session.frame(sample, index, self.spec.display())?;
        if self.shared.post(frame) {
            self.observe_dropped(FrameDropReason::Stale);
        }
        Ok(())
    }

    /// Hands every image of `path` over in turn, waiting for the consumer to
    /// take each one and for the frame-rate cap; repeats when looping.
    fn read_images(&mut self, path: &Path) -> Run {
        let interval = self
            .options
            .max_fps
            .filter(|fps| fps.is_finite() && *fps > 0.0)
            .map(|fps| Duration::from_secs_f64(1.0 / fps));
        let mut next_due = Instant::now();

        loop {
            let mut images = match open_images(&self.spec, path) {
                Ok(images) => images,
                Err(error) => return Run::ended(End::Failed(error)),
            };
            while let Some(image) = images.next_frame().transpose() {
                let mut frame: Frame = match image {
                    Ok(frame) => frame,
                    Err(error) => return Run::ended(End::Failed(error)),
                };
                if let Some(interval) = interval {
                    let wait = next_due.saturating_duration_since(Instant::now());
                    if !self.shared.sleep(wait) {
                        return Run::ended(End::Stopped);
                    }
                    next_due = Instant::now().max(next_due) + interval;
                }

                frame.index = self.next_index;
                self.next_index += 1;
                self.observe_read();
                if self.next_index == 1 {
                    self.report_connected(0);
                }
                if !self.shared.post_when_empty(frame) {
                    return Run::ended(End::Stopped);
                }
            }
            if !self.options.loop_video {
                return Run::ended(End::Finished);
            }
        }
    }

    fn observe_read(&self) {
        self.shared.observe_read();
        if let Some(metrics) = &self.metrics {
            metrics.observe_frame_read();
        }
    }

    fn observe_dropped(&self, reason: FrameDropReason) {
        if reason == FrameDropReason::RateCap {
            self.shared.observe_rate_cap_drop();
        }
        if let Some(metrics) = &self.metrics {
            metrics.observe_frame_dropped(reason);
        }
    }

    fn set_stream_up(&self, up: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.set_stream_up(up);
        }
    }
}

fn open_images(spec: &SourceSpec, path: &Path) -> Result<ImageFiles, SourceError> {
    if path.is_dir() {
        ImageFiles::folder(spec.display(), path)
    } else {
        Ok(ImageFiles::single(spec.display(), path))
    }
}

/// Logs a reconnect at WARN when its error differs from the last one or
/// [`REPEAT_WARN_INTERVAL`] passed, else at DEBUG, so a camera that stays
/// down does not flood the log.
#[derive(Debug, Default)]
struct ReconnectLog {
    last_error: Option<String>,
    last_warned: Option<Instant>,
}

impl ReconnectLog {
    fn report(&mut self, source: &str, attempt: u32, delay: Duration, error: &str) {
        let repeated = self.last_error.as_deref() == Some(error)
            && self
                .last_warned
                .is_some_and(|at| at.elapsed() < REPEAT_WARN_INTERVAL);
        let retry_in_s = delay.as_secs_f64();

        if repeated {
            tracing::debug!(source = %source, attempt, retry_in_s, error = %error, "Stream failed again; reconnecting");
            return;
        }
        tracing::warn!(source = %source, attempt, retry_in_s, error = %error, "Stream failed; reconnecting");
        self.last_error = Some(error.to_owned());
        self.last_warned = Some(Instant::now());
    }
}

/// Marks the source failed when its thread panics, so a consumer waiting in
/// `next_frame` gets `NextFrame::Failed` instead of timing out forever.
struct PanicGuard(Arc<Shared>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.set_state(StreamState::Failed {
                error: "the source thread panicked".to_owned(),
            });
        }
    }
}
