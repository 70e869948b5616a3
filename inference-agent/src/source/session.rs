//! One run of a GStreamer pipeline, from start to teardown: pulling samples
//! with a timeout, reading the bus, looping a file, and stopping on a helper
//! thread so an element that hangs in teardown cannot block the caller.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::convert::decode_sample;
use super::credentials::Credentials;
use super::launch::{self, Delivery};
use super::scrub::Scrubber;
use super::spec::SourceSpec;
use super::{Frame, SourceError, SourceOptions};

/// How long one pull waits before the bus and the timeouts are checked
/// again; also the longest delay before a stop request is seen.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long stopping a pipeline may take before it is left to finish on its
/// own thread. rtspsrc sends TEARDOWN to the server on stop and may wait
/// for a server that no longer responds.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Result of one pull.
#[derive(Debug)]
pub(crate) enum Pulled {
    Sample(gst::Sample),
    /// No sample within the wait; the pipeline is still running.
    Idle,
    /// The input reached its end and is not looped.
    Ended,
}

/// A running pipeline of one source.
#[derive(Debug)]
pub(crate) struct Session {
    pipeline: gst::Pipeline,
    appsink: gst_app::AppSink,
    bus: gst::Bus,
    display: String,
    scrubber: Scrubber,
    live: bool,
    looping: bool,
    timeline: LoopTimeline,
}

impl Session {
    /// Resolves the credentials, builds the pipeline of `spec` and sets it
    /// playing. Frames then arrive through [`Session::pull`].
    pub(crate) fn start(
        spec: &SourceSpec,
        options: &SourceOptions,
        delivery: Delivery,
    ) -> Result<Self, SourceError> {
        let display = spec.display().to_owned();
        gst::init().map_err(|error| SourceError::Pipeline {
            uri: display.clone(),
            message: error.to_string(),
        })?;

        let credentials =
            Credentials::resolve(spec.userinfo(), options.credentials_dir.as_deref())?;
        let scrubber = Scrubber::new(spec.location(), credentials.as_ref());
        let (pipeline, appsink) = launch::build(spec, options, delivery, credentials.as_ref())?;
        let bus = pipeline.bus().ok_or_else(|| SourceError::Pipeline {
            uri: display.clone(),
            message: "the pipeline has no bus".to_owned(),
        })?;

        let session = Self {
            pipeline,
            appsink,
            bus,
            display,
            scrubber,
            live: spec.is_live(),
            looping: options.loop_video && !spec.is_live(),
            timeline: LoopTimeline::default(),
        };
        if let Err(error) = session.pipeline.set_state(gst::State::Playing) {
            // The element that failed usually posted the reason on the bus.
            session.drain_bus()?;
            return Err(session.stream_error(format!("failed to start playing: {error}")));
        }

        tracing::debug!(url = %session.display, ?delivery, "Pipeline started");
        Ok(session)
    }

    /// Waits up to `wait` for the next sample. A file that reached its end
    /// restarts here when looped.
    pub(crate) fn pull(&mut self, wait: Duration) -> Result<Pulled, SourceError> {
        self.drain_bus()?;

        let started = Instant::now();
        if let Some(sample) = self.appsink.try_pull_sample(clock_time(wait)) {
            return Ok(Pulled::Sample(sample));
        }
        if !self.appsink.is_eos() {
            // A pipeline that is not running yet returns at once; waiting out
            // the interval keeps callers' loops from spinning.
            if let Some(rest) = wait.checked_sub(started.elapsed()) {
                std::thread::sleep(rest);
            }
            return Ok(Pulled::Idle);
        }
        if self.looping {
            self.restart()?;
            return Ok(Pulled::Idle);
        }
        Ok(Pulled::Ended)
    }

    /// Copies `sample` into a frame. Timestamps of a looped file keep
    /// increasing from pass to pass. A live frame without a timestamp, such
    /// as the second of two MJPEG parts read at once, is stamped with the
    /// pipeline's running time when it is pulled.
    pub(crate) fn frame(
        &mut self,
        sample: &gst::Sample,
        index: u64,
        origin: &str,
    ) -> Result<Frame, SourceError> {
        let decoded = decode_sample(sample).map_err(|message| self.stream_error(message))?;
        let pts = decoded.pts.or_else(|| {
            self.live
                .then(|| self.pipeline.current_running_time())
                .flatten()
                .map(|time| Duration::from_nanos(time.nseconds()))
        });
        let timestamp = pts.map(|pts| self.timeline.place(pts, decoded.duration));
        Ok(Frame {
            index,
            image: decoded.image,
            origin: origin.to_owned(),
            timestamp,
        })
    }

    pub(crate) fn stream_error(&self, message: String) -> SourceError {
        SourceError::Stream {
            uri: self.display.clone(),
            message: self.scrubber.scrub(&message),
        }
    }

    /// Handles every queued bus message, so none pile up in a long run, and
    /// returns the first error.
    fn drain_bus(&self) -> Result<(), SourceError> {
        while let Some(message) = self.bus.pop() {
            match message.view() {
                gst::MessageView::Error(error) => {
                    let detail = error
                        .debug()
                        .map(|debug| format!(" ({})", debug_detail(&debug)))
                        .unwrap_or_default();
                    return Err(self.stream_error(format!("{}{detail}", error.error())));
                }
                gst::MessageView::Warning(warning) => {
                    let text = self.scrubber.scrub(&warning.error().to_string());
                    tracing::debug!(url = %self.display, warning = %text, "GStreamer warning");
                }
                gst::MessageView::Latency(_) => {
                    if let Err(error) = self.pipeline.recalculate_latency() {
                        tracing::debug!(url = %self.display, %error, "Failed to recalculate latency");
                    }
                }
                gst::MessageView::ClockLost(_) => self.select_new_clock()?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Pauses and resumes, which makes the pipeline pick a new clock after
    /// the element providing it left.
    fn select_new_clock(&self) -> Result<(), SourceError> {
        self.pipeline
            .set_state(gst::State::Paused)
            .and_then(|_| self.pipeline.set_state(gst::State::Playing))
            .map(|_| ())
            .map_err(|error| self.stream_error(format!("failed to select a new clock: {error}")))
    }

    fn restart(&mut self) -> Result<(), SourceError> {
        self.timeline.start_next_pass();
        self.pipeline
            .seek_simple(
                gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
                gst::ClockTime::ZERO,
            )
            .map_err(|error| {
                self.stream_error(format!("failed to seek to the start to loop: {error}"))
            })?;
        tracing::debug!(url = %self.display, "Video restarted at its start");
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        stop_pipeline(&self.pipeline, &self.display);
    }
}

/// Sets `pipeline` to NULL on a helper thread and waits up to
/// [`TEARDOWN_TIMEOUT`] for it.
fn stop_pipeline(pipeline: &gst::Pipeline, url: &str) {
    let (done_sender, done) = mpsc::channel();
    let stopping = pipeline.clone();
    let spawned = std::thread::Builder::new()
        .name("source-teardown".to_owned())
        .spawn(move || {
            let result = stopping.set_state(gst::State::Null);
            // The receiver is gone when the wait timed out; nothing is lost.
            let _ = done_sender.send(result);
        });

    let result = match spawned {
        Ok(_) => done.recv_timeout(TEARDOWN_TIMEOUT),
        Err(error) => {
            tracing::warn!(url = %url, %error, "Failed to start the teardown thread; stopping inline");
            Ok(pipeline.set_state(gst::State::Null))
        }
    };
    match result {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::warn!(url = %url, %error, "Failed to stop the pipeline"),
        Err(_) => tracing::warn!(
            url = %url,
            timeout_s = TEARDOWN_TIMEOUT.as_secs(),
            "Pipeline did not stop in time; leaving it to stop in the background"
        ),
    }
}

/// Returns the text of a GStreamer debug string without its location
/// prefix (`file.c(123): function (): /GstPipeline:pipeline4/...:` and a
/// newline). The prefix names a different pipeline on every attempt, which
/// would defeat the deduplication of repeated reconnect errors.
fn debug_detail(debug: &str) -> &str {
    match debug.split_once(":\n") {
        Some((location, detail)) if location.contains("()") => detail,
        _ => debug,
    }
}

fn clock_time(duration: Duration) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX))
}

/// Offsets the timestamps of a looped video, so they keep increasing from
/// pass to pass and the frame-rate cap keeps admitting frames. The first
/// frame of a pass follows the last frame of the previous one by one frame
/// duration, even when the first timestamp is not 0 (H.264 reorder delay).
#[derive(Debug, Default)]
struct LoopTimeline {
    offset: Duration,
    pass_start: Option<Duration>,
    pass_end: Duration,
    last_pts: Option<Duration>,
    /// Spacing of the last two frames, used when a buffer has no duration.
    last_step: Duration,
}

impl LoopTimeline {
    fn place(&mut self, pts: Duration, duration: Option<Duration>) -> Duration {
        if let Some(last) = self.last_pts
            && pts > last
        {
            self.last_step = pts - last;
        }
        self.last_pts = Some(pts);
        let start = *self.pass_start.get_or_insert(pts);
        self.pass_start = Some(start.min(pts));
        self.pass_end = self.pass_end.max(pts + duration.unwrap_or(self.last_step));
        self.offset + pts
    }

    fn start_next_pass(&mut self) {
        let start = self.pass_start.take().unwrap_or_default();
        self.offset += self.pass_end.saturating_sub(start);
        self.pass_end = Duration::ZERO;
        self.last_pts = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn debug_location_prefix_removed() {
        let debug = "../gst/rtsp/gstrtspsrc.c(8336): gst_rtspsrc_retrieve_sdp (): \
                     /GstPipeline:pipeline4/GstRTSPSrc:source:\nFailed to connect. (Generic error)";

        assert_eq!(debug_detail(debug), "Failed to connect. (Generic error)");
        assert_eq!(
            debug_detail("plain text: no location"),
            "plain text: no location"
        );
    }

    #[test]
    fn loop_timestamps_keep_increasing() {
        let mut timeline = LoopTimeline::default();

        let first_pass: Vec<_> = [0, 100, 200]
            .into_iter()
            .map(|pts| timeline.place(ms(pts), Some(ms(100))))
            .collect();
        timeline.start_next_pass();
        let second_pass: Vec<_> = [0, 100]
            .into_iter()
            .map(|pts| timeline.place(ms(pts), Some(ms(100))))
            .collect();

        assert_eq!(first_pass, vec![ms(0), ms(100), ms(200)]);
        assert_eq!(second_pass, vec![ms(300), ms(400)]);
    }

    #[test]
    fn loop_with_late_first_frame_continues() {
        let mut timeline = LoopTimeline::default();

        timeline.place(ms(200), Some(ms(100)));
        timeline.place(ms(300), Some(ms(100)));
        timeline.start_next_pass();

        assert_eq!(timeline.place(ms(200), Some(ms(100))), ms(400));
    }

    #[test]
    fn loop_without_durations_uses_spacing() {
        let mut timeline = LoopTimeline::default();

        timeline.place(ms(40), None);
        timeline.place(ms(140), None);
        timeline.start_next_pass();

        assert_eq!(timeline.place(ms(40), None), ms(240));
    }
}
