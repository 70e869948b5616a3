//! JSON lines sinks: standard output and an appended file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

/// Destination of a line sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineTarget {
    Stdout,
    /// A file opened for appending, created when missing.
    File(PathBuf),
}

impl LineTarget {
    fn describe(&self) -> String {
        match self {
            Self::Stdout => "stdout".to_owned(),
            Self::File(path) => path.display().to_string(),
        }
    }
}

/// Writes one result per line and flushes it. After a failed write the
/// file is opened again for the next line, so a rotated or recreated file
/// is picked up. Each distinct error is logged once.
#[derive(Debug)]
pub struct LineSink {
    target: LineTarget,
    file: Option<File>,
    last_error: Option<String>,
}

impl LineSink {
    pub fn new(target: LineTarget) -> Self {
        Self {
            target,
            file: None,
            last_error: None,
        }
    }

    /// Writes `line` and a newline.
    pub fn write(&mut self, line: &[u8]) {
        match self.try_write(line) {
            Ok(()) => {
                if self.last_error.take().is_some() {
                    tracing::info!(sink = %self.target.describe(), "Result sink writes again");
                }
            }
            Err(error) => {
                self.file = None;
                let message = error.to_string();
                if self.last_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(
                        sink = %self.target.describe(),
                        error = %message,
                        "Failed to write a result; opening the sink again for the next one"
                    );
                    self.last_error = Some(message);
                }
            }
        }
    }

    fn try_write(&mut self, line: &[u8]) -> io::Result<()> {
        match &self.target {
            LineTarget::Stdout => {
                let mut stdout = io::stdout().lock();
                write_line(&mut stdout, line)
            }
            LineTarget::File(path) => {
                if self.file.is_none() {
                    self.file = Some(OpenOptions::new().create(true).append(true).open(path)?);
                }
                match self.file.as_mut() {
                    Some(file) => write_line(file, line),
                    None => Ok(()),
                }
            }
        }
    }
}

fn write_line(writer: &mut impl Write, line: &[u8]) -> io::Result<()> {
    // One buffer and one write, so concurrent appenders never interleave a line.
    let mut buffer = Vec::with_capacity(line.len() + 1);
    buffer.extend_from_slice(line);
    buffer.push(b'\n');
    writer.write_all(&buffer)?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sink_appends_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        std::fs::write(&path, "{\"frame\":0}\n").unwrap();
        let mut sink = LineSink::new(LineTarget::File(path.clone()));

        sink.write(b"{\"frame\":1}");
        sink.write(b"{\"frame\":2}");

        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"frame\":0}\n{\"frame\":1}\n{\"frame\":2}\n");
    }

    #[test]
    fn file_sink_reopens_after_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-folder").join("results.jsonl");
        let mut sink = LineSink::new(LineTarget::File(path.clone()));

        sink.write(b"{\"frame\":1}");
        std::fs::create_dir(path.parent().unwrap()).unwrap();
        sink.write(b"{\"frame\":2}");

        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"frame\":2}\n");
    }
}
