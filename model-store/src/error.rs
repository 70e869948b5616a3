//! The error returned by [`crate::ModelStore::fetch`].
//!
//! Every variant that concerns a location names it as a [`RedactedUrl`], so no
//! error, log line or condition message built from it contains a secret.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::package::PackageError;
use crate::redact::RedactedUrl;
use crate::unpack::UnpackError;

/// Error from fetching a model package.
///
/// [`FetchError::is_transient`] returns whether trying again later can help, and
/// [`FetchError::reason`] gives a stable CamelCase word for condition reasons
/// and metric labels.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The model URL cannot be parsed or has no host.
    #[error("invalid model URL {url}: {detail}")]
    InvalidUrl { url: RedactedUrl, detail: String },

    /// The URL, or a redirect, uses a scheme that the policy does not allow.
    #[error("URL scheme `{scheme}` of {url} is not allowed (allowed: {allowed})")]
    SchemeNotAllowed {
        url: RedactedUrl,
        scheme: String,
        allowed: String,
    },

    /// The sha256 pin is not 64 hexadecimal digits.
    #[error(
        "invalid sha256 pin `{pin}`: expected 64 hexadecimal digits, optionally prefixed with `sha256:`"
    )]
    InvalidPin { pin: String },

    /// The URL, a redirect or a DNS answer points at a link-local or cloud
    /// metadata address.
    #[error("refused to fetch {url}: host `{host}` is {detail}, which the fetch policy blocks")]
    BlockedAddress {
        url: RedactedUrl,
        host: String,
        detail: &'static str,
    },

    /// No connection or no data arrived within the configured timeout.
    #[error("download of {url} timed out while {phase}")]
    DownloadTimedOut {
        url: RedactedUrl,
        phase: &'static str,
    },

    /// The TCP or TLS connection could not be established.
    #[error("connection to {url} failed: {detail}")]
    ConnectionFailed { url: RedactedUrl, detail: String },

    /// The connection closed before the whole body arrived.
    #[error("connection to {url} was cut after {received} bytes{}", expected_suffix(*.expected))]
    ConnectionCut {
        url: RedactedUrl,
        received: u64,
        expected: Option<u64>,
    },

    /// The request failed for another transport reason.
    #[error("request to {url} failed: {detail}")]
    RequestFailed { url: RedactedUrl, detail: String },

    /// More redirects than the client follows.
    #[error("redirect from {url} refused: {detail}")]
    RedirectRejected { url: RedactedUrl, detail: String },

    /// HTTP 401 or 403, such as Azure's `AuthenticationFailed` for an expired SAS token.
    #[error(
        "access denied (HTTP {status}) to {url}{}; if the URL is signed, its signature may have expired: issue a new one",
        detail_suffix(.detail)
    )]
    AccessDenied {
        url: RedactedUrl,
        status: u16,
        detail: Option<String>,
    },

    /// HTTP 404 or 410.
    #[error("model not found at {url} (HTTP {status})")]
    NotFound { url: RedactedUrl, status: u16 },

    /// HTTP 429.
    #[error("server rate-limited the download of {url} (HTTP 429)")]
    RateLimited {
        url: RedactedUrl,
        retry_after: Option<Duration>,
    },

    /// HTTP 5xx.
    #[error("server error (HTTP {status}) for {url}")]
    ServerError {
        url: RedactedUrl,
        status: u16,
        retry_after: Option<Duration>,
    },

    /// Any other unexpected HTTP status.
    #[error("unexpected HTTP status {status} for {url}")]
    HttpStatus { url: RedactedUrl, status: u16 },

    /// The server returned an HTML page, typically a login or landing page
    /// behind a share link, instead of the file.
    #[error("{url} returned an HTML page instead of a model{}; use a direct download link", content_type_suffix(.content_type))]
    HtmlPage {
        url: RedactedUrl,
        content_type: Option<String>,
    },

    /// The server returned success with an empty body.
    #[error("{url} returned an empty body")]
    EmptyBody { url: RedactedUrl },

    /// The file exceeds [`crate::FetchPolicy::max_download_bytes`].
    #[error("{url} is larger than the download limit of {limit} bytes")]
    DownloadTooLarge { url: RedactedUrl, limit: u64 },

    /// The downloaded file's sha256 differs from the pin.
    #[error("sha256 of {url} is {actual}, expected {expected}")]
    DigestMismatch {
        url: RedactedUrl,
        expected: String,
        actual: String,
    },

    /// The file is neither a zip archive nor an ONNX model.
    #[error("{url} is neither a zip archive nor an ONNX model")]
    NotAZip { url: RedactedUrl },

    /// The archive is corrupt, unsafe or over the limits.
    #[error("cannot unpack {url}: {source}")]
    Unpack {
        url: RedactedUrl,
        #[source]
        source: UnpackError,
    },

    /// The unpacked files do not form a usable model package.
    #[error("invalid model package from {url}: {source}")]
    Package {
        url: RedactedUrl,
        #[source]
        source: PackageError,
    },

    /// A `file` URL or local path cannot be read.
    #[error("cannot read local model file {url}: {source}")]
    LocalFile {
        url: RedactedUrl,
        #[source]
        source: io::Error,
    },

    /// Reading or writing the cache directory failed.
    #[error("model cache I/O failed on {}: {source}", .path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl FetchError {
    /// Returns whether trying again later can succeed: timeouts, connection failures,
    /// cut bodies, HTTP 429 and 5xx, and cache I/O errors. Everything about the
    /// content itself (4xx, digests, archives, packages) is permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::DownloadTimedOut { .. }
            | Self::ConnectionFailed { .. }
            | Self::ConnectionCut { .. }
            | Self::RequestFailed { .. }
            | Self::RateLimited { .. }
            | Self::ServerError { .. }
            | Self::Cache { .. } => true,
            Self::LocalFile { source, .. } => !matches!(
                source.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::IsADirectory
            ),
            Self::Unpack { source, .. } => source.is_transient(),
            Self::Package { source, .. } => source.is_transient(),
            Self::InvalidUrl { .. }
            | Self::SchemeNotAllowed { .. }
            | Self::InvalidPin { .. }
            | Self::BlockedAddress { .. }
            | Self::RedirectRejected { .. }
            | Self::AccessDenied { .. }
            | Self::NotFound { .. }
            | Self::HttpStatus { .. }
            | Self::HtmlPage { .. }
            | Self::EmptyBody { .. }
            | Self::DownloadTooLarge { .. }
            | Self::DigestMismatch { .. }
            | Self::NotAZip { .. } => false,
        }
    }

    /// Returns a stable CamelCase word for condition reasons and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidUrl { .. } => "InvalidUrl",
            Self::SchemeNotAllowed { .. } => "SchemeNotAllowed",
            Self::InvalidPin { .. } => "InvalidDigestPin",
            Self::BlockedAddress { .. } => "BlockedAddress",
            Self::DownloadTimedOut { .. } => "DownloadTimedOut",
            Self::ConnectionFailed { .. } => "ConnectionFailed",
            Self::ConnectionCut { .. } => "ConnectionCut",
            Self::RequestFailed { .. } => "RequestFailed",
            Self::RedirectRejected { .. } => "RedirectRejected",
            Self::AccessDenied { .. } => "AccessDenied",
            Self::NotFound { .. } => "NotFound",
            Self::RateLimited { .. } => "RateLimited",
            Self::ServerError { .. } => "ServerError",
            Self::HttpStatus { .. } => "UnexpectedHttpStatus",
            Self::HtmlPage { .. } => "HtmlPage",
            Self::EmptyBody { .. } => "EmptyBody",
            Self::DownloadTooLarge { .. } => "DownloadTooLarge",
            Self::DigestMismatch { .. } => "DigestMismatch",
            Self::NotAZip { .. } => "NotAZip",
            Self::Unpack { source, .. } => source.reason(),
            Self::Package { source, .. } => source.reason(),
            Self::LocalFile { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                "NotFound"
            }
            Self::LocalFile { .. } => "LocalFileUnreadable",
            Self::Cache { .. } => "CacheIoFailed",
        }
    }

    /// Returns the delay that the server requested with `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::ServerError { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    pub(crate) fn cache(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Cache {
            path: path.into(),
            source,
        }
    }
}

fn expected_suffix(expected: Option<u64>) -> String {
    expected
        .map(|total| format!(" of {total}"))
        .unwrap_or_default()
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|text| format!(": {text}"))
        .unwrap_or_default()
}

fn content_type_suffix(content_type: &Option<String>) -> String {
    content_type
        .as_ref()
        .map(|value| format!(" (Content-Type {value})"))
        .unwrap_or_default()
}
