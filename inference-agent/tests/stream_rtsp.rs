//! Live RTSP sources against a real GStreamer RTSP server on 127.0.0.1:
//! TCP and UDP transport, a stalled stream, and a server that goes away
//! and comes back on the same port.

#[path = "common/rtsp.rs"]
mod rtsp;

use std::time::{Duration, Instant};

use gstreamer_rtsp_server::gst_rtsp::RTSPLowerTrans;
use rtsp::{Codec, RtspServer, ServerConfig};
use visionfleet_agent::metrics::Metrics;
use visionfleet_agent::source::{
    self, Frame, LiveSource, NextFrame, ReconnectPolicy, RtspTransport, SourceError, SourceOptions,
    StreamState,
};

/// Upper bound for any wait; the tests never assert how fast things happen.
const PATIENCE: Duration = Duration::from_secs(60);

fn options(name: &str, transport: RtspTransport) -> SourceOptions {
    SourceOptions {
        name: Some(name.to_owned()),
        rtsp_transport: transport,
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

fn take_frames(source: &LiveSource, count: usize) -> Vec<Frame> {
    let deadline = Instant::now() + PATIENCE;
    let mut frames = Vec::new();
    while frames.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} frames; state {:?}",
            frames.len(),
            source.state()
        );
        match source.next_frame(Duration::from_secs(1)) {
            NextFrame::Frame(frame) => frames.push(frame),
            NextFrame::TimedOut => {}
            other => panic!("unexpected {other:?}; state {:?}", source.state()),
        }
    }
    frames
}

fn wait_for_state(source: &LiveSource, wanted: impl Fn(&StreamState) -> bool) -> StreamState {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let state = source.state();
        if wanted(&state) {
            return state;
        }
        assert!(Instant::now() < deadline, "still {state:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric_value(metrics: &Metrics, series: &str) -> f64 {
    let text = metrics.render();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

#[test]
fn rtsp_over_tcp_delivers_frames() {
    let server = RtspServer::start(ServerConfig {
        transport: Some(RTSPLowerTrans::TCP),
        ..ServerConfig::default()
    });
    let metrics = Metrics::new().unwrap();
    let source = LiveSource::start(
        &server.url(),
        options("dock-tcp", RtspTransport::Tcp),
        Some(&metrics),
    )
    .unwrap();

    let frames = take_frames(&source, 5);

    for frame in &frames {
        assert_eq!(frame.image.dimensions(), (rtsp::WIDTH, rtsp::HEIGHT));
        assert_eq!(frame.origin, server.url());
    }
    assert!(frames.windows(2).all(|pair| pair[0].index < pair[1].index));
    assert_eq!(source.state(), StreamState::Streaming);
    assert!(source.stats().frames_read >= 5);
    assert!(
        metric_value(
            &metrics,
            "visionfleet_agent_frames_read_total{source=\"dock-tcp\"}"
        ) >= 5.0
    );
    assert_eq!(
        metric_value(&metrics, "visionfleet_agent_stream_up{source=\"dock-tcp\"}"),
        1.0
    );
}

#[test]
fn rtsp_over_udp_delivers_frames() {
    let server = RtspServer::start(ServerConfig {
        transport: Some(RTSPLowerTrans::UDP),
        codec: Codec::Jpeg,
        ..ServerConfig::default()
    });
    let source =
        LiveSource::start(&server.url(), options("dock-udp", RtspTransport::Udp), None).unwrap();

    let frames = take_frames(&source, 5);

    for frame in &frames {
        assert_eq!(frame.image.dimensions(), (rtsp::WIDTH, rtsp::HEIGHT));
    }
    assert_eq!(source.state(), StreamState::Streaming);
}

#[test]
fn rtspt_scheme_reads_over_tcp() {
    let server = RtspServer::start(ServerConfig {
        transport: Some(RTSPLowerTrans::TCP),
        ..ServerConfig::default()
    });
    let url = server.url().replacen("rtsp://", "rtspt://", 1);
    let source = LiveSource::start(&url, options("dock-rtspt", RtspTransport::Auto), None).unwrap();

    let frames = take_frames(&source, 3);

    assert_eq!(frames.len(), 3);
}

#[test]
fn udp_only_client_fails_against_tcp_server() {
    let server = RtspServer::start(ServerConfig {
        transport: Some(RTSPLowerTrans::TCP),
        ..ServerConfig::default()
    });
    let source = LiveSource::start(
        &server.url(),
        options("dock-mismatch", RtspTransport::Udp),
        None,
    )
    .unwrap();

    let state = wait_for_state(&source, |state| {
        matches!(state, StreamState::Reconnecting { .. })
    });

    // The server rejects a UDP-only SETUP, so the transport setting really
    // reaches rtspsrc.
    let StreamState::Reconnecting { last_error, .. } = state else {
        unreachable!()
    };
    assert!(last_error.contains(&server.url()), "{last_error}");
    assert_eq!(source.stats().frames_read, 0);
}

#[test]
fn stalled_stream_reconnects_to_new_server() {
    let server = RtspServer::start(ServerConfig::default());
    let port = server.port();
    let metrics = Metrics::new().unwrap();
    let source = LiveSource::start(
        &server.url(),
        options("dock-stall", RtspTransport::Tcp),
        Some(&metrics),
    )
    .unwrap();
    take_frames(&source, 3);

    server.stall();
    let state = wait_for_state(&source, |state| {
        matches!(state, StreamState::Reconnecting { .. })
    });

    let StreamState::Reconnecting { last_error, .. } = state else {
        unreachable!()
    };
    let stalled = SourceError::Stalled {
        uri: server.url(),
        timeout: Duration::from_secs(2),
    };
    assert_eq!(last_error, stalled.to_string());
    assert_eq!(
        metric_value(
            &metrics,
            "visionfleet_agent_stream_up{source=\"dock-stall\"}"
        ),
        0.0
    );
    // While the stream is down, a read returns when its timeout ends.
    for _ in 0..3 {
        assert!(matches!(
            source.next_frame(Duration::from_millis(300)),
            NextFrame::TimedOut
        ));
    }

    server.shut_down();
    let replacement = RtspServer::start(ServerConfig {
        port,
        ..ServerConfig::default()
    });
    let frames = take_frames(&source, 3);

    assert_eq!(replacement.port(), port);
    assert_eq!(frames[0].image.dimensions(), (rtsp::WIDTH, rtsp::HEIGHT));
    assert_eq!(source.state(), StreamState::Streaming);
    assert!(source.stats().reconnects >= 1);
}

#[test]
fn dropped_stream_reconnects_with_backoff() {
    let server = RtspServer::start(ServerConfig::default());
    let port = server.port();
    let metrics = Metrics::new().unwrap();
    let source = LiveSource::start(
        &server.url(),
        options("dock-drop", RtspTransport::Tcp),
        Some(&metrics),
    )
    .unwrap();
    let before = take_frames(&source, 3);

    server.shut_down();
    // With the server gone every attempt fails, so the attempt number grows.
    let state = wait_for_state(
        &source,
        |state| matches!(state, StreamState::Reconnecting { attempt, .. } if *attempt >= 3),
    );
    let replacement = RtspServer::start(ServerConfig {
        port,
        ..ServerConfig::default()
    });
    let after = take_frames(&source, 3);

    let StreamState::Reconnecting { last_error, .. } = state else {
        unreachable!()
    };
    assert!(!last_error.is_empty());
    assert!(after[0].index > before[2].index);
    assert_eq!(replacement.port(), port);
    assert_eq!(source.state(), StreamState::Streaming);
    let reconnects = source.stats().reconnects;
    assert!(reconnects >= 3, "{reconnects} reconnects");
    assert_eq!(
        metric_value(
            &metrics,
            "visionfleet_agent_stream_reconnects_total{source=\"dock-drop\"}"
        ),
        reconnects as f64
    );
    assert_eq!(
        metric_value(
            &metrics,
            "visionfleet_agent_stream_up{source=\"dock-drop\"}"
        ),
        1.0
    );
}

#[test]
fn run_source_ends_when_server_drops() {
    let server = RtspServer::start(ServerConfig::default());
    let mut source = source::open(&server.url(), &options("run", RtspTransport::Tcp)).unwrap();

    let frame = source
        .next_frame()
        .unwrap()
        .expect("a live stream does not end");
    server.shut_down();
    // rtspsrc reports the closed connection as the end of the stream; a
    // server that vanished without closing would stall the read instead.
    let end = loop {
        match source.next_frame() {
            Ok(Some(_)) => {}
            end => break end,
        }
    };

    assert_eq!(frame.image.dimensions(), (rtsp::WIDTH, rtsp::HEIGHT));
    match end {
        Ok(None) => {}
        Err(error) => assert!(error.is_transient(), "{error}"),
        Ok(Some(_)) => unreachable!(),
    }
}
