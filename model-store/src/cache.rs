//! The on-disk layout of the model cache.
//!
//! ```text
//! <cache>/sha256/<hex>/      verified, unpacked packages, keyed by the sha256 of the downloaded file
//! <cache>/partial/<key>.part download in progress, kept across restarts for resuming
//! <cache>/partial/<key>.json the validators (ETag, Last-Modified) that the partial data belongs to
//! <cache>/urls/<key>.json    the digest and validators last seen for a URL, for conditional requests
//! <cache>/tmp/               unpacking in progress
//! ```
//!
//! `<key>` is the sha256 of the full URL, so a URL's secret query never
//! appears in a file name, and a renewed signature starts a fresh record.
//! A package folder is only ever created by renaming a fully unpacked and
//! verified folder into place, so its presence means it was complete.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::error::FetchError;

/// Age after which leftovers in `tmp/` are removed; unpacking takes seconds,
/// so anything this old was left by a process that stopped mid-way.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// HTTP validators of a response, used for `If-Range` and `If-None-Match`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    pub(crate) fn from_headers(headers: &reqwest::header::HeaderMap) -> Self {
        let text = |name| {
            headers
                .get(name)
                .and_then(|value: &reqwest::header::HeaderValue| value.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            etag: text(reqwest::header::ETAG),
            last_modified: text(reqwest::header::LAST_MODIFIED),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }

    /// Returns the value for `If-Range`: a strong ETag, or else `Last-Modified`.
    /// RFC 9110 allows only strong validators there, so a weak ETag is skipped.
    pub(crate) fn if_range(&self) -> Option<&str> {
        self.etag
            .as_deref()
            .filter(|etag| !etag.starts_with("W/"))
            .or(self.last_modified.as_deref())
    }
}

/// Record of a URL's last successful download.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct UrlRecord {
    /// The redacted URL, for people reading the cache folder.
    pub url: String,
    /// The hex sha256 of the file the URL returned.
    pub digest: String,
    pub validators: Validators,
}

/// Paths and file operations of one cache folder.
#[derive(Clone, Debug)]
pub(crate) struct CacheLayout {
    root: PathBuf,
}

impl CacheLayout {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Returns the cache key of a URL or path: the hex sha256 of its full text.
    pub(crate) fn key(location: &str) -> String {
        hex::encode(Sha256::digest(location.as_bytes()))
    }

    pub(crate) fn package_dir(&self, hex: &str) -> PathBuf {
        self.root.join("sha256").join(hex)
    }

    pub(crate) fn partial(&self, key: &str) -> PartialFile {
        let folder = self.root.join("partial");
        PartialFile {
            data: folder.join(format!("{key}.part")),
            state: folder.join(format!("{key}.json")),
        }
    }

    fn url_record_path(&self, key: &str) -> PathBuf {
        self.root.join("urls").join(format!("{key}.json"))
    }

    fn temp_root(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Creates the cache folders and removes stale leftovers in `tmp/`.
    pub(crate) fn prepare(&self) -> Result<(), FetchError> {
        for folder in ["sha256", "partial", "urls", "tmp"] {
            let path = self.root.join(folder);
            fs::create_dir_all(&path).map_err(|error| FetchError::cache(&path, error))?;
        }

        self.remove_stale_temp();
        Ok(())
    }

    fn remove_stale_temp(&self) {
        let Ok(entries) = fs::read_dir(self.temp_root()) else {
            return;
        };

        for entry in entries.flatten() {
            let age = entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .ok()
                .and_then(|modified| SystemTime::now().duration_since(modified).ok());
            if age.is_some_and(|age| age > STALE_TEMP_AGE) {
                let path = entry.path();
                let removed = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                if let Err(error) = removed {
                    tracing::warn!(path = %path.display(), %error, "Failed to remove stale temporary file from the model cache");
                }
            }
        }
    }

    /// Creates an empty folder under `tmp/`, removed when dropped.
    pub(crate) fn temp_dir(&self) -> Result<TempDir, FetchError> {
        let root = self.temp_root();
        tempfile::Builder::new()
            .prefix("unpack-")
            .tempdir_in(&root)
            .map_err(|error| FetchError::cache(&root, error))
    }

    /// Creates an empty file under `tmp/`, removed when dropped.
    pub(crate) fn temp_file(&self) -> Result<tempfile::NamedTempFile, FetchError> {
        let root = self.temp_root();
        tempfile::Builder::new()
            .prefix("copy-")
            .tempfile_in(&root)
            .map_err(|error| FetchError::cache(&root, error))
    }

    /// Moves an unpacked, verified folder to `sha256/<hex>`. Returns `false`
    /// when that folder already exists, and leaves the existing one in place:
    /// a concurrent fetch installed the same content first.
    pub(crate) fn install(&self, unpacked: TempDir, hex: &str) -> Result<bool, FetchError> {
        let target = self.package_dir(hex);
        if target.exists() {
            return Ok(false);
        }

        match fs::rename(unpacked.path(), &target) {
            Ok(()) => {
                // The folder now lives at `target`; keep TempDir from deleting it.
                let _ = unpacked.keep();
                Ok(true)
            }
            Err(_) if target.exists() => Ok(false),
            Err(error) => Err(FetchError::cache(&target, error)),
        }
    }

    /// Removes `sha256/<hex>` after it failed verification. The folder is
    /// first renamed into `tmp/`, so a crash never leaves a half-deleted
    /// folder under its digest.
    pub(crate) fn evict_corrupt(&self, hex: &str) -> Result<(), FetchError> {
        let target = self.package_dir(hex);
        let doomed = self
            .temp_root()
            .join(format!("corrupt-{hex}-{}", fastrand::u64(..)));
        fs::rename(&target, &doomed).map_err(|error| FetchError::cache(&target, error))?;
        fs::remove_dir_all(&doomed).map_err(|error| FetchError::cache(&doomed, error))
    }

    pub(crate) fn read_url_record(&self, key: &str) -> Option<UrlRecord> {
        let text = fs::read_to_string(self.url_record_path(key)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub(crate) fn write_url_record(&self, key: &str, record: &UrlRecord) -> Result<(), FetchError> {
        write_json_atomically(&self.url_record_path(key), record)
    }
}

/// A download in progress and the validators of the response it came from.
#[derive(Clone, Debug)]
pub(crate) struct PartialFile {
    data: PathBuf,
    state: PathBuf,
}

impl PartialFile {
    pub(crate) fn data_path(&self) -> &Path {
        &self.data
    }

    /// Returns the length of the data to resume from and the validators it
    /// belongs to. Data without a strong validator cannot be resumed safely,
    /// because the file on the server may have changed, so it is discarded.
    pub(crate) fn resume_point(&self) -> Result<(u64, Validators), FetchError> {
        let validators: Validators = fs::read_to_string(&self.state)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let length = match fs::metadata(&self.data) {
            Ok(metadata) => metadata.len(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => 0,
            Err(error) => return Err(FetchError::cache(&self.data, error)),
        };

        if length > 0 && validators.if_range().is_some() {
            return Ok((length, validators));
        }

        self.discard()?;
        Ok((0, Validators::default()))
    }

    /// Starts the data over for a response with `validators`.
    pub(crate) fn restart(&self, validators: &Validators) -> Result<fs::File, FetchError> {
        write_json_atomically(&self.state, validators)?;
        fs::File::create(&self.data).map_err(|error| FetchError::cache(&self.data, error))
    }

    /// Opens the data for appending the rest of a resumed response.
    pub(crate) fn append(&self) -> Result<fs::File, FetchError> {
        fs::OpenOptions::new()
            .append(true)
            .open(&self.data)
            .map_err(|error| FetchError::cache(&self.data, error))
    }

    /// Removes the data and its state.
    pub(crate) fn discard(&self) -> Result<(), FetchError> {
        for path in [&self.data, &self.state] {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(FetchError::cache(path, error)),
            }
        }
        Ok(())
    }
}

/// Writes JSON to a sibling temporary file and renames it over `path`, so a
/// reader never sees a half-written file.
fn write_json_atomically<T: Serialize>(path: &Path, value: &T) -> Result<(), FetchError> {
    let text = serde_json::to_vec_pretty(value)
        .map_err(|error| FetchError::cache(path, io::Error::other(error)))?;
    let folder = path.parent().unwrap_or(Path::new("."));

    let mut file = tempfile::NamedTempFile::new_in(folder)
        .map_err(|error| FetchError::cache(folder, error))?;
    io::Write::write_all(&mut file, &text).map_err(|error| FetchError::cache(path, error))?;
    file.persist(path)
        .map_err(|error| FetchError::cache(path, error.error))?;
    Ok(())
}
