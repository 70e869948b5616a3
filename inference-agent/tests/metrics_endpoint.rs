//! `/metrics` after a real run over the image folder, scraped over HTTP on
//! 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;

use visionfleet_agent::metrics::Metrics;
use visionfleet_agent::output::JsonLines;
use visionfleet_agent::pipeline::{Pipeline, RunSettings};
use visionfleet_agent::source::{self, SourceOptions};

fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("metrics server accepts");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    response
}

#[test]
fn metrics_count_frames_after_folder_run() {
    let fixture = require_asset!("models/customvision/orientation-classification.zip");
    let frames = require_asset!("frames");
    let Some(library) = common::ort_library() else {
        return;
    };
    let model = common::prepare_model(&fixture, None, &[]);
    let digest = model.package.digest.clone();
    let session = common::cpu_session(&library, &model);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let metrics = Metrics::new().unwrap();
    let (addr, server) = runtime
        .block_on(metrics.serve("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let mut pipeline =
        Pipeline::new(session, model, RunSettings::default(), Some(metrics)).unwrap();
    let mut source = source::open(frames.to_str().unwrap(), &SourceOptions::default()).unwrap();
    let mut output = JsonLines::new(Vec::new());

    let summary = pipeline
        .run(source.as_mut(), &mut output, &AtomicBool::new(false))
        .unwrap();
    let response = scrape(addr);
    server.abort();

    assert_eq!(summary.frames_inferred, 8);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("text/plain; version=0.0.4"), "{response}");
    assert!(
        response.contains("visionfleet_agent_frames_inferred_total{device=\"CPU\"} 8"),
        "{response}"
    );
    assert!(
        response.contains("visionfleet_agent_inference_duration_seconds_count{device=\"CPU\"} 8"),
        "{response}"
    );
    assert!(
        response
            .contains("# HELP visionfleet_agent_inference_duration_seconds Time ONNX Runtime took"),
        "{response}"
    );
    let info = format!(
        "visionfleet_agent_model_info{{device=\"CPU\",format=\"CustomVision\",layout=\"CustomVisionClassification\",model_digest=\"{digest}\",provider=\"OpenVINOExecutionProvider\",task=\"Classification\"}} 1"
    );
    assert!(response.contains(&info), "{response}");
}
