//! Live HTTP MJPEG sources against a small `multipart/x-mixed-replace`
//! server on 127.0.0.1, whose frames carry their sequence number as black
//! and white blocks, so a test can tell which frame it received.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use image::{GrayImage, Luma, RgbImage};
use visionfleet_agent::metrics::Metrics;
use visionfleet_agent::source::{
    Frame, LiveSource, NextFrame, ReconnectPolicy, SourceError, SourceOptions, StreamState,
};

const PATIENCE: Duration = Duration::from_secs(60);

/// Bits of the sequence number drawn into each frame.
const SEQUENCE_BITS: u32 = 10;
/// Width of one bit's block; 16 keeps blocks aligned to JPEG's 8 x 8 cells.
const BLOCK: u32 = 16;
const FRAME_WIDTH: u32 = BLOCK * SEQUENCE_BITS;
const FRAME_HEIGHT: u32 = 16;
const BOUNDARY: &str = "frame-boundary";

/// An MJPEG server sending 10 frames per second to every client.
struct MjpegServer {
    url: String,
    sent: Arc<AtomicU64>,
    paused: Arc<AtomicBool>,
}

impl MjpegServer {
    /// Starts the server; with `basic_auth`, requests without the matching
    /// `Authorization` header get 401 and a Basic challenge.
    fn start(basic_auth: Option<(&str, &str)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
        let url = format!(
            "http://{}/stream.mjpg",
            listener.local_addr().expect("a bound address")
        );
        let sent = Arc::new(AtomicU64::new(0));
        let paused = Arc::new(AtomicBool::new(false));
        let expected_auth = basic_auth
            .map(|(user, password)| format!("Basic {}", base64(&format!("{user}:{password}"))));

        let (server_sent, server_paused) = (sent.clone(), paused.clone());
        std::thread::spawn(move || {
            for connection in listener.incoming().flatten() {
                let (sent, paused, expected_auth) = (
                    server_sent.clone(),
                    server_paused.clone(),
                    expected_auth.clone(),
                );
                std::thread::spawn(move || {
                    serve_client(connection, &sent, &paused, expected_auth.as_deref())
                });
            }
        });
        Self { url, sent, paused }
    }

    /// Returns the sequence number of the last frame sent.
    fn last_sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst).saturating_sub(1)
    }

    /// Stops sending frames while keeping connections open.
    fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }
}

/// Serves one client until it disconnects. Errors end the connection.
fn serve_client(
    connection: TcpStream,
    sent: &AtomicU64,
    paused: &AtomicBool,
    expected_auth: Option<&str>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(connection.try_clone()?);
    let mut authorization = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }

    let mut connection = connection;
    if let Some(expected) = expected_auth
        && authorization.as_deref() != Some(expected)
    {
        connection.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"camera\"\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }

    connection.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n\
             Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )?;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if paused.load(Ordering::SeqCst) {
            continue;
        }
        let sequence = sent.fetch_add(1, Ordering::SeqCst);
        let jpeg = encode_sequence(sequence);
        connection.write_all(
            format!(
                "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                jpeg.len()
            )
            .as_bytes(),
        )?;
        connection.write_all(&jpeg)?;
        connection.write_all(b"\r\n")?;
    }
}

/// Encodes a JPEG whose blocks are white for the 1 bits of `sequence`,
/// lowest bit first.
fn encode_sequence(sequence: u64) -> Vec<u8> {
    let image = GrayImage::from_fn(FRAME_WIDTH, FRAME_HEIGHT, |x, _| {
        let bit = (sequence >> (x / BLOCK)) & 1;
        Luma([if bit == 1 { 255 } else { 0 }])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(&image)
        .expect("JPEG encoding");
    jpeg
}

/// Reads the sequence number back from the centre of each block.
fn decode_sequence(image: &RgbImage) -> u64 {
    (0..SEQUENCE_BITS)
        .map(|bit| {
            let pixel = image.get_pixel(bit * BLOCK + BLOCK / 2, FRAME_HEIGHT / 2);
            u64::from(pixel[0] > 127) << bit
        })
        .sum()
}

fn base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let value = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        for index in 0..4 {
            if index <= chunk.len() {
                encoded.push(char::from(
                    ALPHABET[((value >> (18 - 6 * index)) & 63) as usize],
                ));
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
}

fn options(name: &str) -> SourceOptions {
    SourceOptions {
        name: Some(name.to_owned()),
        open_timeout: Duration::from_secs(8),
        stall_timeout: Duration::from_secs(2),
        reconnect: ReconnectPolicy {
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
            healthy_after: Duration::from_secs(30),
        },
        ..SourceOptions::default()
    }
}

fn next(source: &LiveSource) -> Frame {
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(
            Instant::now() < deadline,
            "no frame; state {:?}",
            source.state()
        );
        match source.next_frame(Duration::from_secs(1)) {
            NextFrame::Frame(frame) => return frame,
            NextFrame::TimedOut => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn metric_value(metrics: &Metrics, series: &str) -> f64 {
    let text = metrics.render();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

#[test]
fn base64_matches_rfc_4648_examples() {
    assert_eq!(base64("f"), "Zg==");
    assert_eq!(base64("fo"), "Zm8=");
    assert_eq!(base64("foo"), "Zm9v");
    assert_eq!(base64("foobar"), "Zm9vYmFy");
}

#[test]
fn mjpeg_over_http_delivers_frames() {
    let server = MjpegServer::start(None);
    let source = LiveSource::start(&server.url, options("mjpeg"), None).unwrap();

    let frames: Vec<Frame> = (0..5).map(|_| next(&source)).collect();

    let sequences: Vec<u64> = frames
        .iter()
        .map(|frame| decode_sequence(&frame.image))
        .collect();
    for frame in &frames {
        assert_eq!(frame.image.dimensions(), (FRAME_WIDTH, FRAME_HEIGHT));
        assert!(frame.timestamp.is_some());
    }
    assert!(
        sequences.windows(2).all(|pair| pair[0] < pair[1]),
        "{sequences:?}"
    );
    assert_eq!(source.state(), StreamState::Streaming);
}

#[test]
fn http_credentials_from_folder() {
    let server = MjpegServer::start(Some(("viewer", "mjpeg-pass-5d1e")));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("username"), "viewer").unwrap();
    std::fs::write(dir.path().join("password"), "mjpeg-pass-5d1e").unwrap();
    let source = LiveSource::start(
        &server.url,
        SourceOptions {
            credentials_dir: Some(Path::new(dir.path()).to_path_buf()),
            ..options("mjpeg-auth")
        },
        None,
    )
    .unwrap();

    let frame = next(&source);

    assert_eq!(frame.image.dimensions(), (FRAME_WIDTH, FRAME_HEIGHT));
}

#[test]
fn slow_consumer_gets_newest_frame() {
    let server = MjpegServer::start(None);
    let metrics = Metrics::new().unwrap();
    let source = LiveSource::start(&server.url, options("mjpeg-slow"), Some(&metrics)).unwrap();
    let mut previous = decode_sequence(&next(&source).image);

    for _ in 0..4 {
        // A model that takes a second per frame.
        std::thread::sleep(Duration::from_secs(1));
        let frame = next(&source);
        let sequence = decode_sequence(&frame.image);
        let newest = server.last_sent();

        // A queue would return previous + 1; the mailbox skips to the newest.
        assert!(sequence > previous + 1, "{sequence} after {previous}");
        assert!(
            sequence + 10 >= newest,
            "got {sequence} while {newest} was sent"
        );
        previous = sequence;
    }

    let stale = source.stats().frames_dropped_stale;
    assert!(stale > 0);
    assert_eq!(
        metric_value(
            &metrics,
            "visionfleet_agent_frames_dropped_total{reason=\"stale\",source=\"mjpeg-slow\"}"
        ),
        stale as f64
    );
}

#[test]
fn rate_cap_drops_frames() {
    let server = MjpegServer::start(None);
    let metrics = Metrics::new().unwrap();
    let source = LiveSource::start(
        &server.url,
        SourceOptions {
            max_fps: Some(2.0),
            ..options("mjpeg-capped")
        },
        Some(&metrics),
    )
    .unwrap();

    let frames: Vec<Frame> = (0..4).map(|_| next(&source)).collect();

    let stats = source.stats();
    assert!(stats.frames_dropped_rate_cap > 0, "{stats:?}");
    assert!(stats.frames_read > frames.len() as u64, "{stats:?}");
    assert!(
        metric_value(
            &metrics,
            "visionfleet_agent_frames_dropped_total{reason=\"rate_cap\",source=\"mjpeg-capped\"}"
        ) > 0.0
    );
}

#[test]
fn paused_http_stream_reconnects() {
    let server = MjpegServer::start(None);
    let source = LiveSource::start(&server.url, options("mjpeg-pause"), None).unwrap();
    next(&source);

    server.pause();
    let deadline = Instant::now() + PATIENCE;
    let last_error = loop {
        if let StreamState::Reconnecting { last_error, .. } = source.state() {
            break last_error;
        }
        assert!(Instant::now() < deadline, "state {:?}", source.state());
        std::thread::sleep(Duration::from_millis(50));
    };
    server.resume();
    let frame = next(&source);

    let stalled = SourceError::Stalled {
        uri: server.url.clone(),
        timeout: Duration::from_secs(2),
    };
    assert_eq!(last_error, stalled.to_string());
    assert_eq!(frame.image.dimensions(), (FRAME_WIDTH, FRAME_HEIGHT));
    assert!(source.stats().reconnects >= 1);
}
