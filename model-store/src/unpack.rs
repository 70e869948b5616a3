//! Safe extraction of a model zip into an empty folder.
//!
//! Every entry is checked before anything is written: names that leave the
//! folder, absolute names, symbolic links, devices and other non-regular
//! entries, encrypted entries, and names that collide when case is ignored are
//! rejected. The entry count is capped before reading, and the unpacked size is
//! capped on the bytes really decompressed, because the archive's author
//! writes the sizes in the headers.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use zip::ZipArchive;
use zip::result::ZipError;

/// Caps applied while unpacking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Maximum total decompressed size in bytes.
    pub max_unpacked_bytes: u64,
    /// Maximum number of entries, folders included.
    pub max_entries: usize,
}

/// Counts and layout of an unpacked archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnpackSummary {
    /// Number of regular files written.
    pub files: usize,
    /// Total bytes written.
    pub unpacked_bytes: u64,
    /// The single top-level folder that wrapped every entry and was removed.
    pub stripped_folder: Option<String>,
}

/// Kind of unsafe entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeEntryKind {
    #[error("its path leaves the package folder with `..`")]
    PathTraversal,
    #[error("its path is absolute")]
    AbsolutePath,
    #[error("its path contains a backslash, which is a path separator on Windows")]
    Backslash,
    #[error("its path contains a NUL byte")]
    NulByte,
    #[error("it is a symbolic link")]
    Symlink,
    #[error("it is not a regular file or folder (Unix mode {mode:o})")]
    NotRegularFile { mode: u32 },
    #[error("it is encrypted")]
    Encrypted,
}

/// Error from unpacking an archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    /// The central directory or an entry header is invalid.
    #[error("invalid zip archive: {0}")]
    InvalidArchive(#[source] ZipError),

    /// An entry's data cannot be decompressed or fails its CRC-32 check.
    #[error("corrupt data in entry {entry:?}: {source}")]
    CorruptEntry {
        entry: String,
        #[source]
        source: io::Error,
    },

    /// An entry would be unsafe to write.
    #[error("entry {entry:?} is rejected because {kind}")]
    UnsafeEntry {
        entry: String,
        kind: UnsafeEntryKind,
    },

    /// The central directory lists the same name twice.
    #[error("archive lists the same entry name more than once")]
    DuplicateNames,

    /// Two entries have the same path, compared without case.
    #[error("entries {first:?} and {second:?} have the same path when case is ignored")]
    DuplicateEntry { first: String, second: String },

    /// The archive has more entries than allowed.
    #[error("archive has {count} entries, more than the limit of {limit}")]
    TooManyEntries { count: usize, limit: usize },

    /// The decompressed data exceeds the size limit.
    #[error("unpacked size exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },

    /// Reading the archive file or writing an unpacked file failed.
    #[error("I/O error on {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl UnpackError {
    /// Returns whether trying again can help, which is true only for local I/O errors.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Io { .. })
    }

    /// Returns a stable CamelCase word for condition reasons and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidArchive(_) | Self::CorruptEntry { .. } => "InvalidArchive",
            Self::UnsafeEntry { .. } | Self::DuplicateNames | Self::DuplicateEntry { .. } => {
                "UnsafeArchive"
            }
            Self::TooManyEntries { .. } | Self::TooLarge { .. } => "ArchiveLimitExceeded",
            Self::Io { .. } => "CacheIoFailed",
        }
    }
}

/// Folder that macOS adds to zips it creates, holding resource forks only.
const MACOS_METADATA_FOLDER: &str = "__MACOSX";

/// An entry that passed the checks, with its path relative to the package root.
#[derive(Debug)]
struct PlannedEntry {
    index: usize,
    name: String,
    components: Vec<String>,
    is_dir: bool,
    declared_size: u64,
}

/// Unpacks the zip at `archive` into `dest`, an existing empty folder.
///
/// A single top-level folder that wraps every entry is removed, so
/// `export/model.onnx` lands at `dest/model.onnx`. Entries under `__MACOSX/`
/// are skipped. On error, `dest` may hold some files and should be discarded.
pub fn unpack_zip(
    archive: &Path,
    dest: &Path,
    limits: UnpackLimits,
) -> Result<UnpackSummary, UnpackError> {
    let file = File::open(archive).map_err(|source| UnpackError::Io {
        path: archive.to_owned(),
        source,
    })?;
    let mut zip = ZipArchive::new(BufReader::new(file)).map_err(UnpackError::InvalidArchive)?;

    if zip.len() > limits.max_entries {
        return Err(UnpackError::TooManyEntries {
            count: zip.len(),
            limit: limits.max_entries,
        });
    }

    let mut entries = plan_entries(&mut zip)?;
    let stripped_folder = strip_single_top_folder(&mut entries);

    let declared_total = entries.iter().fold(0u64, |total, entry| {
        total.saturating_add(entry.declared_size)
    });
    if declared_total > limits.max_unpacked_bytes {
        return Err(UnpackError::TooLarge {
            limit: limits.max_unpacked_bytes,
        });
    }

    let mut summary = UnpackSummary {
        files: 0,
        unpacked_bytes: 0,
        stripped_folder,
    };
    for entry in &entries {
        let path = entry
            .components
            .iter()
            .fold(dest.to_owned(), |path, component| path.join(component));
        if entry.is_dir {
            fs::create_dir_all(&path).map_err(|source| UnpackError::Io {
                path: path.clone(),
                source,
            })?;
            continue;
        }

        let budget = limits.max_unpacked_bytes - summary.unpacked_bytes;
        let written = extract_file(&mut zip, entry, &path, budget, limits.max_unpacked_bytes)?;
        summary.unpacked_bytes += written;
        summary.files += 1;
    }

    Ok(summary)
}

/// Checks every entry's kind and name, and rejects case-insensitive duplicates.
fn plan_entries<R: Read + io::Seek>(
    zip: &mut ZipArchive<R>,
) -> Result<Vec<PlannedEntry>, UnpackError> {
    // The zip crate keeps one entry per exact name, so the repeated name itself is not available.
    if zip.has_duplicate_names() {
        return Err(UnpackError::DuplicateNames);
    }

    let mut entries = Vec::with_capacity(zip.len());
    let mut seen: HashMap<String, String> = HashMap::new();
    for index in 0..zip.len() {
        let entry = zip
            .by_index_raw(index)
            .map_err(UnpackError::InvalidArchive)?;
        let name = entry
            .name()
            .map_err(UnpackError::InvalidArchive)?
            .into_owned();
        let unsafe_entry = |kind| UnpackError::UnsafeEntry {
            entry: name.clone(),
            kind,
        };

        if entry.encrypted() {
            return Err(unsafe_entry(UnsafeEntryKind::Encrypted));
        }
        if entry.is_symlink() {
            return Err(unsafe_entry(UnsafeEntryKind::Symlink));
        }
        if let Some(mode) = entry.unix_mode() {
            check_file_type(mode).map_err(unsafe_entry)?;
        }

        let components = split_entry_name(&name).map_err(unsafe_entry)?;
        if components.is_empty() || components[0] == MACOS_METADATA_FOLDER {
            continue;
        }

        let key = components.join("/").to_lowercase();
        if let Some(first) = seen.insert(key, name.clone()) {
            return Err(UnpackError::DuplicateEntry {
                first,
                second: name,
            });
        }

        entries.push(PlannedEntry {
            index,
            is_dir: entry.is_dir(),
            declared_size: entry.size(),
            name,
            components,
        });
    }

    Ok(entries)
}

/// Accepts a Unix file type of regular file, folder, or none recorded.
fn check_file_type(mode: u32) -> Result<(), UnsafeEntryKind> {
    const TYPE_MASK: u32 = 0o170_000;
    const REGULAR: u32 = 0o100_000;
    const DIRECTORY: u32 = 0o040_000;
    const SYMLINK: u32 = 0o120_000;

    match mode & TYPE_MASK {
        0 | REGULAR | DIRECTORY => Ok(()),
        SYMLINK => Err(UnsafeEntryKind::Symlink),
        _ => Err(UnsafeEntryKind::NotRegularFile { mode }),
    }
}

/// Splits a zip entry name into path components, dropping empty and `.`
/// components. Zip names always use `/`, so `\` is rejected rather than guessed.
fn split_entry_name(name: &str) -> Result<Vec<String>, UnsafeEntryKind> {
    if name.contains('\0') {
        return Err(UnsafeEntryKind::NulByte);
    }
    if name.contains('\\') {
        return Err(UnsafeEntryKind::Backslash);
    }
    if name.starts_with('/') || has_drive_prefix(name) {
        return Err(UnsafeEntryKind::AbsolutePath);
    }

    let mut components = Vec::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(UnsafeEntryKind::PathTraversal),
            other => components.push(other.to_owned()),
        }
    }
    Ok(components)
}

/// Returns whether `name` starts with a Windows drive such as `C:`.
fn has_drive_prefix(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

/// Removes the first component of every entry when all entries sit under one
/// folder and no file sits at the root. Returns the removed folder's name.
fn strip_single_top_folder(entries: &mut Vec<PlannedEntry>) -> Option<String> {
    let top = entries.first()?.components.first()?.clone();

    let all_under_top = entries
        .iter()
        .all(|entry| entry.components[0] == top && (entry.is_dir || entry.components.len() >= 2));
    if !all_under_top {
        return None;
    }

    entries.retain(|entry| entry.components.len() >= 2);
    for entry in entries.iter_mut() {
        entry.components.remove(0);
    }
    Some(top)
}

/// Writes one file, counting the decompressed bytes against `budget`.
fn extract_file<R: Read + io::Seek>(
    zip: &mut ZipArchive<R>,
    entry: &PlannedEntry,
    path: &Path,
    budget: u64,
    limit: u64,
) -> Result<u64, UnpackError> {
    let io_error = |source| UnpackError::Io {
        path: path.to_owned(),
        source,
    };

    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_error)?;
    }
    // create_new never follows or replaces an existing path.
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_error)?;

    let mut reader = zip
        .by_index(entry.index)
        .map_err(UnpackError::InvalidArchive)?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        let count = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(UnpackError::CorruptEntry {
                    entry: entry.name.clone(),
                    source,
                });
            }
        };

        written += count as u64;
        if written > budget {
            return Err(UnpackError::TooLarge { limit });
        }
        output.write_all(&buffer[..count]).map_err(io_error)?;
    }

    output.flush().map_err(io_error)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_split_safely() {
        assert_eq!(
            split_entry_name("a/./b//c.txt"),
            Ok(vec!["a".into(), "b".into(), "c.txt".into()])
        );
        assert_eq!(split_entry_name("dir/"), Ok(vec!["dir".into()]));
        assert_eq!(
            split_entry_name("../evil"),
            Err(UnsafeEntryKind::PathTraversal)
        );
        assert_eq!(
            split_entry_name("a/../../evil"),
            Err(UnsafeEntryKind::PathTraversal)
        );
        assert_eq!(
            split_entry_name("/etc/passwd"),
            Err(UnsafeEntryKind::AbsolutePath)
        );
        assert_eq!(
            split_entry_name("C:/Windows/x"),
            Err(UnsafeEntryKind::AbsolutePath)
        );
        assert_eq!(
            split_entry_name("..\\evil"),
            Err(UnsafeEntryKind::Backslash)
        );
        assert_eq!(split_entry_name("a\0b"), Err(UnsafeEntryKind::NulByte));
    }

    #[test]
    fn unix_file_types_are_checked() {
        assert_eq!(check_file_type(0o100_644), Ok(()));
        assert_eq!(check_file_type(0o040_755), Ok(()));
        assert_eq!(check_file_type(0o644), Ok(()));
        assert_eq!(check_file_type(0o120_777), Err(UnsafeEntryKind::Symlink));
        assert_eq!(
            check_file_type(0o010_644),
            Err(UnsafeEntryKind::NotRegularFile { mode: 0o010_644 })
        );
    }
}
