//! The frame loop's view of a source: a [`LiveSource`] started from a
//! [`SourcePlan`], read with a bounded wait.
//!
//! The live source reconnects a camera or stream on its own and keeps only
//! the newest frame, so a slow model never builds up latency. A video file
//! plays at its own frame rate, like a camera, and ends; the frame loop
//! reports the end and opens it again.

use std::time::Duration;

use crate::metrics::Metrics;
use crate::source::{Frame, LiveSource, NextFrame, SourceError, SourceOptions, StreamState};

use super::config::SourcePlan;

/// Outcome of one read.
#[derive(Debug)]
pub enum Read {
    Frame(Frame),
    /// No frame within the wait; [`Input::state`] returns whether the
    /// source is connecting or reconnecting.
    Waiting,
    /// A file or image folder reached its end.
    Ended,
    /// The source failed for good, such as a file that does not decode;
    /// the text is redacted.
    Failed(String),
}

/// A started source.
#[derive(Debug)]
pub struct Input {
    source: LiveSource,
}

impl Input {
    /// Starts reading `plan`. A stream that delivers no frame for
    /// `stall_timeout` is reconnected. Fails only for a spec that can never
    /// play, such as a missing file.
    pub fn open(
        plan: &SourcePlan,
        stall_timeout: Duration,
        metrics: &Metrics,
    ) -> Result<Self, SourceError> {
        let options = SourceOptions {
            stall_timeout,
            credentials_dir: plan.credentials_dir.clone(),
            // The frame loop applies the rate cap, so a new cap needs no reopen.
            max_fps: None,
            ..SourceOptions::default()
        };
        Ok(Self {
            source: LiveSource::start(&plan.spec, options, Some(metrics))?,
        })
    }

    /// Waits up to `wait` for the newest frame not yet taken.
    pub fn read(&self, wait: Duration) -> Read {
        match self.source.next_frame(wait) {
            NextFrame::Frame(frame) => Read::Frame(frame),
            NextFrame::TimedOut => Read::Waiting,
            NextFrame::Ended => Read::Ended,
            NextFrame::Failed(error) => Read::Failed(error),
        }
    }

    pub fn state(&self) -> StreamState {
        self.source.state()
    }
}
