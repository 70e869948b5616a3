//! Turning an RGB frame into the tensor a model expects, following the
//! model's input signature and its image metadata.
//!
//! Metadata keys are those of ONNX's image metadata convention and Custom
//! Vision's `metadata_properties.json`. When a key is missing the default
//! is Custom Vision's: `Bgr8` pixels with values from 0 to 255, no mean or
//! standard deviation normalisation. Custom Vision's older exports were
//! made for Windows ML, which feeds `Bgr8` frames with 0-255 values.

use std::borrow::Cow;
use std::collections::BTreeMap;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use half::f16;
use image::RgbImage;

use crate::runtime::InputSignature;
use crate::tensor::{InputData, InputElement, InputTensor};

/// ONNX image metadata: channel order, such as `Bgr8`, `Rgb8` or `Gray8`.
pub const PIXEL_FORMAT_KEY: &str = "Image.BitmapPixelFormat";
/// ONNX image metadata: value range, such as `NominalRange_0_255`.
pub const PIXEL_RANGE_KEY: &str = "Image.NominalPixelRange";
/// Custom Vision metadata: per-channel mean subtracted after range scaling.
pub const NORMALIZE_MEAN_KEY: &str = "CustomVision.Preprocess.NormalizeMean";
/// Custom Vision metadata: per-channel divisor applied after the mean.
pub const NORMALIZE_STD_KEY: &str = "CustomVision.Preprocess.NormalizeStd";
/// Custom Vision metadata: input width for models with a dynamic width.
pub const TARGET_WIDTH_KEY: &str = "CustomVision.Preprocess.TargetWidth";
/// Custom Vision metadata: input height for models with a dynamic height.
pub const TARGET_HEIGHT_KEY: &str = "CustomVision.Preprocess.TargetHeight";
/// Custom Vision metadata: how the frame is fitted to the input size.
pub const RESIZE_METHOD_KEY: &str = "CustomVision.Preprocess.ResizeMethod";
/// Custom Vision metadata: crop before resizing.
pub const CROP_METHOD_KEY: &str = "CustomVision.Preprocess.CropMethod";

/// Input width and height used when the model's are dynamic and the
/// metadata has no target size: 224, the size of Custom Vision's compact
/// classifiers and of most ImageNet-style classifiers.
pub const DEFAULT_INPUT_SIZE: usize = 224;

/// The resize filter: a bilinear convolution whose support widens when
/// shrinking, so every source pixel contributes, as Pillow's `BILINEAR`
/// does. Custom Vision's sample readers stretch the frame to the input size
/// with Pillow, and the expected results of this repository's model
/// fixtures were computed with Pillow's `BILINEAR`. Pillow's default filter
/// (`BICUBIC`) would shift scores by a few thousandths.
pub const RESIZE_FILTER: FilterType = FilterType::Bilinear;

/// Memory layout of an image tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorLayout {
    /// `[batch, channels, height, width]`, Custom Vision's and most ONNX models'.
    Nchw,
    /// `[batch, height, width, channels]`, common in TensorFlow conversions.
    Nhwc,
}

/// Channels of the model input, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Rgb8,
    Bgr8,
    Rgba8,
    Bgra8,
    Gray8,
}

impl PixelFormat {
    fn parse(value: &str) -> Option<Self> {
        match value {
            "Rgb8" => Some(Self::Rgb8),
            "Bgr8" => Some(Self::Bgr8),
            "Rgba8" => Some(Self::Rgba8),
            "Bgra8" => Some(Self::Bgra8),
            "Gray8" => Some(Self::Gray8),
            _ => None,
        }
    }

    fn channels(self) -> usize {
        match self {
            Self::Gray8 => 1,
            Self::Rgb8 | Self::Bgr8 => 3,
            Self::Rgba8 | Self::Bgra8 => 4,
        }
    }

    /// Returns where input channel `channel` takes its value from an RGB pixel.
    fn channel_source(self, channel: usize) -> ChannelSource {
        match (self, channel) {
            (Self::Rgb8 | Self::Rgba8, 0) | (Self::Bgr8 | Self::Bgra8, 2) => ChannelSource::Rgb(0),
            (Self::Rgb8 | Self::Rgba8 | Self::Bgr8 | Self::Bgra8, 1) => ChannelSource::Rgb(1),
            (Self::Rgb8 | Self::Rgba8, 2) | (Self::Bgr8 | Self::Bgra8, 0) => ChannelSource::Rgb(2),
            (Self::Gray8, _) => ChannelSource::Luma,
            _ => ChannelSource::Opaque,
        }
    }
}

/// Origin of one input channel's 8-bit value in an RGB pixel.
#[derive(Debug, Clone, Copy)]
enum ChannelSource {
    /// The red (0), green (1) or blue (2) component.
    Rgb(usize),
    /// The pixel's luma, for gray inputs.
    Luma,
    /// A fully opaque alpha value, 255, because frames have no alpha.
    Opaque,
}

impl ChannelSource {
    fn value(self, pixel: &[u8]) -> u8 {
        match self {
            Self::Rgb(component) => pixel[component],
            Self::Luma => luma(pixel[0], pixel[1], pixel[2]),
            Self::Opaque => u8::MAX,
        }
    }
}

/// Range of input values, from ONNX's `Image.NominalPixelRange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelRange {
    /// `NominalRange_0_255`: 0 to 255.
    ZeroTo255,
    /// `Normalized_0_1`: 0 to 1.
    ZeroToOne,
    /// `Normalized_1_1`: -1 to 1.
    MinusOneToOne,
    /// `NominalRange_16_235`: video levels, 16 to 235.
    Studio16To235,
}

impl PixelRange {
    fn parse(value: &str) -> Option<Self> {
        match value {
            "NominalRange_0_255" => Some(Self::ZeroTo255),
            "Normalized_0_1" => Some(Self::ZeroToOne),
            "Normalized_1_1" => Some(Self::MinusOneToOne),
            "NominalRange_16_235" => Some(Self::Studio16To235),
            _ => None,
        }
    }

    fn scale(self, value: f32) -> f32 {
        match self {
            Self::ZeroTo255 => value,
            Self::ZeroToOne => value / 255.0,
            Self::MinusOneToOne => value / 127.5 - 1.0,
            Self::Studio16To235 => 16.0 + value * (219.0 / 255.0),
        }
    }
}

/// Reason a model's input cannot be fed from camera frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreprocessError {
    #[error("the model has {0} inputs; the agent feeds models with exactly one image input")]
    InputCount(usize),

    #[error(
        "input {name:?} has element type {element}; the agent feeds float32 or float16 image inputs"
    )]
    ElementType { name: String, element: String },

    #[error(
        "input {name:?} has shape {shape}; expected [1, channels, height, width] or [1, height, width, channels] with 1, 3 or 4 channels"
    )]
    Shape { name: String, shape: String },

    #[error(
        "input {name:?} has a fixed batch size of {batch}; the agent feeds one frame at a time"
    )]
    Batch { name: String, batch: usize },

    #[error("metadata {key}={value:?} is not valid: expected {expected}")]
    Metadata {
        key: &'static str,
        value: String,
        expected: &'static str,
    },

    #[error(
        "metadata {PIXEL_FORMAT_KEY}={format:?} has {format_channels} channels but input {name:?} has {input_channels}"
    )]
    ChannelMismatch {
        name: String,
        format: String,
        format_channels: usize,
        input_channels: usize,
    },
}

/// Pre-processing that turns frames into input tensors for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInput {
    pub name: String,
    pub width: usize,
    pub height: usize,
    pub layout: TensorLayout,
    pub format: PixelFormat,
    pub range: PixelRange,
    /// Per-channel mean in input channel order, subtracted after scaling.
    pub mean: Vec<f32>,
    /// Per-channel divisor in input channel order, applied after the mean.
    pub std: Vec<f32>,
    pub element: InputElement,
    /// Metadata keys that were missing and took their default, for the log.
    pub defaults_used: Vec<&'static str>,
}

impl ImageInput {
    /// Derives the pre-processing from the model's inputs and metadata.
    pub fn from_model(
        inputs: &[InputSignature],
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self, PreprocessError> {
        let [input] = inputs else {
            return Err(PreprocessError::InputCount(inputs.len()));
        };
        let element = input.element.ok_or_else(|| PreprocessError::ElementType {
            name: input.name.clone(),
            element: input.element_name.clone(),
        })?;

        let mut defaults_used = Vec::new();
        let dims = read_dims(input)?;
        let format = read_format(metadata, dims.channels, &input.name, &mut defaults_used)?;
        let range = read_range(metadata, &mut defaults_used)?;
        let channels = format.channels();
        let mean = read_channel_list(metadata, NORMALIZE_MEAN_KEY, channels, 0.0)?;
        let std = read_channel_list(metadata, NORMALIZE_STD_KEY, channels, 1.0)?;
        let width = dims.width.map_or_else(
            || target_size(metadata, TARGET_WIDTH_KEY, &mut defaults_used),
            Ok,
        )?;
        let height = dims.height.map_or_else(
            || target_size(metadata, TARGET_HEIGHT_KEY, &mut defaults_used),
            Ok,
        )?;
        warn_unsupported_fitting(metadata);

        Ok(Self {
            name: input.name.clone(),
            width,
            height,
            layout: dims.layout,
            format,
            range,
            mean,
            std,
            element,
            defaults_used,
        })
    }

    /// Resizes `frame` to the input size and converts it to the input tensor.
    pub fn prepare(&self, frame: &RgbImage) -> InputTensor {
        let resized = self.resize(frame);
        let channels = self.format.channels();
        let plane = self.width * self.height;
        let mut values = vec![0.0f32; plane * channels];

        for channel in 0..channels {
            let source = self.format.channel_source(channel);
            let table = self.value_table(channel);
            let pixels = resized.chunks_exact(3);
            match self.layout {
                TensorLayout::Nchw => {
                    let destination = &mut values[channel * plane..(channel + 1) * plane];
                    for (value, pixel) in destination.iter_mut().zip(pixels) {
                        *value = table[usize::from(source.value(pixel))];
                    }
                }
                TensorLayout::Nhwc => {
                    let destination = values[channel..].iter_mut().step_by(channels);
                    for (value, pixel) in destination.zip(pixels) {
                        *value = table[usize::from(source.value(pixel))];
                    }
                }
            }
        }

        let shape = match self.layout {
            TensorLayout::Nchw => vec![1, channels, self.height, self.width],
            TensorLayout::Nhwc => vec![1, self.height, self.width, channels],
        };
        let data = match self.element {
            InputElement::Float32 => InputData::Float32(values),
            InputElement::Float16 => {
                InputData::Float16(values.into_iter().map(f16::from_f32).collect())
            }
        };
        InputTensor {
            name: self.name.clone(),
            shape,
            data,
        }
    }

    /// Returns the input value of `channel` for each 8-bit value, after
    /// range scaling, mean and standard deviation.
    fn value_table(&self, channel: usize) -> [f32; 256] {
        std::array::from_fn(|raw| {
            let raw = f32::from(u8::try_from(raw).unwrap_or(u8::MAX));
            (self.range.scale(raw) - self.mean[channel]) / self.std[channel]
        })
    }

    /// Returns the RGB bytes of `frame` stretched to the input size.
    fn resize<'frame>(&self, frame: &'frame RgbImage) -> Cow<'frame, [u8]> {
        let width = u32::try_from(self.width).unwrap_or(u32::MAX);
        let height = u32::try_from(self.height).unwrap_or(u32::MAX);
        if frame.width() == width && frame.height() == height {
            return Cow::Borrowed(frame.as_raw());
        }

        let source = ImageRef::new(
            frame.width(),
            frame.height(),
            frame.as_raw(),
            PixelType::U8x3,
        )
        .expect("an RgbImage buffer contains width x height RGB pixels");
        let mut resized = Image::new(width, height, PixelType::U8x3);
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(RESIZE_FILTER));
        Resizer::new()
            .resize(&source, &mut resized, &options)
            .expect("resizing between two U8x3 images without cropping cannot fail");
        Cow::Owned(resized.into_vec())
    }
}

struct Dims {
    layout: TensorLayout,
    channels: Option<usize>,
    width: Option<usize>,
    height: Option<usize>,
}

/// Reads layout and sizes from `[N, C, H, W]` or `[N, H, W, C]`. A shape
/// that fits both, such as `[1, 3, 3, 3]`, or whose dimensions are all
/// dynamic, is read as NCHW.
fn read_dims(input: &InputSignature) -> Result<Dims, PreprocessError> {
    let shape_error = || PreprocessError::Shape {
        name: input.name.clone(),
        shape: format_shape(&input.shape),
    };
    let &[batch, second, third, fourth] = input.shape.as_slice() else {
        return Err(shape_error());
    };
    if let Some(batch) = batch.filter(|&batch| batch != 1) {
        return Err(PreprocessError::Batch {
            name: input.name.clone(),
            batch,
        });
    }

    let is_channels = |dim: Option<usize>| matches!(dim, Some(1 | 3 | 4));
    let is_color = |dim: Option<usize>| matches!(dim, Some(3 | 4));
    let channels_last = if is_color(fourth) {
        !is_color(second)
    } else {
        fourth == Some(1) && !is_channels(second)
    };
    if channels_last {
        return Ok(Dims {
            layout: TensorLayout::Nhwc,
            channels: fourth,
            height: second,
            width: third,
        });
    }
    if second.is_some() && !is_channels(second) {
        return Err(shape_error());
    }
    Ok(Dims {
        layout: TensorLayout::Nchw,
        channels: second,
        height: third,
        width: fourth,
    })
}

fn read_format(
    metadata: &BTreeMap<String, String>,
    input_channels: Option<usize>,
    name: &str,
    defaults_used: &mut Vec<&'static str>,
) -> Result<PixelFormat, PreprocessError> {
    let format = match metadata.get(PIXEL_FORMAT_KEY) {
        Some(value) => PixelFormat::parse(value).ok_or_else(|| PreprocessError::Metadata {
            key: PIXEL_FORMAT_KEY,
            value: value.clone(),
            expected: "Rgb8, Bgr8, Rgba8, Bgra8 or Gray8",
        })?,
        None if input_channels == Some(1) => PixelFormat::Gray8,
        None => {
            defaults_used.push(PIXEL_FORMAT_KEY);
            PixelFormat::Bgr8
        }
    };

    match input_channels {
        Some(channels) if channels != format.channels() => Err(PreprocessError::ChannelMismatch {
            name: name.to_owned(),
            format: metadata
                .get(PIXEL_FORMAT_KEY)
                .cloned()
                .unwrap_or_else(|| format!("{format:?}")),
            format_channels: format.channels(),
            input_channels: channels,
        }),
        _ => Ok(format),
    }
}

fn read_range(
    metadata: &BTreeMap<String, String>,
    defaults_used: &mut Vec<&'static str>,
) -> Result<PixelRange, PreprocessError> {
    let Some(value) = metadata.get(PIXEL_RANGE_KEY) else {
        defaults_used.push(PIXEL_RANGE_KEY);
        return Ok(PixelRange::ZeroTo255);
    };
    PixelRange::parse(value).ok_or_else(|| PreprocessError::Metadata {
        key: PIXEL_RANGE_KEY,
        value: value.clone(),
        expected: "NominalRange_0_255, Normalized_0_1, Normalized_1_1 or NominalRange_16_235",
    })
}

/// Reads a list such as `[0.485, 0.456, 0.406]`; a single value applies to
/// every channel.
fn read_channel_list(
    metadata: &BTreeMap<String, String>,
    key: &'static str,
    channels: usize,
    default: f32,
) -> Result<Vec<f32>, PreprocessError> {
    let Some(value) = metadata.get(key) else {
        return Ok(vec![default; channels]);
    };
    let invalid = || PreprocessError::Metadata {
        key,
        value: value.clone(),
        expected: "a list of numbers with one value per input channel, such as [0.485, 0.456, 0.406]",
    };

    let numbers: Vec<f32> = value
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|part| part.trim().parse::<f32>().map_err(|_| invalid()))
        .collect::<Result<_, _>>()?;
    let valid = numbers.iter().all(|number| number.is_finite())
        && (key != NORMALIZE_STD_KEY || numbers.iter().all(|&n| n != 0.0));
    match numbers.len() {
        _ if !valid => Err(invalid()),
        1 => Ok(vec![numbers[0]; channels]),
        count if count == channels => Ok(numbers),
        _ => Err(invalid()),
    }
}

fn target_size(
    metadata: &BTreeMap<String, String>,
    key: &'static str,
    defaults_used: &mut Vec<&'static str>,
) -> Result<usize, PreprocessError> {
    let size = match metadata.get(key) {
        Some(value) => value
            .trim()
            .parse::<usize>()
            .map_err(|_| PreprocessError::Metadata {
                key,
                value: value.clone(),
                expected: "a whole number of pixels",
            })?,
        None => 0,
    };
    if size > 0 {
        return Ok(size);
    }
    defaults_used.push(key);
    Ok(DEFAULT_INPUT_SIZE)
}

/// Custom Vision exports use `ResizeMethod: Stretch` and `CropMethod:
/// NoCrop`, which is what [`ImageInput::prepare`] does.
fn warn_unsupported_fitting(metadata: &BTreeMap<String, String>) {
    for (key, supported) in [(RESIZE_METHOD_KEY, "Stretch"), (CROP_METHOD_KEY, "NoCrop")] {
        if let Some(value) = metadata
            .get(key)
            .filter(|value| value.as_str() != supported)
        {
            // NOTE: Custom Vision documents no other values; frames are stretched without a crop regardless.
            tracing::warn!(key, value = %value, "Unsupported pre-processing metadata, stretching the whole frame");
        }
    }
}

fn format_shape(shape: &[Option<usize>]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|dim| dim.map_or_else(|| "?".to_owned(), |dim| dim.to_string()))
        .collect();
    format!("[{}]", dims.join(", "))
}

/// ITU-R BT.601 luma, the weights ONNX's `Gray8` convention and Pillow's
/// `convert("L")` use.
fn luma(red: u8, green: u8, blue: u8) -> u8 {
    let luma = 0.299 * f32::from(red) + 0.587 * f32::from(green) + 0.114 * f32::from(blue);
    luma.round() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature(shape: &[Option<usize>]) -> InputSignature {
        InputSignature {
            name: "data".to_owned(),
            element: Some(InputElement::Float32),
            element_name: "f32".to_owned(),
            shape: shape.to_vec(),
        }
    }

    fn metadata(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// Builds a 2 x 1 frame: a red pixel, then a blue one.
    fn red_blue() -> RgbImage {
        RgbImage::from_raw(2, 1, vec![255, 0, 0, 0, 0, 255]).unwrap()
    }

    fn values(tensor: &InputTensor) -> &[f32] {
        match &tensor.data {
            InputData::Float32(values) => values,
            InputData::Float16(_) => panic!("expected float32"),
        }
    }

    #[test]
    fn defaults_are_bgr_0_255_nchw() {
        let input = ImageInput::from_model(
            &[signature(&[Some(1), Some(3), Some(1), Some(2)])],
            &BTreeMap::new(),
        )
        .unwrap();

        let tensor = input.prepare(&red_blue());

        assert_eq!(tensor.shape, vec![1, 3, 1, 2]);
        // Planes B, G, R; pixels red then blue.
        assert_eq!(values(&tensor), &[0.0, 255.0, 0.0, 0.0, 255.0, 0.0]);
        assert_eq!(input.defaults_used, vec![PIXEL_FORMAT_KEY, PIXEL_RANGE_KEY]);
    }

    #[test]
    fn rgb_unit_range_nhwc() {
        let metadata = metadata(&[
            (PIXEL_FORMAT_KEY, "Rgb8"),
            (PIXEL_RANGE_KEY, "Normalized_0_1"),
        ]);
        let input =
            ImageInput::from_model(&[signature(&[None, Some(1), Some(2), Some(3)])], &metadata)
                .unwrap();

        let tensor = input.prepare(&red_blue());

        assert_eq!(input.layout, TensorLayout::Nhwc);
        assert_eq!(tensor.shape, vec![1, 1, 2, 3]);
        assert_eq!(values(&tensor), &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn minus_one_to_one_range() {
        let metadata = metadata(&[
            (PIXEL_FORMAT_KEY, "Rgb8"),
            (PIXEL_RANGE_KEY, "Normalized_1_1"),
        ]);
        let input = ImageInput::from_model(
            &[signature(&[Some(1), Some(3), Some(1), Some(2)])],
            &metadata,
        )
        .unwrap();

        let tensor = input.prepare(&red_blue());

        assert_eq!(values(&tensor), &[1.0, -1.0, -1.0, -1.0, -1.0, 1.0]);
    }

    #[test]
    fn mean_and_std_per_channel() {
        let metadata = metadata(&[
            (PIXEL_FORMAT_KEY, "Bgr8"),
            (PIXEL_RANGE_KEY, "Normalized_0_1"),
            (NORMALIZE_MEAN_KEY, "[0.5, 0.25, 0.0]"),
            (NORMALIZE_STD_KEY, "[0.5, 0.5, 2.0]"),
        ]);
        let input = ImageInput::from_model(
            &[signature(&[Some(1), Some(3), Some(1), Some(2)])],
            &metadata,
        )
        .unwrap();

        let tensor = input.prepare(&red_blue());

        // B plane: (0 - 0.5) / 0.5, (1 - 0.5) / 0.5; G: (0 - 0.25) / 0.5; R: 1 / 2, 0 / 2.
        assert_eq!(values(&tensor), &[-1.0, 1.0, -0.5, -0.5, 0.5, 0.0]);
    }

    #[test]
    fn bgra_input_gets_opaque_alpha() {
        let metadata = metadata(&[(PIXEL_FORMAT_KEY, "Bgra8")]);
        let input = ImageInput::from_model(
            &[signature(&[Some(1), Some(1), Some(2), Some(4)])],
            &metadata,
        )
        .unwrap();

        let tensor = input.prepare(&red_blue());

        assert_eq!(input.layout, TensorLayout::Nhwc);
        assert_eq!(
            values(&tensor),
            &[0.0, 0.0, 255.0, 255.0, 255.0, 0.0, 0.0, 255.0]
        );
    }

    #[test]
    fn float16_input_converted() {
        let mut signature = signature(&[Some(1), Some(3), Some(1), Some(2)]);
        signature.element = Some(InputElement::Float16);
        let input = ImageInput::from_model(&[signature], &BTreeMap::new()).unwrap();

        let tensor = input.prepare(&red_blue());

        let InputData::Float16(values) = tensor.data else {
            panic!("expected float16")
        };
        assert_eq!(values[1].to_f32(), 255.0);
    }

    #[test]
    fn dynamic_size_uses_target_metadata() {
        let metadata = metadata(&[(TARGET_WIDTH_KEY, "320"), (TARGET_HEIGHT_KEY, "0")]);
        let input =
            ImageInput::from_model(&[signature(&[None, Some(3), None, None])], &metadata).unwrap();

        assert_eq!(input.width, 320);
        assert_eq!(input.height, DEFAULT_INPUT_SIZE);
        assert!(input.defaults_used.contains(&TARGET_HEIGHT_KEY));
    }

    #[test]
    fn resize_stretches_to_input() {
        let input = ImageInput::from_model(
            &[signature(&[Some(1), Some(3), Some(4), Some(8)])],
            &BTreeMap::new(),
        )
        .unwrap();
        let frame = RgbImage::from_pixel(16, 16, image::Rgb([10, 20, 30]));

        let tensor = input.prepare(&frame);

        assert_eq!(tensor.shape, vec![1, 3, 4, 8]);
        assert!(values(&tensor)[..32].iter().all(|&blue| blue == 30.0));
    }

    #[test]
    fn gray_input_uses_luma() {
        let input = ImageInput::from_model(
            &[signature(&[Some(1), Some(1), Some(1), Some(2)])],
            &BTreeMap::new(),
        )
        .unwrap();

        let tensor = input.prepare(&red_blue());

        assert_eq!(values(&tensor), &[76.0, 29.0]);
    }

    #[test]
    fn fixed_batch_rejected() {
        let error = ImageInput::from_model(
            &[signature(&[Some(8), Some(3), Some(224), Some(224)])],
            &BTreeMap::new(),
        )
        .unwrap_err();

        assert_eq!(
            error.to_string(),
            "input \"data\" has a fixed batch size of 8; the agent feeds one frame at a time"
        );
    }

    #[test]
    fn unknown_pixel_format_rejected() {
        let metadata = metadata(&[(PIXEL_FORMAT_KEY, "Yuv420")]);

        let error = ImageInput::from_model(
            &[signature(&[Some(1), Some(3), Some(2), Some(2)])],
            &metadata,
        )
        .unwrap_err();

        assert!(
            matches!(
                error,
                PreprocessError::Metadata {
                    key: PIXEL_FORMAT_KEY,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn format_channels_must_match_input() {
        let metadata = metadata(&[(PIXEL_FORMAT_KEY, "Rgba8")]);

        let error = ImageInput::from_model(
            &[signature(&[Some(1), Some(3), Some(2), Some(2)])],
            &metadata,
        )
        .unwrap_err();

        assert!(
            matches!(
                error,
                PreprocessError::ChannelMismatch {
                    format_channels: 4,
                    input_channels: 3,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn two_inputs_rejected() {
        let inputs = [
            signature(&[Some(1), Some(3), Some(2), Some(2)]),
            signature(&[Some(1), Some(2)]),
        ];

        assert_eq!(
            ImageInput::from_model(&inputs, &BTreeMap::new()).unwrap_err(),
            PreprocessError::InputCount(2)
        );
    }
}
