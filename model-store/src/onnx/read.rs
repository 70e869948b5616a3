//! A streaming reader for the top of an ONNX file.
//!
//! A model file can be hundreds of MiB, nearly all of it weights in graph
//! initializers and node attributes. This reader walks the protobuf fields
//! with a small buffer and decodes only the small messages that the signature
//! needs with prost. It takes just the name out of each initializer and seeks
//! over everything else, so memory use does not grow with the model size.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

use prost::Message;

use super::OnnxError;
use super::proto::{GraphProto, ModelProto, SparseTensorProto, TensorProto, field};

/// Largest single message decoded into memory: a graph input or output, a
/// metadata entry or an opset import. Real ones are a few KiB.
const MAX_DECODED_MESSAGE_BYTES: u64 = 16 << 20;

/// Largest total of decoded messages, so that a file made of many large
/// metadata entries cannot use memory in proportion to its size.
const MAX_DECODED_TOTAL_BYTES: u64 = 64 << 20;

/// Protobuf wire types (`encoding.md` in the protobuf documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WireType {
    Varint,
    Fixed64,
    LengthDelimited,
    Fixed32,
}

/// Reads the parts of the model at `path` that [`ModelProto`] declares, with
/// every initializer reduced to its name.
pub(super) fn read_model_proto(path: &Path) -> Result<ModelProto, OnnxError> {
    let file = File::open(path).map_err(|source| OnnxError::Io {
        path: path.to_owned(),
        source,
    })?;
    let length = file
        .metadata()
        .map_err(|source| OnnxError::Io {
            path: path.to_owned(),
            source,
        })?
        .len();

    let mut reader = FieldReader {
        inner: BufReader::new(file),
        position: 0,
        decoded: 0,
    };
    read_model(&mut reader, length).map_err(|error| error.with_path(path))
}

fn read_model<R: Read + Seek>(
    reader: &mut FieldReader<R>,
    end: u64,
) -> Result<ModelProto, OnnxError> {
    let mut model = ModelProto::default();

    while reader.position < end {
        let (number, wire_type) = reader.read_tag()?;
        match (number, wire_type) {
            (field::MODEL_IR_VERSION, WireType::Varint) => {
                model.ir_version = Some(reader.read_varint()? as i64)
            }
            (field::MODEL_MODEL_VERSION, WireType::Varint) => {
                model.model_version = Some(reader.read_varint()? as i64)
            }
            (field::MODEL_PRODUCER_NAME, WireType::LengthDelimited) => {
                model.producer_name = Some(reader.read_string()?)
            }
            (field::MODEL_PRODUCER_VERSION, WireType::LengthDelimited) => {
                model.producer_version = Some(reader.read_string()?);
            }
            (field::MODEL_DOMAIN, WireType::LengthDelimited) => {
                model.domain = Some(reader.read_string()?)
            }
            (field::MODEL_OPSET_IMPORT, WireType::LengthDelimited) => {
                model.opset_import.push(reader.read_message()?)
            }
            (field::MODEL_METADATA_PROPS, WireType::LengthDelimited) => {
                model.metadata_props.push(reader.read_message()?);
            }
            (field::MODEL_GRAPH, WireType::LengthDelimited) => {
                let graph_end = reader.message_end(end)?;
                // A message field that occurs twice is merged, as protobuf specifies.
                let graph = model.graph.get_or_insert_with(GraphProto::default);
                read_graph(reader, graph, graph_end)?;
            }
            (_, wire_type) => reader.skip(wire_type)?,
        }
    }

    reader.expect_end(end)?;
    Ok(model)
}

fn read_graph<R: Read + Seek>(
    reader: &mut FieldReader<R>,
    graph: &mut GraphProto,
    end: u64,
) -> Result<(), OnnxError> {
    while reader.position < end {
        let (number, wire_type) = reader.read_tag()?;
        match (number, wire_type) {
            (field::GRAPH_NAME, WireType::LengthDelimited) => {
                graph.name = Some(reader.read_string()?)
            }
            (field::GRAPH_INPUT, WireType::LengthDelimited) => {
                graph.input.push(reader.read_message()?)
            }
            (field::GRAPH_OUTPUT, WireType::LengthDelimited) => {
                graph.output.push(reader.read_message()?)
            }
            (field::GRAPH_INITIALIZER, WireType::LengthDelimited) => {
                let tensor_end = reader.message_end(end)?;
                graph
                    .initializer
                    .push(read_tensor_name(reader, tensor_end)?);
            }
            (field::GRAPH_SPARSE_INITIALIZER, WireType::LengthDelimited) => {
                let sparse_end = reader.message_end(end)?;
                graph
                    .sparse_initializer
                    .push(read_sparse_tensor_name(reader, sparse_end)?);
            }
            (_, wire_type) => reader.skip(wire_type)?,
        }
    }

    reader.expect_end(end)
}

/// Reads a `TensorProto` keeping only its name, seeking over its data.
fn read_tensor_name<R: Read + Seek>(
    reader: &mut FieldReader<R>,
    end: u64,
) -> Result<TensorProto, OnnxError> {
    let mut tensor = TensorProto::default();

    while reader.position < end {
        let (number, wire_type) = reader.read_tag()?;
        match (number, wire_type) {
            (field::TENSOR_NAME, WireType::LengthDelimited) => {
                tensor.name = Some(reader.read_string()?)
            }
            (_, wire_type) => reader.skip(wire_type)?,
        }
    }

    reader.expect_end(end)?;
    Ok(tensor)
}

fn read_sparse_tensor_name<R: Read + Seek>(
    reader: &mut FieldReader<R>,
    end: u64,
) -> Result<SparseTensorProto, OnnxError> {
    let mut sparse = SparseTensorProto::default();

    while reader.position < end {
        let (number, wire_type) = reader.read_tag()?;
        match (number, wire_type) {
            (field::SPARSE_TENSOR_VALUES, WireType::LengthDelimited) => {
                let values_end = reader.message_end(end)?;
                sparse.values = Some(read_tensor_name(reader, values_end)?);
            }
            (_, wire_type) => reader.skip(wire_type)?,
        }
    }

    reader.expect_end(end)?;
    Ok(sparse)
}

/// Reads protobuf fields from a seekable stream, tracking the byte offset.
struct FieldReader<R> {
    inner: R,
    position: u64,
    /// Bytes read into memory so far, checked against [`MAX_DECODED_TOTAL_BYTES`].
    decoded: u64,
}

impl<R: Read + Seek> FieldReader<R> {
    fn read_byte(&mut self) -> Result<u8, OnnxError> {
        let mut byte = [0u8; 1];
        self.inner
            .read_exact(&mut byte)
            .map_err(|error| self.truncated_or_io(error))?;
        self.position += 1;
        Ok(byte[0])
    }

    fn read_varint(&mut self) -> Result<u64, OnnxError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.read_byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed("varint longer than 10 bytes"))
    }

    fn read_tag(&mut self) -> Result<(u32, WireType), OnnxError> {
        let key = self.read_varint()?;
        let number =
            u32::try_from(key >> 3).map_err(|_| self.malformed("field number out of range"))?;
        let wire_type = match key & 0x7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::LengthDelimited,
            5 => WireType::Fixed32,
            other => return Err(self.malformed(&format!("unsupported wire type {other}"))),
        };
        if number == 0 {
            return Err(self.malformed("field number 0"));
        }
        Ok((number, wire_type))
    }

    /// Reads a length prefix and returns the offset where that message ends,
    /// checked against the end of the enclosing message.
    fn message_end(&mut self, enclosing_end: u64) -> Result<u64, OnnxError> {
        let length = self.read_varint()?;
        let end = self
            .position
            .checked_add(length)
            .ok_or_else(|| self.malformed("length overflows"))?;
        if end > enclosing_end {
            return Err(self.malformed("nested message runs past its parent"));
        }
        Ok(end)
    }

    fn read_length_delimited(&mut self) -> Result<Vec<u8>, OnnxError> {
        let length = self.read_varint()?;
        if length > MAX_DECODED_MESSAGE_BYTES {
            return Err(self.malformed(&format!(
                "a {length}-byte signature field exceeds {MAX_DECODED_MESSAGE_BYTES} bytes"
            )));
        }
        self.decoded += length;
        if self.decoded > MAX_DECODED_TOTAL_BYTES {
            return Err(self.malformed(&format!(
                "signature fields exceed {MAX_DECODED_TOTAL_BYTES} bytes in total"
            )));
        }

        let mut bytes = Vec::new();
        let read = (&mut self.inner)
            .take(length)
            .read_to_end(&mut bytes)
            .map_err(|error| self.truncated_or_io(error))?;
        self.position += read as u64;
        if (read as u64) < length {
            return Err(self.malformed("file ends inside a field"));
        }
        Ok(bytes)
    }

    fn read_string(&mut self) -> Result<String, OnnxError> {
        let bytes = self.read_length_delimited()?;
        String::from_utf8(bytes).map_err(|_| self.malformed("string field is not valid UTF-8"))
    }

    fn read_message<M: Message + Default>(&mut self) -> Result<M, OnnxError> {
        let bytes = self.read_length_delimited()?;
        M::decode(bytes.as_slice()).map_err(OnnxError::Decode)
    }

    fn skip(&mut self, wire_type: WireType) -> Result<(), OnnxError> {
        let length = match wire_type {
            WireType::Varint => {
                self.read_varint()?;
                return Ok(());
            }
            WireType::Fixed64 => 8,
            WireType::Fixed32 => 4,
            WireType::LengthDelimited => self.read_varint()?,
        };

        let offset = i64::try_from(length).map_err(|_| self.malformed("length overflows"))?;
        self.inner
            .seek_relative(offset)
            .map_err(|source| self.io(source))?;
        self.position += length;
        Ok(())
    }

    /// Checks that a message ended exactly at `end`. Seeking past the end of
    /// a file succeeds, so a truncated file is caught here.
    fn expect_end(&mut self, end: u64) -> Result<(), OnnxError> {
        if self.position != end {
            return Err(self.malformed("a field runs past the end of its message or file"));
        }
        Ok(())
    }

    fn malformed(&self, detail: &str) -> OnnxError {
        OnnxError::Malformed {
            path: None,
            offset: self.position,
            detail: detail.to_owned(),
        }
    }

    fn truncated_or_io(&self, error: io::Error) -> OnnxError {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            self.malformed("file ends inside a field")
        } else {
            self.io(error)
        }
    }

    fn io(&self, source: io::Error) -> OnnxError {
        OnnxError::Io {
            path: Default::default(),
            source,
        }
    }
}
