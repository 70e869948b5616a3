//! The VisionFleet edge agent: fetches a vision model, runs it on frames
//! from an image, an image folder or a video with ONNX Runtime and OpenVINO,
//! and writes one JSON line per frame.

pub mod app;
pub mod cli;
pub mod decode;
pub mod metrics;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod preprocess;
pub mod runtime;
pub mod serve;
pub mod source;
pub mod tensor;
