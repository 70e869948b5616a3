//! Stream credentials against an RTSP server that requires basic
//! authentication: read from a credentials folder or the URL, and never
//! printed. Every log line of this test binary is captured, so the planted
//! passwords can be searched for in logs, states, errors and metrics.

#[path = "common/rtsp.rs"]
mod rtsp;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rtsp::{RtspServer, ServerConfig};
use visionfleet_agent::metrics::Metrics;
use visionfleet_agent::source::{
    LiveSource, NextFrame, ReconnectPolicy, RtspTransport, SourceOptions, StreamState,
};

const USERNAME: &str = "viewer";
const PASSWORD: &str = "planted-Secret-7f3a";
const WRONG_PASSWORD: &str = "planted-Wrong-91c2";

const PATIENCE: Duration = Duration::from_secs(60);

/// Log output of the whole test binary.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer_logs = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer_logs.clone()))
            .init();
        logs
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("log buffer lock")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&captured_logs().lock().expect("log buffer lock")).into_owned()
}

fn secure_server() -> RtspServer {
    RtspServer::start(ServerConfig {
        credentials: Some((USERNAME.to_owned(), PASSWORD.to_owned())),
        ..ServerConfig::default()
    })
}

fn credentials_dir(password: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::write(dir.path().join("username"), format!("{USERNAME}\n")).expect("username file");
    std::fs::write(dir.path().join("password"), format!("{password}\n")).expect("password file");
    dir
}

fn options(name: &str, credentials_dir: Option<&Path>) -> SourceOptions {
    SourceOptions {
        name: Some(name.to_owned()),
        rtsp_transport: RtspTransport::Tcp,
        open_timeout: Duration::from_secs(8),
        stall_timeout: Duration::from_secs(2),
        credentials_dir: credentials_dir.map(Path::to_path_buf),
        reconnect: ReconnectPolicy {
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
            healthy_after: Duration::from_secs(30),
        },
        ..SourceOptions::default()
    }
}

fn first_frame(source: &LiveSource) -> visionfleet_agent::source::Frame {
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

fn assert_no_password(text: &str, context: &str) {
    for password in [PASSWORD, WRONG_PASSWORD] {
        assert!(
            !text.contains(password),
            "{context} contains a password:\n{text}"
        );
    }
}

#[test]
fn credentials_folder_unlocks_stream() {
    captured_logs();
    let server = secure_server();
    let dir = credentials_dir(PASSWORD);
    let metrics = Metrics::new().unwrap();
    let source = LiveSource::start(
        &server.url(),
        options("secure-folder", Some(dir.path())),
        Some(&metrics),
    )
    .unwrap();

    let frame = first_frame(&source);

    assert_eq!(frame.image.dimensions(), (rtsp::WIDTH, rtsp::HEIGHT));
    assert_eq!(source.state(), StreamState::Streaming);
    assert_no_password(&metrics.render(), "metrics");
    drop(source);
    assert_no_password(&log_text(), "the log");
}

#[test]
fn wrong_password_keeps_reconnecting() {
    captured_logs();
    let server = secure_server();
    let dir = credentials_dir(WRONG_PASSWORD);
    let metrics = Metrics::new().unwrap();
    let source = LiveSource::start(
        &server.url(),
        options("secure-wrong", Some(dir.path())),
        Some(&metrics),
    )
    .unwrap();

    let deadline = Instant::now() + PATIENCE;
    let state = loop {
        let state = source.state();
        if matches!(state, StreamState::Reconnecting { attempt, .. } if attempt >= 2) {
            break state;
        }
        assert!(Instant::now() < deadline, "still {state:?}");
        std::thread::sleep(Duration::from_millis(50));
    };

    let StreamState::Reconnecting { last_error, .. } = &state else {
        unreachable!()
    };
    assert!(last_error.contains("Unauthorized"), "{last_error}");
    assert_eq!(source.stats().frames_read, 0);
    assert_no_password(last_error, "the state");
    assert_no_password(&metrics.render(), "metrics");
    drop(source);
    let logs = log_text();
    assert!(logs.contains("Stream failed; reconnecting"), "{logs}");
    assert_no_password(&logs, "the log");
}

#[test]
fn url_userinfo_works_and_is_masked() {
    captured_logs();
    let server = secure_server();
    let url = server
        .url()
        .replacen("rtsp://", &format!("rtsp://{USERNAME}:{PASSWORD}@"), 1);
    let metrics = Metrics::new().unwrap();
    let source = LiveSource::start(&url, options("secure-url", None), Some(&metrics)).unwrap();

    let frame = first_frame(&source);

    let masked = format!(
        "rtsp://{USERNAME}:REDACTED@127.0.0.1:{}/camera",
        server.port()
    );
    assert_eq!(source.display(), masked);
    assert_eq!(frame.origin, masked);
    assert_no_password(&format!("{:?}", source.state()), "the state");
    assert_no_password(&metrics.render(), "metrics");
    drop(source);
    assert_no_password(&log_text(), "the log");
}

#[test]
fn missing_credentials_file_is_retried() {
    captured_logs();
    let server = secure_server();
    let dir = tempfile::tempdir().unwrap();
    let source = LiveSource::start(
        &server.url(),
        options("secure-missing", Some(dir.path())),
        None,
    )
    .unwrap();

    let deadline = Instant::now() + PATIENCE;
    let last_error = loop {
        if let StreamState::Reconnecting { last_error, .. } = source.state() {
            break last_error;
        }
        assert!(Instant::now() < deadline, "state {:?}", source.state());
        std::thread::sleep(Duration::from_millis(50));
    };
    // The Secret is mounted late: the next attempt reads it.
    std::fs::write(dir.path().join("username"), USERNAME).unwrap();
    std::fs::write(dir.path().join("password"), PASSWORD).unwrap();
    let frame = first_frame(&source);

    assert!(last_error.contains("credentials file"), "{last_error}");
    assert_eq!(frame.image.dimensions(), (rtsp::WIDTH, rtsp::HEIGHT));
}
