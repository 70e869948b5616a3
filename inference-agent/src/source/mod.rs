//! Frame sources: V4L2 cameras, RTSP and HTTP MJPEG streams, video files
//! and image folders, plus the frame-rate cap.
//!
//! # Specs
//!
//! A source is named by one string, parsed by [`SourceSpec::parse`]:
//!
//! | Spec | Input |
//! |------|-------|
//! | `/dev/video0`, `v4l2:///dev/video0` | V4L2 camera, raw or MJPEG |
//! | `rtsp://`, `rtsps://` | RTSP; transport from [`SourceOptions::rtsp_transport`] |
//! | `rtspt://`, `rtspu://` | RTSP over TCP only, or UDP only |
//! | `http://`, `https://` | HTTP stream, usually MJPEG (`multipart/x-mixed-replace`) |
//! | other `scheme://` | whatever GStreamer's `uridecodebin` plays |
//! | a video file or `file://` URI | decoded once, or forever with [`SourceOptions::loop_video`] |
//! | an image file or folder | images in file-name order |
//!
//! Cameras and streams are *live*: they produce frames in real time and
//! may stall or drop. Files and images are not.
//!
//! # Credentials and redaction
//!
//! A stream's username and password come from, in order: the URL's
//! userinfo (`rtsp://user:pass@host/...`), the `username` and `password`
//! files of [`SourceOptions::credentials_dir`] (a mounted Secret, re-read
//! on every reconnect), or [`credentials::USERNAME_ENV`] and
//! [`credentials::PASSWORD_ENV`]. They are set as `user-id`/`user-pw` on
//! rtspsrc or souphttpsrc, never in a URL. Every URL in logs, errors,
//! frames and states is [`SourceSpec::display`]: password, query values
//! and fragment replaced by `REDACTED`. Metric labels use the source
//! name, never a URL.
//!
//! # Reading once: [`open`]
//!
//! The `run` command calls [`open`] and reads [`FrameSource::next_frame`]
//! until `Ok(None)`. A live input that fails or stalls ends the read with
//! an error for which [`SourceError::is_transient`] is true.
//!
//! # Reading a live source in a service: [`LiveSource`]
//!
//! [`LiveSource::start`] reads the source on its own thread, forever:
//!
//! - Only the newest frame is kept (a one-frame mailbox behind an appsink
//!   with `max-buffers=1 drop=true`). A frame the consumer did not take
//!   before a newer one arrived counts as dropped, reason `stale`. Image
//!   folders are the exception: every image is handed over.
//! - [`SourceOptions::max_fps`] drops frames by arrival time, reason
//!   `rate_cap`, before they are converted.
//! - The pipeline is torn down and reconnected when no first frame arrives
//!   within [`SourceOptions::open_timeout`], no frame for
//!   [`SourceOptions::stall_timeout`], on a GStreamer error, or at the end
//!   of a live stream. Reconnects use capped exponential backoff
//!   ([`ReconnectPolicy`]: 1 s doubling to 30 s, reset after 30 s of healthy
//!   streaming). Each reconnect is logged at WARN once per distinct error,
//!   and again at most once a minute.
//! - A video file replays at its own frame rate, like a camera, and
//!   restarts at its end with [`SourceOptions::loop_video`]; otherwise the
//!   source ends.
//! - Dropping the handle stops the thread; it waits at most about 7 s for
//!   the pipeline teardown.
//!
//! ```no_run
//! use std::time::Duration;
//! use visionfleet_agent::source::{LiveSource, NextFrame, SourceOptions, StreamState};
//!
//! let options = SourceOptions {
//!     name: Some("dock-door".to_owned()),
//!     max_fps: Some(5.0),
//!     ..SourceOptions::default()
//! };
//! let source = LiveSource::start("rtsp://10.0.0.7:554/stream1", options, None)?;
//! loop {
//!     match source.next_frame(Duration::from_secs(1)) {
//!         NextFrame::Frame(frame) => { /* infer frame.image */ }
//!         // Still connecting, reconnecting or stalled: report it and wait again.
//!         NextFrame::TimedOut => {
//!             if let StreamState::Reconnecting { attempt, last_error } = source.state() {
//!                 eprintln!("attempt {attempt}: {last_error}");
//!             }
//!         }
//!         NextFrame::Ended | NextFrame::Failed(_) => break,
//!     }
//! }
//! # Ok::<(), visionfleet_agent::source::SourceError>(())
//! ```
//!
//! For health reports, [`LiveSource::state`] returns a [`StreamState`]
//! (`Connecting`, `Streaming`, `Reconnecting { attempt, last_error }`,
//! `Ended`, `Failed { error }`), and [`LiveSource::stats`] the counters and
//! the age of the last frame read ("frames flow" when it is recent). With
//! [`crate::metrics::Metrics`] passed to `start`, the source also exports
//! `visionfleet_agent_frames_read_total`,
//! `visionfleet_agent_frames_dropped_total{reason}`,
//! `visionfleet_agent_stream_up` and
//! `visionfleet_agent_stream_reconnects_total`, labelled
//! `source=<SourceOptions::name>`.

pub mod backoff;
mod convert;
pub mod credentials;
pub mod images;
mod launch;
pub mod live;
pub mod pace;
mod scrub;
mod session;
pub mod spec;
mod supervisor;
pub mod video;

use std::path::PathBuf;
use std::time::Duration;

use image::RgbImage;

pub use backoff::ReconnectPolicy;
pub use credentials::Credentials;
pub use images::{ImageFiles, is_image_file};
pub use live::{LiveSource, NextFrame, StreamState, StreamStats};
pub use pace::FramePacer;
pub use spec::{RtspTransport, SourceKind, SourceSpec};
pub use video::VideoSource;

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The frame's position in the source, from 0, counting frames the
    /// frame-rate cap skipped.
    pub index: u64,
    pub image: RgbImage,
    /// Origin of the frame: the image file, or the redacted URI or path of
    /// the video.
    pub origin: String,
    /// Presentation time within a video, increasing across the passes of a
    /// looped file; `None` for still images. A live stream's timestamps
    /// start again after a reconnect.
    pub timestamp: Option<Duration>,
}

/// Settings shared by all sources.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Stable short name for the `source` metric label, logs and the thread
    /// name. Default: the kind, such as `rtsp` or `camera`.
    pub name: Option<String>,
    /// How long a newly opened input may take to deliver its first frame.
    /// Default 20 s, which covers rtspsrc's 5 s wait for UDP before it
    /// retries over TCP.
    pub open_timeout: Duration,
    /// How long an input that delivered frames may deliver none before it
    /// counts as stalled. Default 10 s.
    pub stall_timeout: Duration,
    /// Default [`RtspTransport::Auto`].
    pub rtsp_transport: RtspTransport,
    /// rtspsrc jitter buffer size; lower means fresher frames but more
    /// drops on a jittery network. Default 200 ms (rtspsrc's own: 2 s).
    pub rtsp_latency: Duration,
    /// Restart a video file or image folder at its end. Default false.
    pub loop_video: bool,
    /// Folder with `username` and `password` files, such as a mounted Secret.
    pub credentials_dir: Option<PathBuf>,
    /// Frame-rate cap applied by [`LiveSource`]; `None` keeps every frame.
    /// [`open`] ignores it, because the `run` pipeline applies its own.
    pub max_fps: Option<f64>,
    /// Delays between reconnection attempts of a [`LiveSource`].
    pub reconnect: ReconnectPolicy,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            name: None,
            open_timeout: Duration::from_secs(20),
            stall_timeout: Duration::from_secs(10),
            rtsp_transport: RtspTransport::Auto,
            rtsp_latency: Duration::from_millis(200),
            loop_video: false,
            credentials_dir: None,
            max_fps: None,
            reconnect: ReconnectPolicy::default(),
        }
    }
}

/// Failure to open or read a source. Every URI in it is redacted.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {0} does not exist")]
    NotFound(PathBuf),

    #[error("failed to read folder {}: {source}", path.display())]
    ReadFolder {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("folder {} has no image files (.png, .jpg, .jpeg, .bmp, .webp)", .0.display())]
    EmptyFolder(PathBuf),

    #[error("failed to decode image {}: {source}", path.display())]
    DecodeImage {
        path: PathBuf,
        source: image::ImageError,
    },

    #[error("invalid source {source_spec:?}: {message}")]
    InvalidSource {
        source_spec: String,
        message: String,
    },

    #[error("failed to read the source credentials file {}: {source}", path.display())]
    Credentials {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("GStreamer failed to set up the video pipeline for {uri}: {message}")]
    Pipeline { uri: String, message: String },

    #[error("GStreamer failed while reading {uri}: {message}")]
    Stream { uri: String, message: String },

    #[error(
        "no frame from {uri} within {} s of opening; check that the address is reachable and serves video",
        timeout.as_secs_f64()
    )]
    OpenTimedOut { uri: String, timeout: Duration },

    #[error("no frame from {uri} for {} s; the stream stalled", timeout.as_secs_f64())]
    Stalled { uri: String, timeout: Duration },
}

impl SourceError {
    /// Whether reopening the source may help: a failed, silent or stalled
    /// stream may recover, and a credentials file may appear when its
    /// Secret is mounted, but a missing plugin or a bad spec will not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Stream { .. }
                | Self::Stalled { .. }
                | Self::OpenTimedOut { .. }
                | Self::Credentials { .. }
        )
    }
}

/// A sequence of frames. `Ok(None)` is the normal end (the last image, or
/// the end of the video).
pub trait FrameSource: Send {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;

    /// True when frames carry presentation timestamps, so the frame-rate
    /// cap selects frames by the video's timeline instead of waiting.
    fn has_timeline(&self) -> bool;

    /// Returns the source as given, redacted, for logs and the summary.
    fn describe(&self) -> &str;
}

/// Opens `spec` (see [`SourceSpec::parse`]) to be read once, frame by
/// frame, on the caller's thread.
pub fn open(spec: &str, options: &SourceOptions) -> Result<Box<dyn FrameSource>, SourceError> {
    let spec = SourceSpec::parse(spec)?;
    match spec.input() {
        spec::Input::Images { path } if path.is_dir() => {
            Ok(Box::new(ImageFiles::folder(spec.display(), path)?))
        }
        spec::Input::Images { path } => Ok(Box::new(ImageFiles::single(spec.display(), path))),
        _ => Ok(Box::new(VideoSource::open(&spec, options)?)),
    }
}
