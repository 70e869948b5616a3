//! Detection of a model's output format from its output names and shapes.
//!
//! File names and manifests are not consulted: a renamed or re-zipped model
//! keeps its outputs, so they are the reliable signal. The Custom Vision
//! formats are those of its ONNX exports: the legacy classifier's
//! `classLabel`/`loss` pair, the current classifier's single score vector,
//! the `[S1]` detection domains' post-processed `detected_*` outputs, and the
//! older compact detection domains' raw YOLO-style grid `model_outputs0`.

use std::fmt;

use crate::onnx::{Dim, OnnxSignature, ValueInfo};

/// Output names of the legacy Custom Vision classifier.
pub const LEGACY_CLASS_LABEL_OUTPUT: &str = "classLabel";
pub const LEGACY_LOSS_OUTPUT: &str = "loss";
/// Output name of the current Custom Vision classifier.
pub const CLASSIFICATION_OUTPUT: &str = "model_output";
/// Output names of the Custom Vision `[S1]` detectors.
pub const DETECTED_BOXES_OUTPUT: &str = "detected_boxes";
pub const DETECTED_SCORES_OUTPUT: &str = "detected_scores";
pub const DETECTED_CLASSES_OUTPUT: &str = "detected_classes";
/// Output name of the Custom Vision grid detectors.
pub const GRID_OUTPUT: &str = "model_outputs0";
/// Anchor boxes per grid cell in Custom Vision grid detectors.
pub const GRID_ANCHORS: u64 = 5;
/// Values per anchor before the class scores: x, y, w, h and objectness.
const GRID_BOX_VALUES: u64 = 5;

/// The output format of a model, which decides its post-processing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelLayout {
    /// Outputs `classLabel` (string tensor) and `loss` (sequence of
    /// label-to-probability maps); the labels live inside the model.
    CustomVisionClassificationLegacy,
    /// One float output `model_output` of shape `[1, N]` or `[N]` with a
    /// probability per class.
    CustomVisionClassification {
        output: String,
        classes: Option<u64>,
    },
    /// Outputs `detected_boxes` `[1, K, 4]` (normalized x1, y1, x2, y2),
    /// `detected_scores` `[1, K]` and `detected_classes` `[1, K]`, already
    /// filtered by non-maximum suppression inside the model.
    CustomVisionDetectionS1,
    /// One float output `model_outputs0` of shape `[1, A*(5+C), H, W]`: per
    /// grid cell and anchor, box offsets, objectness and C class scores.
    CustomVisionDetectionGrid { anchors: u64, classes: Option<u64> },
    /// Any other model with one float output of shape `[1, N]` or `[N]`.
    PlainClassification {
        output: String,
        classes: Option<u64>,
    },
}

/// Kind of prediction a model makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    Classification,
    ObjectDetection,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Classification => "Classification",
            Self::ObjectDetection => "ObjectDetection",
        })
    }
}

impl ModelLayout {
    /// Returns the kind of prediction the model makes.
    pub fn task(&self) -> Task {
        match self {
            Self::CustomVisionClassificationLegacy
            | Self::CustomVisionClassification { .. }
            | Self::PlainClassification { .. } => Task::Classification,
            Self::CustomVisionDetectionS1 | Self::CustomVisionDetectionGrid { .. } => {
                Task::ObjectDetection
            }
        }
    }

    /// Returns the number of classes that the output shapes imply, or `None` when
    /// the shapes do not tell (dynamic dimensions, class indices, or labels
    /// stored inside the model).
    pub fn class_count(&self) -> Option<u64> {
        match self {
            Self::CustomVisionClassification { classes, .. }
            | Self::PlainClassification { classes, .. }
            | Self::CustomVisionDetectionGrid { classes, .. } => *classes,
            Self::CustomVisionClassificationLegacy | Self::CustomVisionDetectionS1 => None,
        }
    }

    /// Returns a stable CamelCase name for logs, status fields and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CustomVisionClassificationLegacy => "CustomVisionClassificationLegacy",
            Self::CustomVisionClassification { .. } => "CustomVisionClassification",
            Self::CustomVisionDetectionS1 => "CustomVisionDetectionS1",
            Self::CustomVisionDetectionGrid { .. } => "CustomVisionDetectionGrid",
            Self::PlainClassification { .. } => "PlainClassification",
        }
    }
}

impl fmt::Display for ModelLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error from matching a model's outputs to a known layout or to its labels.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    #[error("unknown model output layout; outputs found: {}", join_outputs(.outputs))]
    Unknown { outputs: Vec<String> },

    #[error("output {output} has shape {shape}, expected {expected}")]
    UnexpectedShape {
        output: String,
        shape: String,
        expected: &'static str,
    },

    #[error(
        "grid output {GRID_OUTPUT} has {channels} channels, which is not {GRID_ANCHORS} anchors × (5 + classes) with at least one class"
    )]
    InvalidGridChannels { channels: u64 },

    #[error("the model's {layout} output has {classes} classes but {labels} labels were given")]
    LabelCountMismatch {
        layout: &'static str,
        classes: u64,
        labels: usize,
    },
}

impl LayoutError {
    /// Returns a stable CamelCase word for condition reasons and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unknown { .. } => "UnknownModelLayout",
            Self::UnexpectedShape { .. } | Self::InvalidGridChannels { .. } => {
                "UnexpectedOutputShape"
            }
            Self::LabelCountMismatch { .. } => "LabelCountMismatch",
        }
    }
}

fn join_outputs(outputs: &[String]) -> String {
    if outputs.is_empty() {
        return "none".to_owned();
    }
    outputs.join(", ")
}

/// Detects the output layout of a model from its signature.
pub fn detect(signature: &OnnxSignature) -> Result<ModelLayout, LayoutError> {
    let has = |name: &str| signature.output(name).is_some();

    if has(LEGACY_CLASS_LABEL_OUTPUT) && has(LEGACY_LOSS_OUTPUT) {
        return Ok(ModelLayout::CustomVisionClassificationLegacy);
    }

    if has(DETECTED_BOXES_OUTPUT) && has(DETECTED_SCORES_OUTPUT) && has(DETECTED_CLASSES_OUTPUT) {
        return Ok(ModelLayout::CustomVisionDetectionS1);
    }

    if let Some(grid) = signature.output(GRID_OUTPUT) {
        return detect_grid(grid);
    }

    if let [output] = signature.outputs.as_slice()
        && let Some(classes) = score_vector_classes(output)
    {
        let output_name = output.name.clone();
        return Ok(if output.name == CLASSIFICATION_OUTPUT {
            ModelLayout::CustomVisionClassification {
                output: output_name,
                classes,
            }
        } else {
            ModelLayout::PlainClassification {
                output: output_name,
                classes,
            }
        });
    }

    Err(LayoutError::Unknown {
        outputs: signature.outputs.iter().map(ToString::to_string).collect(),
    })
}

fn detect_grid(output: &ValueInfo) -> Result<ModelLayout, LayoutError> {
    let unexpected = || LayoutError::UnexpectedShape {
        output: output.name.clone(),
        shape: output.value_type.to_string(),
        expected: "a float tensor [1, anchors*(5+classes), height, width]",
    };

    let tensor = output
        .tensor()
        .filter(|tensor| tensor.element_type.is_float())
        .ok_or_else(unexpected)?;
    let Some([_, channels, _, _]) = tensor.shape.as_deref() else {
        return Err(unexpected());
    };

    let classes = match channels.value() {
        Some(channels) => {
            Some(grid_classes(channels).ok_or(LayoutError::InvalidGridChannels { channels })?)
        }
        None => None,
    };
    Ok(ModelLayout::CustomVisionDetectionGrid {
        anchors: GRID_ANCHORS,
        classes,
    })
}

/// Solves `channels = anchors * (5 + classes)` for at least one class.
fn grid_classes(channels: u64) -> Option<u64> {
    if !channels.is_multiple_of(GRID_ANCHORS) {
        return None;
    }
    let per_anchor = channels / GRID_ANCHORS;
    (per_anchor > GRID_BOX_VALUES).then(|| per_anchor - GRID_BOX_VALUES)
}

/// For a float tensor of shape `[N]` or `[B, N]` with a batch size of 1 or
/// dynamic, returns the class count N, or `Some(None)` when N is dynamic.
/// Returns `None` for any other value.
fn score_vector_classes(output: &ValueInfo) -> Option<Option<u64>> {
    let tensor = output
        .tensor()
        .filter(|tensor| tensor.element_type.is_float())?;

    match tensor.shape.as_deref()? {
        [classes] => Some(classes.value()),
        [batch, classes] if batch_is_one_or_dynamic(batch) => Some(classes.value()),
        _ => None,
    }
}

fn batch_is_one_or_dynamic(batch: &Dim) -> bool {
    batch.value().is_none_or(|size| size == 1)
}

/// Checks that the label count equals the class count the layout implies.
/// Layouts whose shapes do not tell the class count accept any non-empty list.
pub fn check_label_count(layout: &ModelLayout, labels: &[String]) -> Result<(), LayoutError> {
    match layout.class_count() {
        Some(classes) if usize::try_from(classes).ok() != Some(labels.len()) => {
            Err(LayoutError::LabelCountMismatch {
                layout: layout.name(),
                classes,
                labels: labels.len(),
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_channels_imply_class_count() {
        assert_eq!(grid_classes(30), Some(1));
        assert_eq!(grid_classes(5 * (5 + 3)), Some(3));
        assert_eq!(grid_classes(25), None);
        assert_eq!(grid_classes(31), None);
    }
}
