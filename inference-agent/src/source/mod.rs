//! Frame sources: an image file, a folder of images, or a video decoded by
//! GStreamer, plus the frame-rate cap applied to all of them.

pub mod images;
pub mod pace;
pub mod video;

use std::path::{Path, PathBuf};
use std::time::Duration;

use image::RgbImage;

pub use images::{ImageFiles, is_image_file};
pub use pace::FramePacer;
pub use video::VideoSource;

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The frame's position in the source, from 0, counting frames the
    /// frame-rate cap skipped.
    pub index: u64,
    pub image: RgbImage,
    /// Origin of the frame: the image file, or the video's URI.
    pub origin: String,
    /// Presentation time within a video; `None` for still images.
    pub timestamp: Option<Duration>,
}

/// Settings shared by all sources.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// How long a video may deliver no frame before the run fails. Default 10 s.
    pub stall_timeout: Duration,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            stall_timeout: Duration::from_secs(10),
        }
    }
}

/// Failure to open or read a source.
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

    #[error("GStreamer failed to set up the video pipeline for {uri}: {message}")]
    Pipeline { uri: String, message: String },

    #[error("GStreamer failed while decoding {uri}: {message}")]
    Stream { uri: String, message: String },

    #[error("no frame from {uri} for {} s; the stream stalled", timeout.as_secs_f64())]
    Stalled { uri: String, timeout: Duration },
}

impl SourceError {
    /// Whether reopening the source may help: a stalled or failed stream
    /// may recover, a missing file or an unsupported format will not.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Stream { .. } | Self::Stalled { .. })
    }
}

/// A sequence of frames. `Ok(None)` is the normal end (the last image, or
/// the end of the video).
pub trait FrameSource: Send {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;

    /// True when frames carry presentation timestamps, so the frame-rate
    /// cap selects frames by the video's timeline instead of waiting.
    fn has_timeline(&self) -> bool;

    /// Returns the source as given, for logs and the summary.
    fn describe(&self) -> &str;
}

/// Opens `spec`: an image file, a folder of images, a video file, or a
/// `file`, `http(s)` or `rtsp` URI that GStreamer's `uridecodebin` can play.
pub fn open(spec: &str, options: &SourceOptions) -> Result<Box<dyn FrameSource>, SourceError> {
    if spec.contains("://") {
        let uri = url::Url::parse(spec).map_err(|error| SourceError::InvalidSource {
            source_spec: spec.to_owned(),
            message: error.to_string(),
        })?;
        if uri.scheme() == "file"
            && let Ok(path) = uri.to_file_path()
        {
            return open_path(spec, &path, options);
        }
        return Ok(Box::new(VideoSource::open(spec, uri.as_str(), options)?));
    }
    open_path(spec, Path::new(spec), options)
}

fn open_path(
    spec: &str,
    path: &Path,
    options: &SourceOptions,
) -> Result<Box<dyn FrameSource>, SourceError> {
    if path.is_dir() {
        return Ok(Box::new(ImageFiles::folder(spec, path)?));
    }
    if !path.is_file() {
        return Err(SourceError::NotFound(path.to_path_buf()));
    }
    if is_image_file(path) {
        return Ok(Box::new(ImageFiles::single(spec, path)));
    }

    let absolute = std::path::absolute(path).map_err(|error| SourceError::InvalidSource {
        source_spec: spec.to_owned(),
        message: error.to_string(),
    })?;
    let uri = url::Url::from_file_path(&absolute).map_err(|()| SourceError::InvalidSource {
        source_spec: spec.to_owned(),
        message: "the path cannot be written as a file URI".to_owned(),
    })?;
    Ok(Box::new(VideoSource::open(spec, uri.as_str(), options)?))
}
