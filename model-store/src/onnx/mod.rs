//! Cheap inspection of an ONNX model: graph inputs and outputs with element
//! types and shapes, opset imports and `metadata_props`, read from the
//! protobuf without ONNX Runtime.

pub mod proto;
mod read;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use prost::Message;

use proto::{ModelProto, TypeProto, ValueInfoProto, type_proto};

/// Error from reading an ONNX model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    #[error("cannot read ONNX model {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("malformed ONNX model{} at byte {offset}: {detail}", path_suffix(.path))]
    Malformed {
        path: Option<PathBuf>,
        offset: u64,
        detail: String,
    },

    #[error("cannot decode ONNX protobuf: {0}")]
    Decode(#[source] prost::DecodeError),

    #[error("ONNX model has no ir_version")]
    MissingIrVersion,

    #[error("ONNX model has no graph")]
    MissingGraph,

    #[error("ONNX graph has no outputs")]
    NoOutputs,

    #[error("ONNX graph {kind} number {index} has no name")]
    UnnamedValue { kind: &'static str, index: usize },
}

impl OnnxError {
    /// Returns whether trying again can help, which is true only for I/O errors.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Io { .. })
    }

    fn with_path(self, path: &Path) -> Self {
        match self {
            Self::Io { source, .. } => Self::Io {
                path: path.to_owned(),
                source,
            },
            Self::Malformed { offset, detail, .. } => Self::Malformed {
                path: Some(path.to_owned()),
                offset,
                detail,
            },
            other => other,
        }
    }
}

fn path_suffix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|path| format!(" {}", path.display()))
        .unwrap_or_default()
}

/// Signature of a model: its inputs, outputs and metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OnnxSignature {
    /// The ONNX IR version the file declares.
    pub ir_version: i64,
    /// Operator set version per domain; `""` is the default `ai.onnx` domain.
    pub opset_imports: BTreeMap<String, i64>,
    /// The tool that wrote the model, when recorded.
    pub producer_name: Option<String>,
    /// The version of that tool, when recorded.
    pub producer_version: Option<String>,
    /// Graph inputs the caller must feed; inputs that are also initializers
    /// (weights with a default value) are left out.
    pub inputs: Vec<ValueInfo>,
    /// Graph outputs in declaration order.
    pub outputs: Vec<ValueInfo>,
    /// The model's `metadata_props`, such as `Image.BitmapPixelFormat`.
    pub metadata_props: BTreeMap<String, String>,
}

impl OnnxSignature {
    /// Reads the signature of the model file at `path`, streaming over the
    /// weights so that memory use stays small for large models.
    pub fn read(path: &Path) -> Result<Self, OnnxError> {
        let model = read::read_model_proto(path)?;
        Self::from_proto(&model)
    }

    /// Reads the signature of a model held in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OnnxError> {
        let model = ModelProto::decode(bytes).map_err(OnnxError::Decode)?;
        Self::from_proto(&model)
    }

    /// Builds the signature from a decoded model.
    pub fn from_proto(model: &ModelProto) -> Result<Self, OnnxError> {
        let ir_version = model.ir_version.ok_or(OnnxError::MissingIrVersion)?;
        let graph = model.graph.as_ref().ok_or(OnnxError::MissingGraph)?;
        if graph.output.is_empty() {
            return Err(OnnxError::NoOutputs);
        }

        let initializers: HashSet<&str> = graph
            .initializer
            .iter()
            .filter_map(|tensor| tensor.name.as_deref())
            .chain(
                graph
                    .sparse_initializer
                    .iter()
                    .filter_map(|sparse| sparse.values.as_ref()?.name.as_deref()),
            )
            .collect();

        let inputs = convert_values(&graph.input, "input")?
            .into_iter()
            .filter(|input| !initializers.contains(input.name.as_str()))
            .collect();
        let outputs = convert_values(&graph.output, "output")?;

        let opset_imports = model
            .opset_import
            .iter()
            .map(|opset| {
                (
                    opset.domain.clone().unwrap_or_default(),
                    opset.version.unwrap_or_default(),
                )
            })
            .collect();
        let metadata_props = model
            .metadata_props
            .iter()
            .map(|entry| {
                (
                    entry.key.clone().unwrap_or_default(),
                    entry.value.clone().unwrap_or_default(),
                )
            })
            .collect();

        Ok(Self {
            ir_version,
            opset_imports,
            producer_name: model.producer_name.clone(),
            producer_version: model.producer_version.clone(),
            inputs,
            outputs,
            metadata_props,
        })
    }

    /// Returns the output called `name`.
    pub fn output(&self, name: &str) -> Option<&ValueInfo> {
        self.outputs.iter().find(|output| output.name == name)
    }
}

fn convert_values(
    values: &[ValueInfoProto],
    kind: &'static str,
) -> Result<Vec<ValueInfo>, OnnxError> {
    values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let name = value.name.clone().filter(|name| !name.is_empty());
            let name = name.ok_or(OnnxError::UnnamedValue { kind, index })?;
            let value_type = value
                .r#type
                .as_ref()
                .map(ValueType::from_proto)
                .unwrap_or(ValueType::Unknown);
            Ok(ValueInfo { name, value_type })
        })
        .collect()
}

/// A named graph input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueInfo {
    pub name: String,
    pub value_type: ValueType,
}

impl ValueInfo {
    /// Returns the tensor type when the value is a dense tensor.
    pub fn tensor(&self) -> Option<&TensorType> {
        match &self.value_type {
            ValueType::Tensor(tensor) => Some(tensor),
            _ => None,
        }
    }
}

impl fmt::Display for ValueInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.value_type)
    }
}

/// The type of a graph value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueType {
    Tensor(TensorType),
    SparseTensor(TensorType),
    Sequence(Box<ValueType>),
    Map {
        key: ElementType,
        value: Box<ValueType>,
    },
    Optional(Box<ValueType>),
    Opaque {
        domain: String,
        name: String,
    },
    /// The model leaves the type unset.
    Unknown,
}

impl ValueType {
    fn from_proto(proto: &TypeProto) -> Self {
        let boxed = |inner: &Option<Box<TypeProto>>| {
            Box::new(
                inner
                    .as_deref()
                    .map(Self::from_proto)
                    .unwrap_or(Self::Unknown),
            )
        };

        match &proto.value {
            Some(type_proto::Value::TensorType(tensor)) => {
                Self::Tensor(TensorType::from_proto(tensor))
            }
            Some(type_proto::Value::SparseTensorType(tensor)) => {
                Self::SparseTensor(TensorType::from_proto(tensor))
            }
            Some(type_proto::Value::SequenceType(sequence)) => {
                Self::Sequence(boxed(&sequence.elem_type))
            }
            Some(type_proto::Value::MapType(map)) => Self::Map {
                key: ElementType::from_code(map.key_type.unwrap_or_default()),
                value: boxed(&map.value_type),
            },
            Some(type_proto::Value::OptionalType(optional)) => {
                Self::Optional(boxed(&optional.elem_type))
            }
            Some(type_proto::Value::OpaqueType(opaque)) => Self::Opaque {
                domain: opaque.domain.clone().unwrap_or_default(),
                name: opaque.name.clone().unwrap_or_default(),
            },
            None => Self::Unknown,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tensor(tensor) => write!(f, "{tensor}"),
            Self::SparseTensor(tensor) => write!(f, "sparse {tensor}"),
            Self::Sequence(element) => write!(f, "seq({element})"),
            Self::Map { key, value } => write!(f, "map({key}, {value})"),
            Self::Optional(element) => write!(f, "optional({element})"),
            Self::Opaque { domain, name } => write!(f, "opaque({domain}.{name})"),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

/// A tensor's element type and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorType {
    pub element_type: ElementType,
    /// The dimensions, or `None` when even the rank is unknown.
    pub shape: Option<Vec<Dim>>,
}

impl TensorType {
    fn from_proto(proto: &type_proto::Tensor) -> Self {
        let shape = proto
            .shape
            .as_ref()
            .map(|shape| shape.dim.iter().map(Dim::from_proto).collect());
        Self {
            element_type: ElementType::from_code(proto.elem_type.unwrap_or_default()),
            shape,
        }
    }

    /// Returns the shape with -1 for every dimension that is not fixed, as
    /// ONNX Runtime and NumPy write it.
    pub fn dims(&self) -> Option<Vec<i64>> {
        self.shape
            .as_ref()
            .map(|shape| shape.iter().map(Dim::to_i64).collect())
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.element_type)?;
        let Some(shape) = &self.shape else {
            return f.write_str("[?]");
        };

        let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
        write!(f, "[{}]", dims.join(","))
    }
}

/// One dimension of a tensor shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Fixed(u64),
    /// A named dynamic dimension, such as `batch`.
    Symbolic(String),
    /// A dynamic dimension without a name. Negative sizes, which some
    /// exporters write for dynamic axes, are read as this too.
    Unknown,
}

impl Dim {
    fn from_proto(proto: &proto::tensor_shape_proto::Dimension) -> Self {
        use proto::tensor_shape_proto::dimension::Value;

        match &proto.value {
            Some(Value::DimValue(value)) => u64::try_from(*value)
                .map(Self::Fixed)
                .unwrap_or(Self::Unknown),
            Some(Value::DimParam(name)) if !name.is_empty() => Self::Symbolic(name.clone()),
            Some(Value::DimParam(_)) | None => Self::Unknown,
        }
    }

    /// Returns the fixed size, or `None` for a dynamic dimension.
    pub fn value(&self) -> Option<u64> {
        match self {
            Self::Fixed(value) => Some(*value),
            Self::Symbolic(_) | Self::Unknown => None,
        }
    }

    /// Returns the fixed size, or -1 for a dynamic dimension.
    pub fn to_i64(&self) -> i64 {
        self.value()
            .and_then(|value| i64::try_from(value).ok())
            .unwrap_or(-1)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(value) => write!(f, "{value}"),
            Self::Symbolic(name) => f.write_str(name),
            Self::Unknown => f.write_str("?"),
        }
    }
}

/// A tensor element type: the `TensorProto.DataType` codes of ONNX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElementType {
    Undefined,
    Float,
    Uint8,
    Int8,
    Uint16,
    Int16,
    Int32,
    Int64,
    String,
    Bool,
    Float16,
    Double,
    Uint32,
    Uint64,
    Complex64,
    Complex128,
    Bfloat16,
    Float8E4M3Fn,
    Float8E4M3Fnuz,
    Float8E5M2,
    Float8E5M2Fnuz,
    Uint4,
    Int4,
    Float4E2M1,
    Float8E8M0,
    Uint2,
    Int2,
    /// A code that this crate does not know.
    Other(i32),
}

/// Element types with their ONNX codes and lowercase ONNX names, in code order.
const ELEMENT_TYPES: [(ElementType, &str); 27] = [
    (ElementType::Undefined, "undefined"),
    (ElementType::Float, "float"),
    (ElementType::Uint8, "uint8"),
    (ElementType::Int8, "int8"),
    (ElementType::Uint16, "uint16"),
    (ElementType::Int16, "int16"),
    (ElementType::Int32, "int32"),
    (ElementType::Int64, "int64"),
    (ElementType::String, "string"),
    (ElementType::Bool, "bool"),
    (ElementType::Float16, "float16"),
    (ElementType::Double, "double"),
    (ElementType::Uint32, "uint32"),
    (ElementType::Uint64, "uint64"),
    (ElementType::Complex64, "complex64"),
    (ElementType::Complex128, "complex128"),
    (ElementType::Bfloat16, "bfloat16"),
    (ElementType::Float8E4M3Fn, "float8e4m3fn"),
    (ElementType::Float8E4M3Fnuz, "float8e4m3fnuz"),
    (ElementType::Float8E5M2, "float8e5m2"),
    (ElementType::Float8E5M2Fnuz, "float8e5m2fnuz"),
    (ElementType::Uint4, "uint4"),
    (ElementType::Int4, "int4"),
    (ElementType::Float4E2M1, "float4e2m1"),
    (ElementType::Float8E8M0, "float8e8m0"),
    (ElementType::Uint2, "uint2"),
    (ElementType::Int2, "int2"),
];

impl ElementType {
    /// Maps an ONNX `TensorProto.DataType` code.
    pub fn from_code(code: i32) -> Self {
        usize::try_from(code)
            .ok()
            .and_then(|index| ELEMENT_TYPES.get(index))
            .map(|(element_type, _)| *element_type)
            .unwrap_or(Self::Other(code))
    }

    /// Returns the ONNX `TensorProto.DataType` code.
    pub fn code(self) -> i32 {
        match self {
            Self::Other(code) => code,
            known => ELEMENT_TYPES
                .iter()
                .position(|(element_type, _)| *element_type == known)
                .map_or(-1, |index| index as i32),
        }
    }

    /// Returns whether the type is a 16-, 32- or 64-bit floating-point type.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            Self::Float | Self::Float16 | Self::Bfloat16 | Self::Double
        )
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Other(code) => write!(f, "type{code}"),
            known => {
                let name = ELEMENT_TYPES
                    .iter()
                    .find(|(element_type, _)| element_type == known)
                    .map_or("?", |(_, name)| name);
                f.write_str(name)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_type_codes_round_trip() {
        for code in 0..27 {
            assert_eq!(ElementType::from_code(code).code(), code);
        }
        assert_eq!(ElementType::from_code(1), ElementType::Float);
        assert_eq!(ElementType::from_code(16), ElementType::Bfloat16);
        assert_eq!(ElementType::from_code(26), ElementType::Int2);
        assert_eq!(ElementType::from_code(99), ElementType::Other(99));
        assert_eq!(ElementType::Float8E4M3Fn.to_string(), "float8e4m3fn");
    }
}
