//! Classification decoders: one score tensor (Custom Vision's current
//! export and plain ONNX classifiers) and Custom Vision's older
//! `classLabel`/`loss` pair.

use super::{DecodeError, Prediction, float_tensor, index_labels, require, unexpected};
use crate::tensor::{ModelOutputs, OutputValue};

/// Output of Custom Vision's older classifier with one label-to-probability
/// map per image.
pub const LEGACY_LOSS_OUTPUT: &str = "loss";

/// Tolerance on each end of `[0, 1]` for values taken as probabilities,
/// which covers float16 rounding.
const PROBABILITY_TOLERANCE: f32 = 1e-3;

/// Decodes a score tensor of shape `[N]`, `[1, N]` or `[1, N, 1, 1]` into
/// one prediction per class, highest score first. Empty `labels` label the
/// classes `0` to `N - 1`.
pub fn decode_scores(
    output: &str,
    value: &OutputValue,
    labels: &[String],
) -> Result<Vec<Prediction>, DecodeError> {
    let (shape, scores) = float_tensor(output, value)?;
    if !is_single_vector(shape) {
        return Err(unexpected(
            output,
            value,
            "a score tensor of shape [N] or [1, N]",
        ));
    }
    let indices;
    let labels = if labels.is_empty() {
        indices = index_labels(scores.len());
        &indices
    } else {
        labels
    };
    if scores.len() != labels.len() {
        return Err(DecodeError::LabelCountMismatch {
            output: output.to_owned(),
            classes: scores.len(),
            labels: labels.len(),
        });
    }

    let probabilities = to_probabilities(scores);
    let predictions = labels
        .iter()
        .zip(probabilities)
        .map(|(label, score)| Prediction {
            label: label.clone(),
            score,
            bbox: None,
        })
        .collect();
    Ok(sorted_by_score(predictions))
}

/// Decodes the `loss` output of Custom Vision's older classifier: a
/// sequence with one map from label to probability. The labels come from
/// the map's keys, because ONNX Runtime returns the map sorted by key and
/// not in class order. `labels`, when given, must have as many entries.
pub fn decode_legacy(
    outputs: &ModelOutputs,
    labels: &[String],
) -> Result<Vec<Prediction>, DecodeError> {
    let value = require(outputs, LEGACY_LOSS_OUTPUT)?;
    let OutputValue::MapSequence(maps) = value else {
        return Err(unexpected(
            LEGACY_LOSS_OUTPUT,
            value,
            "a sequence of maps from label to probability",
        ));
    };
    let Some(map) = maps.first() else {
        return Err(unexpected(
            LEGACY_LOSS_OUTPUT,
            value,
            "a sequence with one map per image",
        ));
    };
    if !labels.is_empty() && labels.len() != map.len() {
        return Err(DecodeError::LabelCountMismatch {
            output: LEGACY_LOSS_OUTPUT.to_owned(),
            classes: map.len(),
            labels: labels.len(),
        });
    }

    let scores: Vec<f32> = map.iter().map(|(_, score)| *score).collect();
    let predictions = map
        .iter()
        .zip(to_probabilities(&scores))
        .map(|((label, _), score)| Prediction {
            label: label.clone(),
            score,
            bbox: None,
        })
        .collect();
    Ok(sorted_by_score(predictions))
}

/// Returns `values` unchanged when every value lies within `[0, 1]`, and
/// their softmax otherwise.
///
/// Custom Vision exports end in a softmax (multiclass projects) or a
/// sigmoid (multilabel projects), so their values are already
/// probabilities, and a sigmoid output need not sum to 1, so the sum is not
/// checked. A value below 0 or above 1 can only be a logit, as plain ONNX
/// classifiers often return. Logits that all happen to fall within
/// `[0, 1]` are taken as probabilities.
pub fn to_probabilities(values: &[f32]) -> Vec<f32> {
    let in_unit_range = values
        .iter()
        .all(|&value| (-PROBABILITY_TOLERANCE..=1.0 + PROBABILITY_TOLERANCE).contains(&value));
    if in_unit_range {
        return values.iter().map(|value| value.clamp(0.0, 1.0)).collect();
    }
    softmax(values)
}

/// Numerically stable softmax.
pub fn softmax(values: &[f32]) -> Vec<f32> {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exponentials: Vec<f32> = values.iter().map(|value| (value - max).exp()).collect();
    let sum: f32 = exponentials.iter().sum();
    exponentials.into_iter().map(|value| value / sum).collect()
}

fn is_single_vector(shape: &[usize]) -> bool {
    shape.iter().filter(|&&dim| dim != 1).count() <= 1
}

fn sorted_by_score(mut predictions: Vec<Prediction>) -> Vec<Prediction> {
    predictions.sort_by(|left, right| right.score.total_cmp(&left.score));
    predictions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn probabilities_pass_through() {
        let value = OutputValue::float(&[1, 4], vec![0.1, 0.7, 0.15, 0.05]);

        let predictions =
            decode_scores("model_output", &value, &labels(&["0", "90", "180", "270"])).unwrap();

        assert_eq!(predictions[0].label, "90");
        assert!((predictions[0].score - 0.7).abs() < 1e-6);
        assert_eq!(predictions[3].label, "270");
    }

    #[test]
    fn logits_get_softmax() {
        let value = OutputValue::float(&[1, 3], vec![2.0, 1.0, -1.0]);

        let predictions = decode_scores("logits", &value, &labels(&["a", "b", "c"])).unwrap();

        // softmax([2, 1, -1]) = [0.7054, 0.2595, 0.0351]
        assert_eq!(predictions[0].label, "a");
        assert!((predictions[0].score - 0.7054).abs() < 1e-4);
        assert!((predictions[1].score - 0.2595).abs() < 1e-4);
        assert!((predictions[2].score - 0.0351).abs() < 1e-4);
    }

    #[test]
    fn multilabel_sigmoid_kept() {
        let value = OutputValue::float(&[2], vec![0.9, 0.8]);

        let predictions = decode_scores("model_output", &value, &labels(&["cat", "dog"])).unwrap();

        assert!((predictions[0].score - 0.9).abs() < 1e-6);
        assert!((predictions[1].score - 0.8).abs() < 1e-6);
    }

    #[test]
    fn label_count_mismatch_names_both() {
        let value = OutputValue::float(&[1, 4], vec![0.25; 4]);

        let error = decode_scores("model_output", &value, &labels(&["a", "b", "c"])).unwrap_err();

        assert_eq!(
            error.to_string(),
            "model output \"model_output\" has 4 classes but 3 labels were given"
        );
    }

    #[test]
    fn no_labels_use_indices() {
        let value = OutputValue::float(&[1, 2], vec![0.3, 0.7]);

        let predictions = decode_scores("model_output", &value, &[]).unwrap();

        assert_eq!(predictions[0].label, "1");
        assert_eq!(predictions[1].label, "0");
    }

    #[test]
    fn batch_of_two_rejected() {
        let value = OutputValue::float(&[2, 2], vec![0.5; 4]);

        let error =
            decode_scores("model_output", &value, &labels(&["a", "b", "c", "d"])).unwrap_err();

        assert!(
            matches!(error, DecodeError::UnexpectedOutput { .. }),
            "{error}"
        );
    }

    #[test]
    fn legacy_map_uses_keys() {
        let mut outputs = ModelOutputs::default();
        outputs.insert(
            LEGACY_LOSS_OUTPUT,
            OutputValue::MapSequence(vec![vec![("cat".to_owned(), 0.2), ("dog".to_owned(), 0.8)]]),
        );

        let predictions = decode_legacy(&outputs, &[]).unwrap();

        assert_eq!(predictions[0].label, "dog");
        assert!((predictions[0].score - 0.8).abs() < 1e-6);
        assert_eq!(predictions[1].label, "cat");
    }

    #[test]
    fn legacy_label_count_checked() {
        let mut outputs = ModelOutputs::default();
        outputs.insert(
            LEGACY_LOSS_OUTPUT,
            OutputValue::MapSequence(vec![vec![("cat".to_owned(), 1.0)]]),
        );

        let error = decode_legacy(&outputs, &labels(&["cat", "dog"])).unwrap_err();

        assert_eq!(
            error,
            DecodeError::LabelCountMismatch {
                output: "loss".to_owned(),
                classes: 1,
                labels: 2
            }
        );
    }

    #[test]
    fn legacy_requires_loss() {
        let error = decode_legacy(&ModelOutputs::default(), &[]).unwrap_err();

        assert!(
            matches!(error, DecodeError::MissingOutput { .. }),
            "{error}"
        );
    }
}
