//! Files and image folders as sources: looping the test video, replaying it
//! like a camera, and handing every image of a folder to a slow consumer.

mod common;

use std::time::{Duration, Instant};

use visionfleet_agent::source::{self, Frame, LiveSource, NextFrame, SourceOptions, StreamState};

/// Frames in `assets/video/photos-10fps.mp4`.
const VIDEO_FRAMES: u64 = 80;

const PATIENCE: Duration = Duration::from_secs(60);

fn next(source: &LiveSource) -> NextFrame {
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(
            Instant::now() < deadline,
            "nothing; state {:?}",
            source.state()
        );
        match source.next_frame(Duration::from_secs(1)) {
            NextFrame::TimedOut => {}
            other => return other,
        }
    }
}

fn expect_frame(source: &LiveSource) -> Frame {
    match next(source) {
        NextFrame::Frame(frame) => frame,
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[test]
fn looped_run_keeps_timestamps_increasing() {
    let video = require_asset!("video/photos-10fps.mp4");
    let options = SourceOptions {
        loop_video: true,
        ..SourceOptions::default()
    };
    let mut source = source::open(video.to_str().unwrap(), &options).unwrap();

    let frames: Vec<Frame> = (0..2 * VIDEO_FRAMES + 10)
        .map(|_| {
            source
                .next_frame()
                .unwrap()
                .expect("a looped video never ends")
        })
        .collect();

    for (position, frame) in frames.iter().enumerate() {
        assert_eq!(frame.index, position as u64);
    }
    let timestamps: Vec<Duration> = frames
        .iter()
        .map(|frame| frame.timestamp.expect("video frames have timestamps"))
        .collect();
    assert!(
        timestamps.windows(2).all(|pair| pair[0] < pair[1]),
        "{timestamps:?}"
    );
    // The second pass continues where the first ended, one frame (0.1 s) later.
    let step = timestamps[VIDEO_FRAMES as usize] - timestamps[VIDEO_FRAMES as usize - 1];
    assert_eq!(step, Duration::from_millis(100));
}

#[test]
fn looped_file_replays_forever() {
    let video = require_asset!("video/photos-10fps.mp4");
    let options = SourceOptions {
        name: Some("demo-file".to_owned()),
        loop_video: true,
        ..SourceOptions::default()
    };
    let source = LiveSource::start(video.to_str().unwrap(), options, None).unwrap();

    let frame = loop {
        let frame = expect_frame(&source);
        if frame.index > VIDEO_FRAMES + 5 {
            break frame;
        }
    };

    assert_eq!(frame.image.dimensions(), (640, 480));
    assert_eq!(source.state(), StreamState::Streaming);
    assert_eq!(source.stats().reconnects, 0);
}

#[test]
fn file_without_loop_ends() {
    let video = require_asset!("video/photos-10fps.mp4");
    let source =
        LiveSource::start(video.to_str().unwrap(), SourceOptions::default(), None).unwrap();

    let mut frames = 0;
    let end = loop {
        match next(&source) {
            NextFrame::Frame(_) => frames += 1,
            other => break other,
        }
    };

    assert!(matches!(end, NextFrame::Ended), "{end:?}");
    assert!(frames > 0);
    assert_eq!(source.state(), StreamState::Ended);
    assert_eq!(source.stats().frames_read, VIDEO_FRAMES);
}

#[test]
fn image_folder_hands_over_every_image() {
    let folder = require_asset!("frames");
    let expected = std::fs::read_dir(&folder).unwrap().count();
    let source =
        LiveSource::start(folder.to_str().unwrap(), SourceOptions::default(), None).unwrap();

    let mut origins = Vec::new();
    let end = loop {
        // A slow consumer still gets every image, in name order.
        std::thread::sleep(Duration::from_millis(100));
        match next(&source) {
            NextFrame::Frame(frame) => origins.push(frame.origin),
            other => break other,
        }
    };

    assert!(matches!(end, NextFrame::Ended), "{end:?}");
    assert_eq!(origins.len(), expected);
    let mut sorted = origins.clone();
    sorted.sort();
    assert_eq!(origins, sorted);
    assert_eq!(source.stats().frames_dropped_stale, 0);
}

#[test]
fn missing_file_rejected_at_start() {
    let error = LiveSource::start("/nonexistent/clip.mp4", SourceOptions::default(), None)
        .err()
        .unwrap();

    assert_eq!(
        error.to_string(),
        "source /nonexistent/clip.mp4 does not exist"
    );
}
