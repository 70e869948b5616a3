//! Device selection against the real OpenVINO runtime that ships with
//! onnxruntime-openvino 1.24.1 (OpenVINO 2025.4). The tests expect a
//! machine without an Intel GPU or NPU, and skip themselves when OpenVINO
//! lists one.

mod common;

use visionfleet_agent::runtime::{
    ExecutionProvider, InferenceSession, OpenVinoInventory, OrtLibrary, ProviderPolicy,
    SessionConfig, SessionError,
};
use visionfleet_api::Accelerator;

/// Returns ONNX Runtime and the orientation classifier's model file, or `None`
/// when the assets are missing or OpenVINO lists one of `absent`.
fn setup(absent: &[Accelerator]) -> Option<(std::sync::Arc<OrtLibrary>, std::path::PathBuf)> {
    let fixture = common::asset("models/customvision/orientation-classification.zip")?;
    let library = common::ort_library()?;

    let inventory = OpenVinoInventory::probe(library.dir());
    if let Some(present) = absent.iter().find(|device| inventory.has(**device)) {
        eprintln!(
            "\n!!!!!!!! SKIPPED: OpenVINO lists a {present} device here; this test needs a machine without one !!!!!!!!\n"
        );
        return None;
    }

    let model = common::prepare_model(&fixture, None, &[]);
    Some((library, model.package.model_path))
}

fn config(preference: &[Accelerator], allow_cpu_fallback: bool) -> SessionConfig {
    SessionConfig {
        preference: preference.to_vec(),
        allow_cpu_fallback,
        ..SessionConfig::default()
    }
}

#[test]
fn openvino_lists_its_cpu() {
    let Some(library) = common::ort_library() else {
        return;
    };

    let inventory = OpenVinoInventory::probe(library.dir());

    assert!(inventory.has(Accelerator::Cpu), "{inventory:?}");
    assert!(
        inventory
            .build()
            .is_some_and(|build| build.starts_with("2025.")),
        "{inventory:?}"
    );
}

#[test]
fn absent_gpu_falls_back_to_openvino_cpu() {
    let Some((library, model)) = setup(&[Accelerator::Gpu]) else {
        return;
    };

    let session =
        InferenceSession::open(&library, &model, &config(&[Accelerator::Gpu], true)).unwrap();

    let report = session.device();
    assert_eq!(report.device, Accelerator::Cpu);
    assert_eq!(report.provider, ExecutionProvider::OpenVino);
    assert!(report.fallback);
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert_eq!(report.skipped[0].device, Accelerator::Gpu);
    assert!(
        report.skipped[0]
            .reason
            .contains("lists no GPU device (found: CPU"),
        "{}",
        report.skipped[0].reason
    );
}

#[test]
fn myriad_request_names_missing_plugin() {
    let Some((library, model)) = setup(&[]) else {
        return;
    };

    let session =
        InferenceSession::open(&library, &model, &config(&[Accelerator::Myriad], true)).unwrap();

    let report = session.device();
    assert_eq!(report.device, Accelerator::Cpu);
    let reason = &report.skipped[0].reason;
    assert_eq!(report.skipped[0].device, Accelerator::Myriad);
    assert!(reason.contains("has no MYRIAD plugin"), "{reason}");
    assert!(reason.contains("OpenVINO 2025.4"), "{reason}");
    assert!(
        reason.contains("removed the Neural Compute Stick 2 (MYRIAD) plugin in OpenVINO 2023.0"),
        "{reason}"
    );
}

#[test]
fn preferred_devices_tried_in_order() {
    let Some((library, model)) = setup(&[Accelerator::Gpu, Accelerator::Npu]) else {
        return;
    };
    let preference = [
        Accelerator::Myriad,
        Accelerator::Gpu,
        Accelerator::Npu,
        Accelerator::Cpu,
    ];

    let session = InferenceSession::open(&library, &model, &config(&preference, false)).unwrap();

    let report = session.device();
    assert_eq!(report.device, Accelerator::Cpu);
    assert_eq!(report.provider, ExecutionProvider::OpenVino);
    let skipped: Vec<Accelerator> = report
        .skipped
        .iter()
        .map(|skipped| skipped.device)
        .collect();
    assert_eq!(
        skipped,
        vec![Accelerator::Myriad, Accelerator::Gpu, Accelerator::Npu]
    );
}

#[test]
fn no_cpu_fallback_fails_clearly() {
    let Some((library, model)) = setup(&[Accelerator::Gpu, Accelerator::Npu]) else {
        return;
    };

    let error = InferenceSession::open(
        &library,
        &model,
        &config(&[Accelerator::Gpu, Accelerator::Npu], false),
    )
    .unwrap_err();

    assert!(
        matches!(error, SessionError::NoUsableDevice { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("requested: GPU,NPU"), "{message}");
    assert!(message.contains("lists no GPU device"), "{message}");
    assert!(message.contains("lists no NPU device"), "{message}");
    assert!(message.contains("CPU fallback is disabled"), "{message}");
}

#[test]
fn cpu_provider_runs_without_openvino() {
    let Some((library, model)) = setup(&[]) else {
        return;
    };
    let config = SessionConfig {
        policy: ProviderPolicy::CpuOnly,
        ..SessionConfig::default()
    };

    let session = InferenceSession::open(&library, &model, &config).unwrap();

    assert_eq!(session.device().device, Accelerator::Cpu);
    assert_eq!(session.device().provider, ExecutionProvider::Cpu);
    assert!(!session.device().fallback);
}

#[test]
fn compile_cache_written_to_directory() {
    let Some((library, model)) = setup(&[]) else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let config = SessionConfig {
        compile_cache_dir: Some(cache.path().join("openvino")),
        ..SessionConfig::default()
    };

    let session = InferenceSession::open(&library, &model, &config).unwrap();

    assert_eq!(session.device().provider, ExecutionProvider::OpenVino);
    let entries = std::fs::read_dir(cache.path().join("openvino"))
        .unwrap()
        .count();
    assert!(entries > 0, "OpenVINO wrote nothing to its compile cache");
}

#[test]
fn missing_model_file_reported() {
    let Some(library) = common::ort_library() else {
        return;
    };

    let error = InferenceSession::open(
        &library,
        std::path::Path::new("/nonexistent/model.onnx"),
        &SessionConfig::default(),
    )
    .unwrap_err();

    assert_eq!(
        error.to_string(),
        "model file /nonexistent/model.onnx does not exist"
    );
}
