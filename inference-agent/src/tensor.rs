//! Plain Rust copies of model inputs and outputs, so that pre-processing and
//! decoding are pure functions that need no ONNX Runtime to test.

use std::collections::BTreeMap;

use half::f16;

/// Element type of a model's image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputElement {
    Float32,
    /// Custom Vision's `OnnxFloat16` export flavour.
    Float16,
}

/// Values of one input tensor, in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum InputData {
    Float32(Vec<f32>),
    Float16(Vec<f16>),
}

/// A tensor ready to feed to a model.
#[derive(Debug, Clone, PartialEq)]
pub struct InputTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: InputData,
}

/// Values of one output tensor, in row-major order. Float16 and float64
/// outputs are converted to `f32` and every integer type to `i64`.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Float(Vec<f32>),
    Int(Vec<i64>),
    String(Vec<String>),
}

/// One model output.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputValue {
    Tensor {
        shape: Vec<usize>,
        data: TensorData,
    },
    /// A sequence of string-to-float maps, such as the `loss` output of
    /// Custom Vision's older classification exports.
    MapSequence(Vec<Vec<(String, f32)>>),
}

impl OutputValue {
    /// Builds a float tensor, mainly for tests.
    pub fn float(shape: &[usize], data: Vec<f32>) -> Self {
        Self::Tensor {
            shape: shape.to_vec(),
            data: TensorData::Float(data),
        }
    }

    /// Builds an integer tensor, mainly for tests.
    pub fn int(shape: &[usize], data: Vec<i64>) -> Self {
        Self::Tensor {
            shape: shape.to_vec(),
            data: TensorData::Int(data),
        }
    }

    /// Returns a short name of the value's type for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Tensor {
                data: TensorData::Float(_),
                ..
            } => "float tensor",
            Self::Tensor {
                data: TensorData::Int(_),
                ..
            } => "integer tensor",
            Self::Tensor {
                data: TensorData::String(_),
                ..
            } => "string tensor",
            Self::MapSequence(_) => "sequence of maps",
        }
    }
}

/// A model's outputs by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelOutputs {
    values: BTreeMap<String, OutputValue>,
}

impl ModelOutputs {
    pub fn insert(&mut self, name: impl Into<String>, value: OutputValue) {
        self.values.insert(name.into(), value);
    }

    pub fn get(&self, name: &str) -> Option<&OutputValue> {
        self.values.get(name)
    }

    /// Returns the only output, when the model has exactly one.
    pub fn single(&self) -> Option<(&str, &OutputValue)> {
        let mut values = self.values.iter();
        match (values.next(), values.next()) {
            (Some((name, value)), None) => Some((name, value)),
            _ => None,
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

impl FromIterator<(String, OutputValue)> for ModelOutputs {
    fn from_iter<I: IntoIterator<Item = (String, OutputValue)>>(iter: I) -> Self {
        Self {
            values: iter.into_iter().collect(),
        }
    }
}
