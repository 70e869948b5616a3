//! Decoder for Custom Vision's `[S1]` detection exports, which run their
//! own post-processing and non-maximum suppression inside the model.
//!
//! Outputs: `detected_boxes` `[1, K, 4]` with normalised x_min, y_min,
//! x_max, y_max; `detected_scores` `[1, K]`; `detected_classes` `[1, K]`
//! with class indices (integers, or floats in some exports).

use super::{BoundingBox, DecodeError, Prediction, float_tensor, label_at, require, unexpected};
use crate::tensor::{ModelOutputs, OutputValue, TensorData};

pub const BOXES_OUTPUT: &str = "detected_boxes";
pub const SCORES_OUTPUT: &str = "detected_scores";
pub const CLASSES_OUTPUT: &str = "detected_classes";

/// Decodes every detection, highest score first, with boxes clipped to the frame.
pub fn decode(outputs: &ModelOutputs, labels: &[String]) -> Result<Vec<Prediction>, DecodeError> {
    let boxes_value = require(outputs, BOXES_OUTPUT)?;
    let (box_shape, boxes) = float_tensor(BOXES_OUTPUT, boxes_value)?;
    if box_shape.last() != Some(&4) || boxes.len() % 4 != 0 {
        return Err(unexpected(
            BOXES_OUTPUT,
            boxes_value,
            "a float tensor [1, K, 4]",
        ));
    }
    let count = boxes.len() / 4;

    let (_, scores) = float_tensor(SCORES_OUTPUT, require(outputs, SCORES_OUTPUT)?)?;
    let classes = class_indices(require(outputs, CLASSES_OUTPUT)?)?;
    if scores.len() != count || classes.len() != count {
        return Err(DecodeError::UnexpectedOutput {
            name: SCORES_OUTPUT.to_owned(),
            found: format!(
                "{} scores and {} classes for {count} boxes",
                scores.len(),
                classes.len()
            ),
            expected: "one score and one class per box",
        });
    }

    let mut predictions = Vec::with_capacity(count);
    for (index, corners) in boxes.chunks_exact(4).enumerate() {
        let bbox = BoundingBox {
            x_min: corners[0],
            y_min: corners[1],
            x_max: corners[2],
            y_max: corners[3],
        };
        predictions.push(Prediction {
            label: label_at(CLASSES_OUTPUT, labels, classes[index])?,
            score: scores[index],
            bbox: Some(bbox.clipped()),
        });
    }
    predictions.sort_by(|left, right| right.score.total_cmp(&left.score));
    Ok(predictions)
}

fn class_indices(value: &OutputValue) -> Result<Vec<i64>, DecodeError> {
    match value {
        OutputValue::Tensor {
            data: TensorData::Int(classes),
            ..
        } => Ok(classes.clone()),
        // Float class indices are whole numbers; rounding guards against float16 noise.
        OutputValue::Tensor {
            data: TensorData::Float(classes),
            ..
        } => Ok(classes.iter().map(|class| class.round() as i64).collect()),
        other => Err(unexpected(
            CLASSES_OUTPUT,
            other,
            "a tensor of class indices [1, K]",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(boxes: Vec<f32>, scores: Vec<f32>, classes: OutputValue) -> ModelOutputs {
        let count = scores.len();
        let mut outputs = ModelOutputs::default();
        outputs.insert(BOXES_OUTPUT, OutputValue::float(&[1, count, 4], boxes));
        outputs.insert(SCORES_OUTPUT, OutputValue::float(&[1, count], scores));
        outputs.insert(CLASSES_OUTPUT, classes);
        outputs
    }

    fn labels() -> Vec<String> {
        vec!["face".to_owned(), "hand".to_owned()]
    }

    #[test]
    fn decodes_sorted_and_clipped() {
        let outputs = outputs(
            vec![0.1, 0.2, 0.3, 0.4, -0.05, 0.5, 0.6, 1.2],
            vec![0.4, 0.9],
            OutputValue::int(&[1, 2], vec![0, 1]),
        );

        let predictions = decode(&outputs, &labels()).unwrap();

        assert_eq!(predictions.len(), 2);
        assert_eq!(predictions[0].label, "hand");
        assert_eq!(
            predictions[0].bbox,
            Some(BoundingBox {
                x_min: 0.0,
                y_min: 0.5,
                x_max: 0.6,
                y_max: 1.0
            })
        );
        assert_eq!(predictions[1].label, "face");
        assert_eq!(
            predictions[1].bbox,
            Some(BoundingBox {
                x_min: 0.1,
                y_min: 0.2,
                x_max: 0.3,
                y_max: 0.4
            })
        );
    }

    #[test]
    fn float_class_indices_accepted() {
        let outputs = outputs(
            vec![0.0, 0.0, 1.0, 1.0],
            vec![0.7],
            OutputValue::float(&[1, 1], vec![1.0]),
        );

        let predictions = decode(&outputs, &labels()).unwrap();

        assert_eq!(predictions[0].label, "hand");
    }

    #[test]
    fn class_beyond_labels_rejected() {
        let outputs = outputs(
            vec![0.0, 0.0, 1.0, 1.0],
            vec![0.7],
            OutputValue::int(&[1, 1], vec![2]),
        );

        let error = decode(&outputs, &labels()).unwrap_err();

        assert_eq!(
            error.to_string(),
            "model output \"detected_classes\" names class index 2, but there are only 2 labels"
        );
    }

    #[test]
    fn empty_detections_decode_empty() {
        let outputs = outputs(
            Vec::new(),
            Vec::new(),
            OutputValue::int(&[1, 0], Vec::new()),
        );

        assert!(decode(&outputs, &labels()).unwrap().is_empty());
    }

    #[test]
    fn missing_scores_reported() {
        let mut outputs = ModelOutputs::default();
        outputs.insert(BOXES_OUTPUT, OutputValue::float(&[1, 0, 4], Vec::new()));

        let error = decode(&outputs, &labels()).unwrap_err();

        assert!(
            matches!(error, DecodeError::MissingOutput { ref name, .. } if name == SCORES_OUTPUT),
            "{error}"
        );
    }
}
