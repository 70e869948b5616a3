//! Video decoded by GStreamer: `uridecodebin ! videoconvert ! appsink`
//! with RGB caps.
//!
//! The appsink queue is bounded. For a file, the decoder waits while the
//! queue is full, so every frame is kept. A live stream keeps only the
//! newest frame, so a slow model never builds up latency. Pulls use a short timeout and check
//! the bus in between, so an error, the end of the stream or a stall of
//! [`SourceOptions::stall_timeout`] ends the wait instead of hanging.

use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use image::RgbImage;

use super::{Frame, FrameSource, SourceError, SourceOptions};

/// Frames queued in the appsink for a file.
const FILE_QUEUE_FRAMES: u32 = 4;
/// Frames queued in the appsink for a live stream; older frames are dropped.
const LIVE_QUEUE_FRAMES: u32 = 1;
/// How long one pull waits before the bus is checked again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A GStreamer pipeline that delivers RGB frames.
#[derive(Debug)]
pub struct VideoSource {
    spec: String,
    uri: String,
    pipeline: gst::Pipeline,
    appsink: gst_app::AppSink,
    stall_timeout: Duration,
    next_index: u64,
    finished: bool,
}

impl VideoSource {
    /// Builds and starts the pipeline for `uri`. Only `file` URIs count as
    /// files; every other scheme is treated as a live stream.
    pub fn open(spec: &str, uri: &str, options: &SourceOptions) -> Result<Self, SourceError> {
        let pipeline_error = |message: String| SourceError::Pipeline {
            uri: uri.to_owned(),
            message,
        };
        gst::init().map_err(|error| pipeline_error(error.to_string()))?;

        let live = !uri.starts_with("file:");
        let (pipeline, appsink) = build_pipeline(uri, live).map_err(pipeline_error)?;

        pipeline
            .set_state(gst::State::Playing)
            .map_err(|error| pipeline_error(format!("failed to start playing: {error}")))?;

        tracing::debug!(uri, live, "Video pipeline started");
        Ok(Self {
            spec: spec.to_owned(),
            uri: uri.to_owned(),
            pipeline,
            appsink,
            stall_timeout: options.stall_timeout,
            next_index: 0,
            finished: false,
        })
    }

    fn stream_error(&self, message: String) -> SourceError {
        SourceError::Stream {
            uri: self.uri.clone(),
            message,
        }
    }

    /// Returns an error posted on the bus, if any.
    fn check_bus(&self) -> Result<(), SourceError> {
        let Some(bus) = self.pipeline.bus() else {
            return Ok(());
        };
        while let Some(message) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(error) = message.view() {
                let debug = error
                    .debug()
                    .map(|debug| format!(" ({debug})"))
                    .unwrap_or_default();
                return Err(self.stream_error(format!("{}{debug}", error.error())));
            }
        }
        Ok(())
    }

    fn frame_from_sample(&mut self, sample: &gst::Sample) -> Result<Frame, SourceError> {
        let buffer = sample
            .buffer()
            .ok_or_else(|| self.stream_error("a sample has no buffer".to_owned()))?;
        let caps = sample
            .caps()
            .ok_or_else(|| self.stream_error("a sample has no caps".to_owned()))?;
        let info = gst_video::VideoInfo::from_caps(caps)
            .map_err(|error| self.stream_error(format!("invalid video caps {caps}: {error}")))?;
        let video_frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|error| self.stream_error(format!("failed to map a video frame: {error}")))?;

        let image = copy_rgb(&video_frame).ok_or_else(|| {
            self.stream_error("a video frame is smaller than its caps say".to_owned())
        })?;
        let index = self.next_index;
        self.next_index += 1;

        Ok(Frame {
            index,
            image,
            origin: self.spec.clone(),
            timestamp: buffer.pts().map(|pts| Duration::from_nanos(pts.nseconds())),
        })
    }
}

impl FrameSource for VideoSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.finished {
            return Ok(None);
        }

        let started = Instant::now();
        loop {
            if let Some(sample) = self.appsink.try_pull_sample(gst::ClockTime::from_nseconds(
                POLL_INTERVAL.as_nanos() as u64,
            )) {
                return self.frame_from_sample(&sample).map(Some);
            }

            self.check_bus()?;
            if self.appsink.is_eos() {
                self.finished = true;
                tracing::debug!(uri = %self.uri, frames = self.next_index, "Video ended");
                return Ok(None);
            }
            if started.elapsed() >= self.stall_timeout {
                return Err(SourceError::Stalled {
                    uri: self.uri.clone(),
                    timeout: self.stall_timeout,
                });
            }
        }
    }

    fn has_timeline(&self) -> bool {
        true
    }

    fn describe(&self) -> &str {
        &self.spec
    }
}

impl Drop for VideoSource {
    fn drop(&mut self) {
        if let Err(error) = self.pipeline.set_state(gst::State::Null) {
            tracing::warn!(uri = %self.uri, %error, "Failed to stop the video pipeline");
        }
    }
}

fn build_pipeline(uri: &str, live: bool) -> Result<(gst::Pipeline, gst_app::AppSink), String> {
    let decode = gst::ElementFactory::make("uridecodebin")
        .property("uri", uri)
        .build()
        .map_err(|error| {
            format!("uridecodebin is not available ({error}); install gstreamer1.0-plugins-base")
        })?;
    let convert = gst::ElementFactory::make("videoconvert")
        .build()
        .map_err(|error| {
            format!("videoconvert is not available ({error}); install gstreamer1.0-plugins-base")
        })?;
    let queue_frames = if live {
        LIVE_QUEUE_FRAMES
    } else {
        FILE_QUEUE_FRAMES
    };
    let appsink = gst_app::AppSink::builder()
        .caps(
            &gst_video::VideoCapsBuilder::new()
                .format(gst_video::VideoFormat::Rgb)
                .build(),
        )
        .max_buffers(queue_frames)
        .drop(live)
        .sync(false)
        .build();

    let pipeline = gst::Pipeline::new();
    pipeline
        .add_many([&decode, &convert, appsink.upcast_ref()])
        .map_err(|error| error.to_string())?;
    convert.link(&appsink).map_err(|error| error.to_string())?;

    let convert_sink = convert
        .static_pad("sink")
        .ok_or_else(|| "videoconvert has no sink pad".to_owned())?;
    decode.connect_pad_added(move |_, pad| link_video_pad(pad, &convert_sink));

    Ok((pipeline, appsink))
}

/// Links the first decoded video stream to `videoconvert`; other streams,
/// such as audio, stay unlinked.
fn link_video_pad(pad: &gst::Pad, convert_sink: &gst::Pad) {
    if convert_sink.is_linked() {
        return;
    }
    let is_video = pad
        .current_caps()
        .and_then(|caps| {
            caps.structure(0)
                .map(|structure| structure.name().starts_with("video/"))
        })
        .unwrap_or(false);
    if !is_video {
        return;
    }
    if let Err(error) = pad.link(convert_sink) {
        tracing::error!(%error, "Failed to link the decoded video stream");
    }
}

/// Copies a mapped RGB frame into a tightly packed image; rows in
/// GStreamer buffers may be padded to a stride.
fn copy_rgb(frame: &gst_video::VideoFrameRef<&gst::BufferRef>) -> Option<RgbImage> {
    let width = frame.width();
    let height = frame.height();
    let stride = usize::try_from(*frame.plane_stride().first()?).ok()?;
    let data = frame.plane_data(0).ok()?;
    let row_bytes = width as usize * 3;

    let mut pixels = Vec::with_capacity(row_bytes * height as usize);
    for row in 0..height as usize {
        let start = row * stride;
        pixels.extend_from_slice(data.get(start..start + row_bytes)?);
    }
    RgbImage::from_raw(width, height, pixels)
}
