//! The `visionfleet-agent` binary end to end on the real video and image
//! folder from `assets/`: every stdout line must be a JSON result, logs
//! and the summary go to stderr.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use visionfleet_agent::runtime::OpenVinoInventory;
use visionfleet_api::Accelerator;

/// Runs the agent with ONNX Runtime from the assets and, for `run`, a
/// fresh model cache.
fn agent(args: &[&str]) -> Option<Output> {
    let ort = common::ort_dylib_path()?;
    let cache = tempfile::tempdir().expect("temporary cache");
    let mut command = Command::new(env!("CARGO_BIN_EXE_visionfleet-agent"));
    command.args(args);
    if args.first() == Some(&"run") {
        command.arg("--cache-dir").arg(cache.path());
    }
    let output = command
        .env("ORT_DYLIB_PATH", ort)
        .env("RUST_LOG", "info,ort=warn")
        .output()
        .expect("the agent starts");
    Some(output)
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Parses every stdout line as JSON and checks the fields every result has.
fn results(output: &Output) -> Vec<Value> {
    let stdout = String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8");
    stdout
        .lines()
        .map(|line| {
            let result: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
            for field in [
                "frame",
                "timestamp",
                "source",
                "model_digest",
                "device",
                "task",
                "predictions",
            ] {
                assert!(result.get(field).is_some(), "{field} missing: {line}");
            }
            assert!(
                result["model_digest"]
                    .as_str()
                    .is_some_and(|digest| digest.starts_with("sha256:")),
                "{line}"
            );
            assert!(
                result["timestamp"]
                    .as_str()
                    .is_some_and(|timestamp| timestamp.ends_with('Z')),
                "{line}"
            );
            result
        })
        .collect()
}

fn frame_numbers(results: &[Value]) -> Vec<u64> {
    results
        .iter()
        .map(|result| result["frame"].as_u64().expect("frame is a number"))
        .collect()
}

fn openvino_lists(device: Accelerator) -> bool {
    let Some(library) = common::ort_library() else {
        return false;
    };
    OpenVinoInventory::probe(library.dir()).has(device)
}

#[test]
fn video_run_emits_json_per_frame() {
    let model = require_asset!("models/customvision/face-detection-s1.zip");
    let video = require_asset!("video/photos-10fps.mp4");
    let Some(output) = agent(&["run", "--model", arg(&model), "--source", arg(&video)]) else {
        return;
    };

    assert!(output.status.success(), "{}", stderr(&output));
    let results = results(&output);
    assert_eq!(frame_numbers(&results), (0..80).collect::<Vec<u64>>());
    for result in &results {
        assert_eq!(result["device"], "CPU");
        assert_eq!(result["task"], "ObjectDetection");
        assert_eq!(result["source"], arg(&video));
    }

    // The video shows eight photos for one second each; the fifth is astronaut.png.
    let with_face: Vec<u64> = results
        .iter()
        .filter(|result| !result["predictions"].as_array().unwrap().is_empty())
        .map(|result| result["frame"].as_u64().unwrap())
        .filter(|frame| (40..50).contains(frame))
        .collect();
    assert_eq!(with_face, (40..50).collect::<Vec<u64>>());
    for result in &results[50..70] {
        assert_eq!(
            result["predictions"],
            Value::Array(Vec::new()),
            "cat or coffee frame: {result}"
        );
    }
    let face = &results[45]["predictions"][0];
    assert_eq!(face["label"], "face");
    assert_eq!(face["box"].as_array().unwrap().len(), 4);
    assert!(
        stderr(&output).contains("summary: frames=80 skipped=0"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn folder_run_labels_each_image() {
    let model = require_asset!("models/customvision/orientation-classification.zip");
    let frames = require_asset!("frames");
    let Some(output) = agent(&["run", "--model", arg(&model), "--source", arg(&frames)]) else {
        return;
    };

    assert!(output.status.success(), "{}", stderr(&output));
    let results = results(&output);
    assert_eq!(frame_numbers(&results), (0..8).collect::<Vec<u64>>());
    for (result, expected) in results.iter().zip(["0", "90", "180", "270"]) {
        assert_eq!(result["predictions"][0]["label"], expected, "{result}");
        assert!(
            result["source"]
                .as_str()
                .unwrap()
                .ends_with(&format!("page-{expected}.png")),
            "{result}"
        );
        assert_eq!(result["task"], "Classification");
        assert!(result["predictions"][0].get("box").is_none(), "{result}");
    }
}

#[test]
fn max_fps_caps_video_frames() {
    let model = require_asset!("models/customvision/orientation-classification.zip");
    let video = require_asset!("video/photos-10fps.mp4");
    let Some(output) = agent(&[
        "run",
        "--model",
        arg(&model),
        "--source",
        arg(&video),
        "--max-fps",
        "2",
    ]) else {
        return;
    };

    assert!(output.status.success(), "{}", stderr(&output));
    let frames = frame_numbers(&results(&output));
    assert_eq!(frames, (0..80).step_by(5).collect::<Vec<u64>>());
    assert!(
        stderr(&output).contains("summary: frames=16 skipped=64"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn gpu_request_warns_once() {
    let model = require_asset!("models/customvision/orientation-classification.zip");
    let frames = require_asset!("frames");
    if openvino_lists(Accelerator::Gpu) {
        eprintln!(
            "\n!!!!!!!! SKIPPED: OpenVINO lists a GPU here; this test needs a machine without one !!!!!!!!\n"
        );
        return;
    }
    let Some(output) = agent(&[
        "run",
        "--model",
        arg(&model),
        "--source",
        arg(&frames),
        "--accelerator",
        "GPU",
    ]) else {
        return;
    };

    assert!(output.status.success(), "{}", stderr(&output));
    let stderr = stderr(&output);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("WARN"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("falling back"), "{stderr}");
    assert!(
        warnings[0].contains("lists no GPU device (found: CPU)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "Inference device selected device=CPU provider=OpenVINOExecutionProvider fallback=true"
        ),
        "{stderr}"
    );
    let results = results(&output);
    assert_eq!(results.len(), 8);
    assert!(results.iter().all(|result| result["device"] == "CPU"));
}

#[test]
fn myriad_without_fallback_exits_with_error() {
    let model = require_asset!("models/customvision/orientation-classification.zip");
    let frames = require_asset!("frames");
    let Some(output) = agent(&[
        "run",
        "--model",
        arg(&model),
        "--source",
        arg(&frames),
        "--accelerator",
        "MYRIAD",
        "--no-cpu-fallback",
    ]) else {
        return;
    };

    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = stderr(&output);
    assert!(stderr.contains("has no MYRIAD plugin"), "{stderr}");
    assert!(stderr.contains("CPU fallback is disabled"), "{stderr}");
}

#[test]
fn cpu_execution_provider_selectable() {
    let model = require_asset!("models/customvision/face-detection-s1.zip");
    let photo = require_asset!("photos/astronaut.png");
    let Some(output) = agent(&[
        "run",
        "--model",
        arg(&model),
        "--source",
        arg(&photo),
        "--execution-provider",
        "cpu",
    ]) else {
        return;
    };

    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("provider=CPUExecutionProvider"),
        "{}",
        stderr(&output)
    );
    let results = results(&output);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["predictions"][0]["label"], "face");
}

#[test]
fn missing_ort_dylib_path_named() {
    let model = require_asset!("models/customvision/orientation-classification.zip");

    let output = Command::new(env!("CARGO_BIN_EXE_visionfleet-agent"))
        .args(["run", "--model", arg(&model), "--source", "nowhere.png"])
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .unwrap();

    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("ORT_DYLIB_PATH is not set"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn devices_command_lists_openvino_cpu() {
    let Some(output) = agent(&["devices"]) else {
        return;
    };

    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        report["openvino_build"]
            .as_str()
            .unwrap()
            .starts_with("2025.4"),
        "{report}"
    );
    assert!(
        report["openvino_devices"]
            .as_array()
            .unwrap()
            .contains(&Value::from("CPU")),
        "{report}"
    );
}
