//! Copying an RGB appsink sample into an [`RgbImage`].

use std::time::Duration;

use gstreamer as gst;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use image::RgbImage;

/// The picture and timing of one sample.
#[derive(Debug)]
pub(crate) struct DecodedSample {
    pub image: RgbImage,
    /// Presentation time on the pipeline's timeline.
    pub pts: Option<Duration>,
    pub duration: Option<Duration>,
}

/// Copies `sample`, whose caps must be `video/x-raw,format=RGB`. The error
/// describes what was wrong with the sample.
pub(crate) fn decode_sample(sample: &gst::Sample) -> Result<DecodedSample, String> {
    let buffer = sample
        .buffer()
        .ok_or_else(|| "a sample has no buffer".to_owned())?;
    let caps = sample
        .caps()
        .ok_or_else(|| "a sample has no caps".to_owned())?;
    let info = gst_video::VideoInfo::from_caps(caps)
        .map_err(|error| format!("invalid video caps {caps}: {error}"))?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|error| format!("failed to map a video frame: {error}"))?;

    let image =
        copy_rgb(&frame).ok_or_else(|| "a video frame is smaller than its caps say".to_owned())?;
    Ok(DecodedSample {
        image,
        pts: buffer.pts().map(|pts| Duration::from_nanos(pts.nseconds())),
        duration: buffer
            .duration()
            .map(|duration| Duration::from_nanos(duration.nseconds())),
    })
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
