//! Results as JSON lines: one object per inferred frame, written to stdout
//! (or any writer) and flushed at once so a reader sees every frame as it
//! happens.

use std::io::{self, Write};

use serde::Serialize;

use crate::decode::Prediction;

/// The result of one inferred frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameResult<'a> {
    /// Position of the frame in the source, from 0, counting frames skipped
    /// by the frame-rate cap.
    pub frame: u64,
    /// When the frame was inferred, RFC 3339 in UTC.
    pub timestamp: String,
    /// The image file or video the frame came from.
    pub source: &'a str,
    /// `sha256:<hex>` of the model package.
    pub model_digest: &'a str,
    /// The device that ran the model: `CPU`, `GPU`, `NPU` or `MYRIAD`.
    pub device: &'a str,
    /// `Classification` or `ObjectDetection`.
    pub task: &'a str,
    /// Predictions above the threshold, highest score first.
    pub predictions: &'a [Prediction],
}

/// Returns the current time as RFC 3339 in UTC with millisecond precision,
/// such as `2026-03-01T12:00:00.123Z`.
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    format!("{now:.3}")
}

/// Writes one JSON object per line.
#[derive(Debug)]
pub struct JsonLines<W: Write> {
    writer: W,
}

impl<W: Write> JsonLines<W> {
    pub fn new(writer: W) -> Self {
        Self { writer }
    }

    /// Writes `result` as one line and flushes it.
    pub fn write(&mut self, result: &FrameResult<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut self.writer, result)?;
        self.writer.write_all(b"\n")?;
        self.writer.flush()
    }

    pub fn into_inner(self) -> W {
        self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::BoundingBox;

    #[test]
    fn writes_one_line_per_frame() {
        let predictions = [Prediction {
            label: "face".to_owned(),
            score: 0.5,
            bbox: Some(BoundingBox {
                x_min: 0.25,
                y_min: 0.0,
                x_max: 0.5,
                y_max: 1.0,
            }),
        }];
        let result = FrameResult {
            frame: 3,
            timestamp: "2026-03-01T12:00:00.123Z".to_owned(),
            source: "photos/astronaut.png",
            model_digest: "sha256:ab",
            device: "CPU",
            task: "ObjectDetection",
            predictions: &predictions,
        };
        let mut lines = JsonLines::new(Vec::new());

        lines.write(&result).unwrap();
        lines.write(&result).unwrap();

        let text = String::from_utf8(lines.into_inner()).unwrap();
        let expected = r#"{"frame":3,"timestamp":"2026-03-01T12:00:00.123Z","source":"photos/astronaut.png","model_digest":"sha256:ab","device":"CPU","task":"ObjectDetection","predictions":[{"label":"face","score":0.5,"box":[0.25,0.0,0.5,1.0]}]}"#;
        assert_eq!(text, format!("{expected}\n{expected}\n"));
    }

    #[test]
    fn timestamp_is_rfc3339_utc() {
        let timestamp = now_rfc3339();

        assert!(timestamp.ends_with('Z'), "{timestamp}");
        assert!(timestamp.parse::<jiff::Timestamp>().is_ok(), "{timestamp}");
        assert_eq!(
            timestamp.len(),
            "2026-03-01T12:00:00.123Z".len(),
            "{timestamp}"
        );
    }
}
