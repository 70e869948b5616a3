//! [`ModelStore`]: fetches model packages into a digest-keyed cache.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use url::Url;

use crate::cache::{CacheLayout, UrlRecord};
use crate::download::{Downloader, Outcome, Stats};
use crate::error::FetchError;
use crate::http;
use crate::onnx::OnnxSignature;
use crate::package::{BARE_MODEL_FILE, ModelPackage};
use crate::policy::FetchPolicy;
use crate::redact::RedactedUrl;
use crate::source::{Location, ModelSource, parse_pin};
use crate::unpack::{UnpackLimits, unpack_zip};

/// Whether a fetch used the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// The pinned digest was cached; no request was sent.
    Hit,
    /// The server responded 304 Not Modified to a conditional request, so no body was downloaded.
    Revalidated,
    /// The file was downloaded or copied.
    Miss,
}

impl CacheStatus {
    /// Returns a stable lowercase word for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Revalidated => "revalidated",
            Self::Miss => "miss",
        }
    }
}

/// Counters of one successful fetch, for the caller's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchReport {
    pub cache: CacheStatus,
    /// HTTP requests sent, retries and the 304 check included; 0 for a cache
    /// hit or a local file.
    pub attempts: u32,
    /// Body bytes received over the network, across attempts.
    pub bytes_downloaded: u64,
    /// Whether the download continued earlier data with a range request.
    pub resumed: bool,
    /// Wall-clock time of the whole fetch.
    pub elapsed: Duration,
}

impl FetchReport {
    /// Returns whether no body was downloaded because the cache already contained the package.
    pub fn is_cache_hit(&self) -> bool {
        matches!(self.cache, CacheStatus::Hit | CacheStatus::Revalidated)
    }

    fn new(cache: CacheStatus, stats: Stats, started: Instant) -> Self {
        Self {
            cache,
            attempts: stats.attempts,
            bytes_downloaded: stats.bytes_downloaded,
            resumed: stats.resumed,
            elapsed: started.elapsed(),
        }
    }
}

/// Downloads, verifies, unpacks and caches model packages.
///
/// Packages live in `<cache>/sha256/<hex>/`, keyed by the sha256 of the
/// downloaded file. A fetch never deletes or replaces a cached package that
/// still verifies, so the last good package stays available when an update
/// fails. Without a pin, a URL fetched before is revalidated with a
/// conditional request (`If-None-Match` / `If-Modified-Since`) using the
/// validators stored in `<cache>/urls/`, and a 304 response reuses the cache.
#[derive(Debug)]
pub struct ModelStore {
    cache: CacheLayout,
    /// One lock per cache key, so concurrent fetches of one URL do not share a partial file.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ModelStore {
    /// Creates a store over `cache_dir`; folders are created on the first fetch.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache: CacheLayout::new(cache_dir.into()),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the cache folder.
    pub fn cache_dir(&self) -> &Path {
        self.cache.root()
    }

    /// Fetches `source` and returns its verified package.
    pub async fn fetch(
        &self,
        source: &ModelSource,
        policy: &FetchPolicy,
    ) -> Result<ModelPackage, FetchError> {
        self.fetch_with_report(source, policy)
            .await
            .map(|(package, _)| package)
    }

    /// Fetches `source` and returns its verified package with counters for metrics.
    pub async fn fetch_with_report(
        &self,
        source: &ModelSource,
        policy: &FetchPolicy,
    ) -> Result<(ModelPackage, FetchReport), FetchError> {
        let started = Instant::now();
        let location = Location::parse(&source.url, policy)?;
        let pin = source.sha256.as_deref().map(parse_pin).transpose()?;

        let cache = self.cache.clone();
        run_blocking(move || cache.prepare()).await?;

        let key = CacheLayout::key(&source.url);
        let lock = self.lock_for(&key);
        let _guard = lock.lock().await;

        if let Some(hex) = &pin
            && let Some(package) = self.load_verified(hex).await?
        {
            tracing::info!(url = %source.redacted_url(), digest = %package.digest, "Using cached model package for pinned digest");
            return Ok((
                package,
                FetchReport::new(CacheStatus::Hit, Stats::default(), started),
            ));
        }

        match location {
            Location::Remote(url) => {
                self.fetch_remote(&url, &key, pin.as_deref(), policy, started)
                    .await
            }
            Location::Local(path) => {
                self.fetch_local(
                    &path,
                    &source.redacted_url(),
                    pin.as_deref(),
                    policy,
                    started,
                )
                .await
            }
        }
    }

    /// Loads the cached package with `digest` (`sha256:<hex>` or `<hex>`),
    /// or returns `None` when it is not cached or no longer verifies.
    pub async fn load_cached(&self, digest: &str) -> Result<Option<ModelPackage>, FetchError> {
        let hex = parse_pin(digest)?;
        self.load_verified(&hex).await
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(key.to_owned()).or_default().clone()
    }

    async fn fetch_remote(
        &self,
        url: &Url,
        key: &str,
        pin: Option<&str>,
        policy: &FetchPolicy,
        started: Instant,
    ) -> Result<(ModelPackage, FetchReport), FetchError> {
        let redacted = RedactedUrl::from_url(url);
        let client = http::build_client(url, policy)?;
        let downloader = Downloader {
            client: &client,
            url,
            policy,
        };
        let partial = self.cache.partial(key);

        // Revalidation only makes sense without a pin, and only while the package it points at is cached.
        let mut conditional = self.cache.read_url_record(key).filter(|record| {
            pin.is_none()
                && !record.validators.is_empty()
                && self.cache.package_dir(&record.digest).is_dir()
        });

        let mut stats = Stats::default();
        let (validators, content_type) = loop {
            let (result, run_stats) = downloader
                .run(
                    &partial,
                    conditional.as_ref().map(|record| &record.validators),
                )
                .await;
            stats.attempts += run_stats.attempts;
            stats.bytes_downloaded += run_stats.bytes_downloaded;
            stats.resumed |= run_stats.resumed;

            match result? {
                Outcome::Complete {
                    validators,
                    content_type,
                } => break (validators, content_type),
                Outcome::NotModified => {
                    if let Some(record) = conditional.take()
                        && let Some(package) = self.load_verified(&record.digest).await?
                    {
                        tracing::info!(url = %redacted, digest = %package.digest, "Model unchanged on server; using cached package");
                        return Ok((
                            package,
                            FetchReport::new(CacheStatus::Revalidated, stats, started),
                        ));
                    }
                    // The cached package no longer verifies: download without the condition.
                }
            }
        };

        let result = self
            .finish(partial.data_path(), &redacted, pin, policy, content_type)
            .await;
        // Keep the partial file only when a retry could still use it.
        if !result.as_ref().is_err_and(FetchError::is_transient)
            && let Err(error) = partial.discard()
        {
            tracing::warn!(url = %redacted, %error, "Failed to remove finished partial model download");
        }
        let package = result?;

        let record = UrlRecord {
            url: redacted.to_string(),
            digest: package.digest_hex().to_owned(),
            validators,
        };
        if let Err(error) = self.cache.write_url_record(key, &record) {
            tracing::warn!(url = %redacted, %error, "Failed to store validators for conditional requests");
        }

        tracing::info!(
            url = %redacted,
            digest = %package.digest,
            bytes = stats.bytes_downloaded,
            attempts = stats.attempts,
            resumed = stats.resumed,
            "Finished model download"
        );
        Ok((package, FetchReport::new(CacheStatus::Miss, stats, started)))
    }

    async fn fetch_local(
        &self,
        path: &Path,
        redacted: &RedactedUrl,
        pin: Option<&str>,
        policy: &FetchPolicy,
        started: Instant,
    ) -> Result<(ModelPackage, FetchReport), FetchError> {
        let copy = self.cache.temp_file()?;
        let (source, destination, limit, url) = (
            path.to_owned(),
            copy.path().to_owned(),
            policy.max_download_bytes,
            redacted.clone(),
        );
        run_blocking(move || copy_local_file(&source, &destination, limit, &url)).await?;

        let package = self
            .finish(copy.path(), redacted, pin, policy, None)
            .await?;
        tracing::info!(url = %redacted, digest = %package.digest, "Loaded model package from local file");
        Ok((
            package,
            FetchReport::new(CacheStatus::Miss, Stats::default(), started),
        ))
    }

    /// Verifies the complete file at `path`, unpacks it and installs it in
    /// the cache, or returns the cached package when its digest is there.
    async fn finish(
        &self,
        path: &Path,
        url: &RedactedUrl,
        pin: Option<&str>,
        policy: &FetchPolicy,
        content_type: Option<String>,
    ) -> Result<ModelPackage, FetchError> {
        let file = path.to_owned();
        let hex = run_blocking(move || sha256_file(&file)).await?;
        if let Some(expected) = pin
            && expected != hex
        {
            return Err(FetchError::DigestMismatch {
                url: url.clone(),
                expected: expected.to_owned(),
                actual: hex,
            });
        }

        if let Some(package) = self.load_verified(&hex).await? {
            return Ok(package);
        }

        let unpacked = self.cache.temp_dir()?;
        let (file, dest, digest, url_owned) = (
            path.to_owned(),
            unpacked.path().to_owned(),
            format!("sha256:{hex}"),
            url.clone(),
        );
        let limits = UnpackLimits {
            max_unpacked_bytes: policy.max_unpacked_bytes,
            max_entries: policy.max_entries,
        };
        let package = run_blocking(move || {
            unpack_package(&file, &dest, digest, limits, &url_owned, content_type)
        })
        .await?;

        let cache = self.cache.clone();
        let hex_owned = hex.clone();
        let installed = run_blocking(move || cache.install(unpacked, &hex_owned)).await?;
        if !installed {
            // Another fetch installed the same digest first; use that copy.
            if let Some(package) = self.load_verified(&hex).await? {
                return Ok(package);
            }
        }

        Ok(package.relocated(&self.cache.package_dir(&hex)))
    }

    /// Loads `sha256/<hex>` when present. A folder that no longer verifies
    /// (edited or damaged on disk) is evicted, so that a fresh copy can
    /// replace it. A folder that verifies is never touched.
    async fn load_verified(&self, hex: &str) -> Result<Option<ModelPackage>, FetchError> {
        let dir = self.cache.package_dir(hex);
        if !dir.is_dir() {
            return Ok(None);
        }

        let digest = format!("sha256:{hex}");
        let load_dir = dir.clone();
        let loaded = run_blocking(move || Ok(ModelPackage::load(&load_dir, digest))).await?;
        match loaded {
            Ok(package) => Ok(Some(package)),
            Err(error) if error.is_transient() => {
                Err(FetchError::cache(&dir, io::Error::other(error)))
            }
            Err(error) => {
                tracing::warn!(path = %dir.display(), %error, "Cached model package failed verification; evicting it");
                let cache = self.cache.clone();
                let hex = hex.to_owned();
                run_blocking(move || cache.evict_corrupt(&hex)).await?;
                Ok(None)
            }
        }
    }
}

/// The kind of a downloaded file, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileKind {
    Zip,
    Html,
    Other,
}

/// Unpacks a zip, or places a bare ONNX model, in `dest`, and loads the package.
fn unpack_package(
    file: &Path,
    dest: &Path,
    digest: String,
    limits: UnpackLimits,
    url: &RedactedUrl,
    content_type: Option<String>,
) -> Result<ModelPackage, FetchError> {
    match sniff(file).map_err(|error| FetchError::cache(file, error))? {
        FileKind::Zip => {
            let summary = unpack_zip(file, dest, limits).map_err(|source| FetchError::Unpack {
                url: url.clone(),
                source,
            })?;
            tracing::debug!(url = %url, files = summary.files, bytes = summary.unpacked_bytes, stripped_folder = ?summary.stripped_folder, "Unpacked model archive");
        }
        FileKind::Html => {
            return Err(FetchError::HtmlPage {
                url: url.clone(),
                content_type,
            });
        }
        FileKind::Other => {
            // Anything else must be an ONNX model, or the download is not a model at all.
            OnnxSignature::read(file).map_err(|_| FetchError::NotAZip { url: url.clone() })?;
            let model = dest.join(BARE_MODEL_FILE);
            std::fs::copy(file, &model).map_err(|error| FetchError::cache(&model, error))?;
        }
    }

    ModelPackage::load(dest, digest).map_err(|source| FetchError::Package {
        url: url.clone(),
        source,
    })
}

/// Classifies a file by its first bytes: a zip local file header or end of
/// central directory record (an empty zip), or an HTML document.
fn sniff(path: &Path) -> io::Result<FileKind> {
    let mut head = Vec::with_capacity(512);
    File::open(path)?.take(512).read_to_end(&mut head)?;

    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Ok(FileKind::Zip);
    }

    let text = String::from_utf8_lossy(&head);
    let start = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_lowercase();
    if start.starts_with("<!doctype html") || start.starts_with("<html") {
        return Ok(FileKind::Html);
    }
    Ok(FileKind::Other)
}

fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut file = File::open(path).map_err(|error| FetchError::cache(path, error))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(|error| FetchError::cache(path, error))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Copies a local model file into the cache's temporary folder, so that the
/// digest and the unpacked content come from the same bytes even if the
/// original changes meanwhile.
fn copy_local_file(
    source: &Path,
    destination: &Path,
    limit: u64,
    url: &RedactedUrl,
) -> Result<(), FetchError> {
    let local_error = |error| FetchError::LocalFile {
        url: url.clone(),
        source: error,
    };

    let input = File::open(source).map_err(local_error)?;
    let metadata = input.metadata().map_err(local_error)?;
    if metadata.is_dir() {
        return Err(local_error(io::Error::new(
            io::ErrorKind::IsADirectory,
            "the path is a folder, not a file",
        )));
    }
    if metadata.len() > limit {
        return Err(FetchError::DownloadTooLarge {
            url: url.clone(),
            limit,
        });
    }

    let mut output =
        File::create(destination).map_err(|error| FetchError::cache(destination, error))?;
    let copied = io::copy(&mut input.take(limit + 1), &mut output).map_err(local_error)?;
    if copied > limit {
        return Err(FetchError::DownloadTooLarge {
            url: url.clone(),
            limit,
        });
    }
    if copied == 0 {
        return Err(FetchError::EmptyBody { url: url.clone() });
    }
    Ok(())
}

/// Runs blocking file work off the async runtime. A panic in `work` is
/// resumed in the caller.
async fn run_blocking<T, F>(work: F) -> Result<T, FetchError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, FetchError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join_error) => match join_error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(FetchError::cache(
                PathBuf::new(),
                io::Error::other("blocking task cancelled by runtime shutdown"),
            )),
        },
    }
}
