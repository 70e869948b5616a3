//! Real Custom Vision export fixtures on real photos, through the model
//! store, ONNX Runtime with OpenVINO on the CPU, and the decoders.

mod common;

use image::RgbImage;
use visionfleet_agent::decode::Prediction;
use visionfleet_agent::model::{self, LabelSource};
use visionfleet_agent::pipeline::{Pipeline, PipelineError, RunSettings};

fn photo(path: &std::path::Path) -> RgbImage {
    image::open(path).expect("photo decodes").to_rgb8()
}

fn pipeline(
    fixture: &std::path::Path,
    threshold: f32,
    overrides: &[(&str, &str)],
) -> Option<Pipeline> {
    let library = common::ort_library()?;
    let model = common::prepare_model(fixture, None, overrides);
    let session = common::cpu_session(&library, &model);
    let settings = RunSettings {
        threshold,
        ..RunSettings::default()
    };
    Some(Pipeline::new(session, model, settings, None).expect("pipeline builds"))
}

fn top_label(pipeline: &mut Pipeline, image: &RgbImage) -> Prediction {
    let (predictions, _) = pipeline.infer(image).expect("inference runs");
    predictions
        .into_iter()
        .next()
        .expect("a prediction above the threshold")
}

/// Returns the page photo turned clockwise by `degrees` (0, 90, 180 or
/// 270), which is what the orientation class of the same name means.
fn rotated_page(page: &RgbImage, degrees: u32) -> RgbImage {
    match degrees {
        0 => page.clone(),
        90 => image::imageops::rotate90(page),
        180 => image::imageops::rotate180(page),
        270 => image::imageops::rotate270(page),
        _ => panic!("unsupported rotation {degrees}"),
    }
}

fn check_page_orientations(fixture: &str) {
    let fixture = require_asset!(fixture);
    let page = photo(&require_asset!("photos/page.png"));
    let Some(mut pipeline) = pipeline(&fixture, 0.5, &[]) else {
        return;
    };

    for degrees in [0, 90, 180, 270] {
        let prediction = top_label(&mut pipeline, &rotated_page(&page, degrees));

        assert_eq!(
            prediction.label,
            degrees.to_string(),
            "page rotated {degrees} degrees: {prediction:?}"
        );
        assert!(
            prediction.score > 0.8,
            "page rotated {degrees} degrees: {prediction:?}"
        );
        assert!(prediction.bbox.is_none());
    }
}

#[test]
fn orientation_classifier_reads_rotated_page() {
    check_page_orientations("models/customvision/orientation-classification.zip");
}

#[test]
fn legacy_orientation_classifier_reads_rotated_page() {
    check_page_orientations("models/customvision/orientation-classification-legacy.zip");
}

#[test]
fn face_detector_finds_astronaut_face() {
    let fixture = require_asset!("models/customvision/face-detection-s1.zip");
    let astronaut = photo(&require_asset!("photos/astronaut.png"));
    let Some(mut pipeline) = pipeline(&fixture, 0.5, &[]) else {
        return;
    };

    let (faces, _) = pipeline.infer(&astronaut).expect("inference runs");

    assert_eq!(faces.len(), 1, "{faces:?}");
    assert_eq!(faces[0].label, "face");
    let bbox = faces[0].bbox.expect("a detection has a box");
    // The face in astronaut.png spans about [182, 58, 270, 178] of its 512 x 512 pixels.
    let expected = [182.0, 58.0, 270.0, 178.0].map(|pixels: f32| pixels / 512.0);
    let actual = [bbox.x_min, bbox.y_min, bbox.x_max, bbox.y_max];
    for (side, (actual, expected)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (actual - expected).abs() < 0.03,
            "side {side}: {actual} vs {expected}; box {actual:?}"
        );
    }
}

#[test]
fn face_detector_ignores_cat_and_coffee() {
    let fixture = require_asset!("models/customvision/face-detection-s1.zip");
    let Some(mut pipeline) = pipeline(&fixture, 0.5, &[]) else {
        return;
    };

    for name in ["photos/chelsea.png", "photos/coffee.png"] {
        let image = photo(&require_asset!(name));

        let (faces, _) = pipeline.infer(&image).expect("inference runs");

        assert!(faces.is_empty(), "{name}: {faces:?}");
    }
}

#[test]
fn grid_detector_matches_expected_results() {
    let fixture = require_asset!("models/customvision/grid-detection-legacy.zip");
    let expected_path = require_asset!("models/customvision/expected.json");
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(expected_path).unwrap()).unwrap();
    let results = &expected["fixtures"]["grid-detection-legacy.zip"]["results"];
    let Some(mut pipeline) = pipeline(&fixture, 0.3, &[]) else {
        return;
    };

    for name in ["astronaut.png", "chelsea.png", "page.png", "rocket.jpg"] {
        let image = photo(&require_asset!(&format!("photos/{name}")));
        let want = &results[name];

        let best = top_label(&mut pipeline, &image);

        assert_eq!(
            best.label,
            want["label"].as_str().unwrap(),
            "{name}: {best:?}"
        );
        assert!(
            (f64::from(best.score) - want["score"].as_f64().unwrap()).abs() < 0.02,
            "{name}: {best:?}"
        );
        let bbox = best.bbox.expect("a detection has a box");
        let got = [bbox.x_min, bbox.y_min, bbox.x_max, bbox.y_max];
        for (side, want) in want["box"].as_array().unwrap().iter().enumerate() {
            let want = want.as_f64().unwrap();
            assert!(
                (f64::from(got[side]) - want).abs() < 0.01,
                "{name} side {side}: {got:?} vs {want}"
            );
        }
    }
}

#[test]
fn plain_classifier_with_metadata_overrides() {
    let fixture = require_asset!("models/customvision/plain-classifier.onnx");
    let page = photo(&require_asset!("photos/page.png"));
    let overrides = [
        ("Image.BitmapPixelFormat", "Bgr8"),
        ("Image.NominalPixelRange", "Normalized_0_1"),
        (
            "CustomVision.Preprocess.NormalizeMean",
            "[0.485, 0.456, 0.406]",
        ),
        (
            "CustomVision.Preprocess.NormalizeStd",
            "[0.229, 0.224, 0.225]",
        ),
    ];
    let Some(library) = common::ort_library() else {
        return;
    };
    let model = common::prepare_model(&fixture, None, &overrides);
    assert_eq!(model.label_source, LabelSource::ModelMetadata);
    assert_eq!(model.format(), "ONNX");
    let session = common::cpu_session(&library, &model);
    let mut pipeline = Pipeline::new(session, model, RunSettings::default(), None).unwrap();

    for degrees in [0, 90, 180, 270] {
        let prediction = top_label(&mut pipeline, &rotated_page(&page, degrees));

        assert_eq!(prediction.label, degrees.to_string(), "{prediction:?}");
        assert!(prediction.score > 0.8, "{prediction:?}");
    }
}

#[test]
fn label_count_mismatch_names_both_counts() {
    let fixture = require_asset!("models/customvision/orientation-classification.zip");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let store = visionfleet_model::ModelStore::new(cache.path());
    let (package, _) = runtime
        .block_on(model::fetch(&store, fixture.to_str().unwrap(), None))
        .unwrap();

    let labels = vec!["up".to_owned(), "down".to_owned(), "left".to_owned()];
    let error = model::prepare(package, Some(labels), Default::default()).unwrap_err();

    let message = error.to_string();
    assert!(message.contains("4 classes"), "{message}");
    assert!(message.contains("3 labels"), "{message}");
}

#[test]
fn threshold_and_interest_filter_predictions() {
    let fixture = require_asset!("models/customvision/orientation-classification.zip");
    let page = photo(&require_asset!("photos/page.png"));
    let Some(library) = common::ort_library() else {
        return;
    };
    let model = common::prepare_model(&fixture, None, &[]);
    let session = common::cpu_session(&library, &model);
    let settings = RunSettings {
        threshold: 0.0,
        objects_of_interest: vec!["90".to_owned(), "270".to_owned()],
        max_fps: None,
    };
    let mut pipeline = Pipeline::new(session, model, settings, None).unwrap();

    let (predictions, _) = pipeline.infer(&page).unwrap();

    let labels: Vec<&str> = predictions
        .iter()
        .map(|prediction| prediction.label.as_str())
        .collect();
    assert_eq!(labels.len(), 2, "{labels:?}");
    assert!(
        labels.contains(&"90") && labels.contains(&"270"),
        "{labels:?}"
    );
}

#[test]
fn wrong_pixel_format_reported() {
    let fixture = require_asset!("models/customvision/orientation-classification.zip");
    let Some(library) = common::ort_library() else {
        return;
    };
    let model = common::prepare_model(&fixture, None, &[("Image.BitmapPixelFormat", "Gray8")]);
    let session = common::cpu_session(&library, &model);

    let error = Pipeline::new(session, model, RunSettings::default(), None).unwrap_err();

    assert!(matches!(error, PipelineError::Preprocess(_)), "{error}");
    assert!(error.to_string().contains("Gray8"), "{error}");
}
