//! Turning model outputs into labelled predictions. Every decoder is a pure
//! function of the copied outputs, the labels and the thresholds.

pub mod classification;
pub mod detection_grid;
pub mod detection_s1;
pub mod nms;

use serde::Serialize;

use crate::tensor::{ModelOutputs, OutputValue, TensorData};

/// An axis-aligned box in coordinates normalised to the frame, from 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(into = "[f32; 4]")]
pub struct BoundingBox {
    pub x_min: f32,
    pub y_min: f32,
    pub x_max: f32,
    pub y_max: f32,
}

impl BoundingBox {
    /// Clamps every coordinate to `[0, 1]`, since a decoded box may reach
    /// past the frame edge.
    pub fn clipped(self) -> Self {
        Self {
            x_min: self.x_min.clamp(0.0, 1.0),
            y_min: self.y_min.clamp(0.0, 1.0),
            x_max: self.x_max.clamp(0.0, 1.0),
            y_max: self.y_max.clamp(0.0, 1.0),
        }
    }

    pub fn area(&self) -> f32 {
        (self.x_max - self.x_min).max(0.0) * (self.y_max - self.y_min).max(0.0)
    }

    /// Intersection over union, 0 when either box is empty.
    pub fn iou(&self, other: &Self) -> f32 {
        let width = (self.x_max.min(other.x_max) - self.x_min.max(other.x_min)).max(0.0);
        let height = (self.y_max.min(other.y_max) - self.y_min.max(other.y_min)).max(0.0);
        let intersection = width * height;
        let union = self.area() + other.area() - intersection;
        if union <= 0.0 {
            0.0
        } else {
            intersection / union
        }
    }
}

impl From<BoundingBox> for [f32; 4] {
    fn from(bbox: BoundingBox) -> Self {
        [bbox.x_min, bbox.y_min, bbox.x_max, bbox.y_max]
    }
}

/// One labelled prediction. Classification predictions have no box.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub label: String,
    pub score: f32,
    #[serde(rename = "box", skip_serializing_if = "Option::is_none")]
    pub bbox: Option<BoundingBox>,
}

/// Failure to decode a model's outputs, permanent for a given model and
/// label list.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("model output {name:?} is missing; the model returned: {available}")]
    MissingOutput { name: String, available: String },

    #[error("model output {name:?} is a {found}, expected {expected}")]
    UnexpectedOutput {
        name: String,
        found: String,
        expected: &'static str,
    },

    #[error("model output {output:?} has {classes} classes but {labels} labels were given")]
    LabelCountMismatch {
        output: String,
        classes: usize,
        labels: usize,
    },

    #[error(
        "model output {output:?} names class index {class}, but there are only {labels} labels"
    )]
    ClassOutOfRange {
        output: String,
        class: i64,
        labels: usize,
    },
}

/// Decoder that a model's output layout needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoder {
    /// Custom Vision's older classifier: `classLabel` and `loss`.
    ClassificationLegacy,
    /// One score tensor: Custom Vision's current classifier or any plain ONNX classifier.
    Classification { output: String },
    /// Custom Vision's `[S1]` detector with post-processing inside the model.
    DetectionS1,
    /// Custom Vision's older YOLOv2-style grid detector.
    DetectionGrid(detection_grid::GridParams),
}

impl Decoder {
    /// Decodes one frame's outputs. Empty `labels` label classes by index.
    /// `min_score` is the confidence threshold, which the grid decoder also
    /// needs as its candidate threshold.
    pub fn decode(
        &self,
        outputs: &ModelOutputs,
        labels: &[String],
        min_score: f32,
    ) -> Result<Vec<Prediction>, DecodeError> {
        match self {
            Self::ClassificationLegacy => classification::decode_legacy(outputs, labels),
            Self::Classification { output } => {
                classification::decode_scores(output, require(outputs, output)?, labels)
            }
            Self::DetectionS1 => detection_s1::decode(outputs, labels),
            Self::DetectionGrid(params) => {
                detection_grid::decode(outputs, labels, params, min_score)
            }
        }
    }
}

/// Keeps predictions scoring at least `threshold` whose label is in
/// `objects_of_interest` (all labels when it is empty).
pub fn filter(
    predictions: Vec<Prediction>,
    threshold: f32,
    objects_of_interest: &[String],
) -> Vec<Prediction> {
    predictions
        .into_iter()
        .filter(|prediction| prediction.score >= threshold)
        .filter(|prediction| {
            objects_of_interest.is_empty() || objects_of_interest.contains(&prediction.label)
        })
        .collect()
}

pub(crate) fn require<'a>(
    outputs: &'a ModelOutputs,
    name: &str,
) -> Result<&'a OutputValue, DecodeError> {
    outputs.get(name).ok_or_else(|| DecodeError::MissingOutput {
        name: name.to_owned(),
        available: outputs.names().collect::<Vec<_>>().join(", "),
    })
}

/// Reads a float tensor's shape and values.
pub(crate) fn float_tensor<'a>(
    name: &str,
    value: &'a OutputValue,
) -> Result<(&'a [usize], &'a [f32]), DecodeError> {
    match value {
        OutputValue::Tensor {
            shape,
            data: TensorData::Float(data),
        } => Ok((shape, data)),
        other => Err(unexpected(name, other, "a float tensor")),
    }
}

pub(crate) fn unexpected(name: &str, value: &OutputValue, expected: &'static str) -> DecodeError {
    let found = match value {
        OutputValue::Tensor { shape, .. } => format!("{} of shape {shape:?}", value.type_name()),
        OutputValue::MapSequence(_) => value.type_name().to_owned(),
    };
    DecodeError::UnexpectedOutput {
        name: name.to_owned(),
        found,
        expected,
    }
}

/// Labels `0`, `1`, ... for a model without a label list.
pub(crate) fn index_labels(count: usize) -> Vec<String> {
    (0..count).map(|index| index.to_string()).collect()
}

/// Returns the label of class `index`, or an error naming both numbers.
/// Without labels, the label is the index itself.
pub(crate) fn label_at(output: &str, labels: &[String], index: i64) -> Result<String, DecodeError> {
    if labels.is_empty() && index >= 0 {
        return Ok(index.to_string());
    }
    usize::try_from(index)
        .ok()
        .and_then(|position| labels.get(position))
        .cloned()
        .ok_or_else(|| DecodeError::ClassOutOfRange {
            output: output.to_owned(),
            class: index,
            labels: labels.len(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(label: &str, score: f32) -> Prediction {
        Prediction {
            label: label.to_owned(),
            score,
            bbox: None,
        }
    }

    #[test]
    fn filter_applies_threshold_and_interest() {
        let predictions = vec![
            prediction("person", 0.9),
            prediction("dog", 0.8),
            prediction("person", 0.3),
        ];

        let kept = filter(predictions, 0.5, &["person".to_owned()]);

        assert_eq!(kept, vec![prediction("person", 0.9)]);
    }

    #[test]
    fn iou_of_half_overlap() {
        let left = BoundingBox {
            x_min: 0.0,
            y_min: 0.0,
            x_max: 0.2,
            y_max: 0.1,
        };
        let right = BoundingBox {
            x_min: 0.1,
            y_min: 0.0,
            x_max: 0.3,
            y_max: 0.1,
        };

        assert!((left.iou(&right) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn box_serializes_as_array() {
        let bbox = BoundingBox {
            x_min: 0.25,
            y_min: 0.5,
            x_max: 0.75,
            y_max: 1.0,
        };

        let json = serde_json::to_string(&Prediction {
            label: "a".to_owned(),
            score: 0.5,
            bbox: Some(bbox),
        })
        .unwrap();

        assert_eq!(
            json,
            r#"{"label":"a","score":0.5,"box":[0.25,0.5,0.75,1.0]}"#
        );
    }
}
