//! The GStreamer video source on the real test video, a file that is not a
//! video, and an HTTP stream on 127.0.0.1 that never sends a byte.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use visionfleet_agent::source::{self, SourceError, SourceOptions};

#[test]
fn video_decodes_every_frame_then_ends() {
    let video = require_asset!("video/photos-10fps.mp4");
    let mut source = source::open(video.to_str().unwrap(), &SourceOptions::default()).unwrap();

    let mut timestamps = Vec::new();
    while let Some(frame) = source.next_frame().unwrap() {
        assert_eq!(frame.image.dimensions(), (640, 480));
        assert_eq!(frame.index, timestamps.len() as u64);
        timestamps.push(frame.timestamp.expect("video frames have timestamps"));
    }

    assert_eq!(timestamps.len(), 80);
    // 10 frames per second; the first timestamp need not be 0 (H.264 reorder delay).
    assert_eq!(timestamps[10] - timestamps[0], Duration::from_secs(1));
    assert!(source.has_timeline());
    assert!(
        source.next_frame().unwrap().is_none(),
        "the source stays ended"
    );
}

#[test]
fn video_frame_shows_photo_colours() {
    let video = require_asset!("video/photos-10fps.mp4");
    let photo = image::open(require_asset!("frames/frame-00-page-0.png"))
        .unwrap()
        .to_rgb8();
    let mut source = source::open(video.to_str().unwrap(), &SourceOptions::default()).unwrap();

    let frame = source.next_frame().unwrap().unwrap();

    // H.264 is lossy, so compare the mean absolute difference, not pixels.
    let total: u64 = frame
        .image
        .as_raw()
        .iter()
        .zip(photo.as_raw())
        .map(|(decoded, original)| u64::from(decoded.abs_diff(*original)))
        .sum();
    let mean = total as f64 / photo.as_raw().len() as f64;
    assert!(
        mean < 8.0,
        "mean difference {mean} per channel: RGB order or stride is wrong"
    );
}

#[test]
fn file_that_is_not_video_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, b"this is not a video").unwrap();
    let mut source = source::open(path.to_str().unwrap(), &SourceOptions::default()).unwrap();

    let error = source.next_frame().unwrap_err();

    assert!(matches!(error, SourceError::Stream { .. }), "{error}");
}

#[test]
fn silent_stream_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept connections and keep them open without sending a response.
    std::thread::spawn(move || {
        let mut open_connections = Vec::new();
        for stream in listener.incoming().take(4).flatten() {
            open_connections.push(stream);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let options = SourceOptions {
        open_timeout: Duration::from_secs(1),
        ..SourceOptions::default()
    };
    let uri = format!("http://{addr}/camera.mp4");
    let mut source = source::open(&uri, &options).unwrap();

    let error = source.next_frame().unwrap_err();

    assert!(matches!(error, SourceError::OpenTimedOut { .. }), "{error}");
    assert!(error.is_transient());
    assert_eq!(
        error.to_string(),
        format!(
            "no frame from {uri} within 1 s of opening; check that the address is reachable and serves video"
        )
    );
}

#[test]
fn missing_source_reported() {
    let error = source::open("/nonexistent/frames", &SourceOptions::default())
        .err()
        .unwrap();

    assert_eq!(
        error.to_string(),
        "source /nonexistent/frames does not exist"
    );
}
