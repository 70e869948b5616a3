//! Non-maximum suppression as Custom Vision's published object detection
//! sample (`object_detection.py`, class `ObjectDetection`) does it.
//!
//! The pair of box and class with the highest score is selected first.
//! Every box whose IoU with the selected box exceeds the threshold, and the
//! selected box itself, then loses its score for that class only. So an
//! overlapping box of another class survives, and one box can be selected
//! again for a second class that still scores high enough.

use super::BoundingBox;

/// IoU above which a box is suppressed, from Custom Vision's sample.
pub const IOU_THRESHOLD: f32 = 0.45;

/// A detection that survived suppression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selected {
    pub bbox: BoundingBox,
    pub class: usize,
    pub score: f32,
}

/// Selects at most `max_detections` detections, highest score first, from
/// boxes with one score per class (`class_scores[i]` belongs to `boxes[i]`).
/// Selection stops when the best remaining score is below `min_score` or 0.
pub fn suppress(
    boxes: &[BoundingBox],
    mut class_scores: Vec<Vec<f32>>,
    min_score: f32,
    iou_threshold: f32,
    max_detections: usize,
) -> Vec<Selected> {
    let mut best: Vec<(usize, f32)> = class_scores
        .iter()
        .map(|scores| best_class(scores))
        .collect();
    let mut selected = Vec::new();

    while selected.len() < max_detections {
        let Some((index, (class, score))) = best
            .iter()
            .copied()
            .enumerate()
            .max_by(|(_, (_, left)), (_, (_, right))| left.total_cmp(right))
        else {
            break;
        };
        if score < min_score || score <= 0.0 {
            break;
        }

        let chosen = boxes[index];
        selected.push(Selected {
            bbox: chosen,
            class,
            score,
        });

        for (other, scores) in class_scores.iter_mut().enumerate() {
            if other == index || chosen.iou(&boxes[other]) > iou_threshold {
                scores[class] = 0.0;
                best[other] = best_class(scores);
            }
        }
    }
    selected
}

/// Index and value of the highest score; the first one wins a tie.
fn best_class(scores: &[f32]) -> (usize, f32) {
    scores
        .iter()
        .copied()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (class, score)| {
            if score > best.1 { (class, score) } else { best }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: f32, y: f32, size: f32) -> BoundingBox {
        BoundingBox {
            x_min: x,
            y_min: y,
            x_max: x + size,
            y_max: y + size,
        }
    }

    #[test]
    fn overlapping_same_class_suppressed() {
        let boxes = [square(0.1, 0.1, 0.2), square(0.12, 0.1, 0.2)];

        let selected = suppress(&boxes, vec![vec![0.9], vec![0.8]], 0.1, IOU_THRESHOLD, 10);

        assert_eq!(selected.len(), 1);
        assert_eq!(selected[0].bbox, boxes[0]);
        assert!((selected[0].score - 0.9).abs() < 1e-6);
    }

    #[test]
    fn distant_boxes_both_kept() {
        let boxes = [square(0.0, 0.0, 0.2), square(0.5, 0.5, 0.2)];

        let selected = suppress(&boxes, vec![vec![0.6], vec![0.7]], 0.1, IOU_THRESHOLD, 10);

        assert_eq!(selected.len(), 2);
        assert_eq!(selected[0].bbox, boxes[1]);
        assert_eq!(selected[1].bbox, boxes[0]);
    }

    #[test]
    fn overlapping_other_class_kept() {
        let boxes = [square(0.1, 0.1, 0.2), square(0.11, 0.1, 0.2)];

        let selected = suppress(
            &boxes,
            vec![vec![0.9, 0.0], vec![0.1, 0.8]],
            0.5,
            IOU_THRESHOLD,
            10,
        );

        assert_eq!(selected.len(), 2);
        assert_eq!(selected[0].class, 0);
        assert_eq!(selected[1].class, 1);
    }

    #[test]
    fn iou_below_threshold_kept() {
        // Two 0.2 x 0.1 boxes overlapping by 0.1 x 0.1 have IoU 1/3, below 0.45;
        // the third box has IoU 0.6 with the first and is suppressed.
        let wide = |x: f32| BoundingBox {
            x_min: x,
            y_min: 0.0,
            x_max: x + 0.2,
            y_max: 0.1,
        };
        let boxes = [wide(0.0), wide(0.1), wide(0.05)];

        let selected = suppress(
            &boxes,
            vec![vec![0.9], vec![0.8], vec![0.85]],
            0.1,
            IOU_THRESHOLD,
            10,
        );

        let kept: Vec<BoundingBox> = selected.iter().map(|detection| detection.bbox).collect();
        assert_eq!(kept, vec![wide(0.0), wide(0.1)]);
    }

    #[test]
    fn stops_at_min_score_and_max_detections() {
        let boxes = [
            square(0.0, 0.0, 0.1),
            square(0.3, 0.0, 0.1),
            square(0.6, 0.0, 0.1),
        ];
        let scores = || vec![vec![0.9], vec![0.5], vec![0.2]];

        assert_eq!(suppress(&boxes, scores(), 0.3, IOU_THRESHOLD, 10).len(), 2);
        assert_eq!(suppress(&boxes, scores(), 0.0, IOU_THRESHOLD, 1).len(), 1);
    }

    #[test]
    fn no_boxes_no_detections() {
        assert!(suppress(&[], Vec::new(), 0.1, IOU_THRESHOLD, 10).is_empty());
    }
}
