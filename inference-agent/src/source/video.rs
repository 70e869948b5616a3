//! A GStreamer input read frame by frame by the `run` command: a video
//! file, a camera or a stream, opened once.
//!
//! A file keeps every frame, and the decoder waits while the appsink queue
//! is full. A live input keeps only the newest frame, so a slow model never
//! builds up latency. The first frame must arrive within
//! [`SourceOptions::open_timeout`], and later ones within
//! [`SourceOptions::stall_timeout`] of the request. A live input that fails
//! or stalls ends the read with a transient error. The end of a stream ends
//! the read as for a file, because an HTTP URL may name a finite video.
//! [`super::LiveSource`] reconnects instead.

use std::time::{Duration, Instant};

use super::launch::Delivery;
use super::session::{POLL_INTERVAL, Pulled, Session};
use super::spec::SourceSpec;
use super::{Frame, FrameSource, SourceError, SourceOptions};

/// A GStreamer pipeline that delivers RGB frames on request.
#[derive(Debug)]
pub struct VideoSource {
    spec: SourceSpec,
    session: Session,
    open_timeout: Duration,
    stall_timeout: Duration,
    next_index: u64,
    finished: bool,
}

impl VideoSource {
    /// Builds and starts the pipeline of `spec`, which must not be an image
    /// input.
    pub fn open(spec: &SourceSpec, options: &SourceOptions) -> Result<Self, SourceError> {
        let delivery = if spec.is_live() {
            Delivery::Newest
        } else {
            Delivery::Every
        };
        let session = Session::start(spec, options, delivery)?;
        Ok(Self {
            spec: spec.clone(),
            session,
            open_timeout: options.open_timeout,
            stall_timeout: options.stall_timeout,
            next_index: 0,
            finished: false,
        })
    }

    fn timeout_error(&self) -> SourceError {
        let uri = self.spec.display().to_owned();
        if self.next_index == 0 {
            SourceError::OpenTimedOut {
                uri,
                timeout: self.open_timeout,
            }
        } else {
            SourceError::Stalled {
                uri,
                timeout: self.stall_timeout,
            }
        }
    }
}

impl FrameSource for VideoSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.finished {
            return Ok(None);
        }

        let timeout = if self.next_index == 0 {
            self.open_timeout
        } else {
            self.stall_timeout
        };
        let started = Instant::now();
        loop {
            match self.session.pull(POLL_INTERVAL)? {
                Pulled::Sample(sample) => {
                    let frame =
                        self.session
                            .frame(&sample, self.next_index, self.spec.display())?;
                    self.next_index += 1;
                    return Ok(Some(frame));
                }
                Pulled::Ended => {
                    self.finished = true;
                    tracing::debug!(url = %self.spec.display(), frames = self.next_index, "Video ended");
                    return Ok(None);
                }
                Pulled::Idle if started.elapsed() >= timeout => return Err(self.timeout_error()),
                Pulled::Idle => {}
            }
        }
    }

    fn has_timeline(&self) -> bool {
        true
    }

    fn describe(&self) -> &str {
        self.spec.display()
    }
}
