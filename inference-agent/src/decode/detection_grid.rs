//! Decoder for Custom Vision's older compact detection exports, whose one
//! output `model_outputs0` is a YOLOv2-style grid.
//!
//! The output has shape `[1, A * (5 + C), H, W]`. Channel `a * (5 + C) + k`
//! of grid cell (row, column) holds, for anchor `a`: `k = 0, 1` the box
//! centre offsets, `k = 2, 3` the log width and height relative to the
//! anchor, `k = 4` the objectness logit and `k >= 5` the class logits. The
//! decoding follows Custom Vision's published `object_detection.py`:
//! sigmoid for the offsets and objectness, exp times the anchor for the
//! size, softmax over the classes times the objectness for the scores, then
//! [`nms::suppress`] with an IoU threshold of 0.45.

use super::nms::{self, Selected};
use super::{BoundingBox, DecodeError, Prediction, float_tensor, label_at, require, unexpected};
use crate::decode::classification::softmax;
use crate::tensor::ModelOutputs;

/// Name of the grid output.
pub const GRID_OUTPUT: &str = "model_outputs0";

/// Anchor sizes (width, height) in grid cells, from Custom Vision's sample.
pub const CUSTOM_VISION_ANCHORS: [[f32; 2]; 5] = [
    [0.573, 0.677],
    [1.87, 2.06],
    [3.34, 5.47],
    [7.88, 3.53],
    [9.77, 9.17],
];

/// Cap on detections per frame, as in Custom Vision's ONNX sample reader.
pub const MAX_DETECTIONS: usize = 64;

/// Values per anchor before the class logits.
const BOX_VALUES: usize = 5;

/// Decoding settings of the grid detector.
#[derive(Debug, Clone, PartialEq)]
pub struct GridParams {
    pub anchors: Vec<[f32; 2]>,
    pub iou_threshold: f32,
    pub max_detections: usize,
}

impl Default for GridParams {
    fn default() -> Self {
        Self {
            anchors: CUSTOM_VISION_ANCHORS.to_vec(),
            iou_threshold: nms::IOU_THRESHOLD,
            max_detections: MAX_DETECTIONS,
        }
    }
}

/// The grid's dimensions.
#[derive(Debug, Clone, Copy)]
struct Grid {
    anchors: usize,
    classes: usize,
    height: usize,
    width: usize,
}

impl Grid {
    fn channels_per_anchor(&self) -> usize {
        BOX_VALUES + self.classes
    }

    /// Index of `channel` at (row, column) in the `[1, C, H, W]` data.
    fn index(&self, channel: usize, row: usize, column: usize) -> usize {
        (channel * self.height + row) * self.width + column
    }
}

/// Decodes the grid into detections scoring at least `min_score`, with
/// boxes clipped to the frame.
pub fn decode(
    outputs: &ModelOutputs,
    labels: &[String],
    params: &GridParams,
    min_score: f32,
) -> Result<Vec<Prediction>, DecodeError> {
    let value = require(outputs, GRID_OUTPUT)?;
    let (shape, data) = float_tensor(GRID_OUTPUT, value)?;
    let expected = "a float tensor [1, anchors * (5 + classes), height, width]";

    let &[1, channels, height, width] = shape else {
        return Err(unexpected(GRID_OUTPUT, value, expected));
    };
    let anchors = params.anchors.len();
    if anchors == 0 || channels % anchors != 0 || channels / anchors <= BOX_VALUES {
        return Err(unexpected(GRID_OUTPUT, value, expected));
    }
    let grid = Grid {
        anchors,
        classes: channels / anchors - BOX_VALUES,
        height,
        width,
    };
    if !labels.is_empty() && grid.classes != labels.len() {
        return Err(DecodeError::LabelCountMismatch {
            output: GRID_OUTPUT.to_owned(),
            classes: grid.classes,
            labels: labels.len(),
        });
    }

    let (boxes, class_scores) = candidates(&grid, data, &params.anchors, min_score);
    let selected = nms::suppress(
        &boxes,
        class_scores,
        min_score,
        params.iou_threshold,
        params.max_detections,
    );

    selected
        .into_iter()
        .map(|detection| to_prediction(detection, labels))
        .collect()
}

/// Decodes every cell and anchor, keeping those whose best class score
/// reaches `min_score`.
fn candidates(
    grid: &Grid,
    data: &[f32],
    anchors: &[[f32; 2]],
    min_score: f32,
) -> (Vec<BoundingBox>, Vec<Vec<f32>>) {
    let mut boxes = Vec::new();
    let mut class_scores = Vec::new();

    for row in 0..grid.height {
        for column in 0..grid.width {
            for (anchor, &[anchor_width, anchor_height]) in anchors.iter().enumerate() {
                let base = anchor * grid.channels_per_anchor();
                let value = |offset: usize| data[grid.index(base + offset, row, column)];

                let objectness = sigmoid(value(4));
                let logits: Vec<f32> = (0..grid.classes)
                    .map(|class| value(BOX_VALUES + class))
                    .collect();
                let scores: Vec<f32> = softmax(&logits)
                    .into_iter()
                    .map(|p| p * objectness)
                    .collect();
                if scores.iter().all(|&score| score < min_score) {
                    continue;
                }

                let center_x = (sigmoid(value(0)) + column as f32) / grid.width as f32;
                let center_y = (sigmoid(value(1)) + row as f32) / grid.height as f32;
                let box_width = value(2).exp() * anchor_width / grid.width as f32;
                let box_height = value(3).exp() * anchor_height / grid.height as f32;
                boxes.push(BoundingBox {
                    x_min: center_x - box_width / 2.0,
                    y_min: center_y - box_height / 2.0,
                    x_max: center_x + box_width / 2.0,
                    y_max: center_y + box_height / 2.0,
                });
                class_scores.push(scores);
            }
        }
    }
    debug_assert_eq!(grid.anchors, anchors.len());
    (boxes, class_scores)
}

fn to_prediction(detection: Selected, labels: &[String]) -> Result<Prediction, DecodeError> {
    let class = i64::try_from(detection.class).unwrap_or(i64::MAX);
    Ok(Prediction {
        label: label_at(GRID_OUTPUT, labels, class)?,
        score: detection.score,
        bbox: Some(detection.bbox.clipped()),
    })
}

fn sigmoid(value: f32) -> f32 {
    1.0 / (1.0 + (-value).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::OutputValue;

    const ANCHORS: usize = 5;
    const CLASSES: usize = 2;
    const SIZE: usize = 2;

    /// Builds a 2 x 2 grid with two classes where every anchor has objectness
    /// logit -20 (score below 1e-8) unless `set` changes it.
    fn grid_outputs(set: &[(usize, usize, usize, [f32; 7])]) -> ModelOutputs {
        let channels = ANCHORS * (BOX_VALUES + CLASSES);
        let grid = Grid {
            anchors: ANCHORS,
            classes: CLASSES,
            height: SIZE,
            width: SIZE,
        };
        let mut data = vec![0.0; channels * SIZE * SIZE];
        for anchor in 0..ANCHORS {
            for row in 0..SIZE {
                for column in 0..SIZE {
                    data[grid.index(anchor * 7 + 4, row, column)] = -20.0;
                }
            }
        }
        for &(row, column, anchor, values) in set {
            for (offset, value) in values.into_iter().enumerate() {
                data[grid.index(anchor * 7 + offset, row, column)] = value;
            }
        }

        let mut outputs = ModelOutputs::default();
        outputs.insert(
            GRID_OUTPUT,
            OutputValue::float(&[1, channels, SIZE, SIZE], data),
        );
        outputs
    }

    fn labels() -> Vec<String> {
        vec!["cat".to_owned(), "dog".to_owned()]
    }

    fn assert_close(actual: f32, expected: f32) {
        assert!((actual - expected).abs() < 1e-4, "{actual} != {expected}");
    }

    #[test]
    fn decodes_hand_computed_cell() {
        // Row 1, column 0, anchor 1 (1.87 x 2.06 cells): offsets 0 give the
        // cell centre (0.25, 0.75), sizes 0 give 1.87/2 x 2.06/2 = 0.935 x 1.03,
        // objectness sigmoid(2) = 0.880797, classes softmax([1, 0]) =
        // [0.731059, 0.268941], so "cat" scores 0.643914.
        let outputs = grid_outputs(&[(1, 0, 1, [0.0, 0.0, 0.0, 0.0, 2.0, 1.0, 0.0])]);

        let predictions = decode(&outputs, &labels(), &GridParams::default(), 0.5).unwrap();

        assert_eq!(predictions.len(), 1);
        assert_eq!(predictions[0].label, "cat");
        assert_close(predictions[0].score, 0.643_914);
        let bbox = predictions[0].bbox.unwrap();
        assert_close(bbox.x_min, 0.0); // 0.25 - 0.4675 = -0.2175, clipped
        assert_close(bbox.y_min, 0.235); // 0.75 - 0.515
        assert_close(bbox.x_max, 0.7175); // 0.25 + 0.4675
        assert_close(bbox.y_max, 1.0); // 0.75 + 0.515 = 1.265, clipped
    }

    #[test]
    fn offsets_and_sizes_use_sigmoid_and_exp() {
        // Row 0, column 1, anchor 0 (0.573 x 0.677 cells): tx = ln 3 gives
        // sigmoid 0.75, so centre x = (0.75 + 1) / 2 = 0.875; ty = -ln 3 gives
        // 0.25, so centre y = 0.125; tw = ln 2 doubles the width to
        // 1.146 / 2 = 0.573; th = 0 keeps 0.677 / 2 = 0.3385. Objectness
        // logit 10 (0.999955) and logits [0, 3] give "dog" 0.952538.
        let ln3 = 3f32.ln();
        let outputs = grid_outputs(&[(0, 1, 0, [ln3, -ln3, 2f32.ln(), 0.0, 10.0, 0.0, 3.0])]);

        let predictions = decode(&outputs, &labels(), &GridParams::default(), 0.5).unwrap();

        assert_eq!(predictions.len(), 1);
        assert_eq!(predictions[0].label, "dog");
        assert_close(predictions[0].score, 0.952_538);
        let bbox = predictions[0].bbox.unwrap();
        assert_close(bbox.x_min, 0.875 - 0.2865);
        assert_close(bbox.y_min, 0.0); // 0.125 - 0.16925 < 0, clipped
        assert_close(bbox.x_max, 1.0); // 0.875 + 0.2865 > 1, clipped
        assert_close(bbox.y_max, 0.125 + 0.169_25);
    }

    #[test]
    fn overlapping_anchors_suppressed() {
        // Two anchors of one cell with the same box and class: NMS keeps the stronger.
        let outputs = grid_outputs(&[
            (0, 0, 2, [0.0, 0.0, 0.0, 0.0, 3.0, 2.0, 0.0]),
            (
                0,
                0,
                2 + 1,
                [
                    0.0,
                    0.0,
                    (3.34f32 / 7.88).ln(),
                    (5.47f32 / 3.53).ln(),
                    1.0,
                    2.0,
                    0.0,
                ],
            ),
        ]);

        let predictions = decode(&outputs, &labels(), &GridParams::default(), 0.3).unwrap();

        assert_eq!(predictions.len(), 1);
        // sigmoid(3) * softmax([2, 0])[0] = 0.952574 * 0.880797
        assert_close(predictions[0].score, 0.839_017);
    }

    #[test]
    fn nothing_above_threshold() {
        let outputs = grid_outputs(&[]);

        assert!(
            decode(&outputs, &labels(), &GridParams::default(), 0.1)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn label_count_must_match_classes() {
        let outputs = grid_outputs(&[]);

        let error =
            decode(&outputs, &["only".to_owned()], &GridParams::default(), 0.1).unwrap_err();

        assert_eq!(
            error.to_string(),
            "model output \"model_outputs0\" has 2 classes but 1 labels were given"
        );
    }

    #[test]
    fn channels_not_divisible_rejected() {
        let mut outputs = ModelOutputs::default();
        outputs.insert(
            GRID_OUTPUT,
            OutputValue::float(&[1, 31, 1, 1], vec![0.0; 31]),
        );

        let error = decode(&outputs, &labels(), &GridParams::default(), 0.1).unwrap_err();

        assert!(
            matches!(error, DecodeError::UnexpectedOutput { .. }),
            "{error}"
        );
    }
}
