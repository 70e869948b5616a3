//! Downloading one URL into a partial file, with retries and resume.
//!
//! Each attempt resumes from the bytes already on disk with `Range` and
//! `If-Range`. A server whose file changed, or one that ignores `Range`,
//! responds 200 with the whole file, and the download restarts from zero.
//! Only transient failures are retried, after a capped exponential backoff.

use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::{Client, StatusCode};
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::cache::{PartialFile, Validators};
use crate::error::FetchError;
use crate::http;
use crate::policy::FetchPolicy;
use crate::redact::{RedactedUrl, Secrets};

/// Maximum bytes of an error response read to explain a 401 or 403.
const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;

/// Maximum characters of server-provided error detail kept in an error.
const MAX_ERROR_DETAIL_CHARS: usize = 300;

/// Result of a completed download.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The server confirmed with 304 that the cached file is current.
    NotModified,
    /// The whole file is in the partial file.
    Complete {
        validators: Validators,
        content_type: Option<String>,
    },
}

/// Counters for the caller's metrics.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stats {
    pub attempts: u32,
    /// Body bytes received over the network, across all attempts.
    pub bytes_downloaded: u64,
    /// Whether any attempt continued from earlier data with a 206 response.
    pub resumed: bool,
}

/// One URL to download under one policy.
pub(crate) struct Downloader<'a> {
    pub client: &'a Client,
    pub url: &'a Url,
    pub policy: &'a FetchPolicy,
}

impl Downloader<'_> {
    /// Downloads into `partial`, retrying transient failures. With
    /// `conditional`, the first request from zero is conditional on the file
    /// having changed since the response that had those validators.
    pub(crate) async fn run(
        &self,
        partial: &PartialFile,
        conditional: Option<&Validators>,
    ) -> (Result<Outcome, FetchError>, Stats) {
        let redacted = RedactedUrl::from_url(self.url);
        let mut stats = Stats::default();
        let max_attempts = self.policy.max_attempts.max(1);

        loop {
            stats.attempts += 1;
            let error = match self.attempt(partial, conditional, &mut stats).await {
                Ok(outcome) => return (Ok(outcome), stats),
                Err(error) => error,
            };

            if !error.is_transient() || stats.attempts >= max_attempts {
                return (Err(error), stats);
            }

            let delay = self.policy.retry_delay(stats.attempts, error.retry_after());
            tracing::warn!(
                url = %redacted,
                attempt = stats.attempts,
                max_attempts,
                delay_ms = delay.as_millis() as u64,
                reason = error.reason(),
                %error,
                "Retrying model download"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        partial: &PartialFile,
        conditional: Option<&Validators>,
        stats: &mut Stats,
    ) -> Result<Outcome, FetchError> {
        let (offset, stored) = partial.resume_point()?;
        let redacted = RedactedUrl::from_url(self.url);
        tracing::info!(url = %redacted, attempt = stats.attempts, offset, "Starting model download");

        let mut request = self.client.get(self.url.clone());
        if offset > 0 {
            let if_range = stored.if_range().unwrap_or_default();
            request = request
                .header(header::RANGE, format!("bytes={offset}-"))
                .header(header::IF_RANGE, if_range);
        } else if let Some(validators) = conditional {
            if let Some(etag) = &validators.etag {
                request = request.header(header::IF_NONE_MATCH, etag);
            }
            if let Some(last_modified) = &validators.last_modified {
                request = request.header(header::IF_MODIFIED_SINCE, last_modified);
            }
        }

        let response = request
            .send()
            .await
            .map_err(|error| http::request_error(error, self.url))?;
        let status = response.status();

        let start = match status {
            StatusCode::NOT_MODIFIED if offset == 0 && conditional.is_some() => {
                return Ok(Outcome::NotModified);
            }
            StatusCode::OK => 0,
            StatusCode::PARTIAL_CONTENT => {
                content_range_start(response.headers()).unwrap_or(u64::MAX)
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                partial.discard()?;
                return Err(FetchError::RequestFailed {
                    url: redacted,
                    detail: "server rejected the resume range (HTTP 416); restarting from zero"
                        .to_owned(),
                });
            }
            _ => return Err(self.status_error(response, partial).await),
        };

        if status == StatusCode::PARTIAL_CONTENT && start != offset {
            partial.discard()?;
            return Err(FetchError::RequestFailed {
                url: redacted,
                detail: format!(
                    "server resumed at byte {start} instead of {offset}; restarting from zero"
                ),
            });
        }

        let content_type = header_text(response.headers(), header::CONTENT_TYPE);
        if content_type.as_deref().is_some_and(is_html_content_type) {
            partial.discard()?;
            return Err(FetchError::HtmlPage {
                url: redacted,
                content_type,
            });
        }

        if offset > 0 && start == 0 {
            tracing::info!(url = %redacted, offset, "Server sent the whole file instead of the requested range; restarting from zero");
        }

        let validators = Validators::from_headers(response.headers());
        let file = if start == 0 {
            partial.restart(&validators)?
        } else {
            partial.append()?
        };
        if start > 0 {
            stats.resumed = true;
        }

        let expected = response.content_length().map(|length| start + length);
        if expected.is_some_and(|total| total > self.policy.max_download_bytes) {
            partial.discard()?;
            return Err(FetchError::DownloadTooLarge {
                url: redacted,
                limit: self.policy.max_download_bytes,
            });
        }

        let total = self
            .stream_body(response, file, start, expected, partial, stats)
            .await?;
        if total == 0 {
            partial.discard()?;
            return Err(FetchError::EmptyBody { url: redacted });
        }

        let validators = if start == 0 { validators } else { stored };
        Ok(Outcome::Complete {
            validators,
            content_type,
        })
    }

    /// Appends the body to `file`, which contains `start` bytes, and returns
    /// the total length.
    async fn stream_body(
        &self,
        mut response: reqwest::Response,
        file: std::fs::File,
        start: u64,
        expected: Option<u64>,
        partial: &PartialFile,
        stats: &mut Stats,
    ) -> Result<u64, FetchError> {
        let path = partial.data_path().to_owned();
        let mut file = tokio::fs::File::from_std(file);
        let mut total = start;

        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(error) => {
                    file.flush()
                        .await
                        .map_err(|error| FetchError::cache(&path, error))?;
                    return Err(http::body_error(error, self.url, total, expected));
                }
            };

            stats.bytes_downloaded += chunk.len() as u64;
            total += chunk.len() as u64;
            if total > self.policy.max_download_bytes {
                drop(file);
                partial.discard()?;
                return Err(FetchError::DownloadTooLarge {
                    url: RedactedUrl::from_url(self.url),
                    limit: self.policy.max_download_bytes,
                });
            }
            file.write_all(&chunk)
                .await
                .map_err(|error| FetchError::cache(&path, error))?;
        }

        file.flush()
            .await
            .map_err(|error| FetchError::cache(&path, error))?;
        if let Some(expected) = expected
            && total < expected
        {
            return Err(FetchError::ConnectionCut {
                url: RedactedUrl::from_url(self.url),
                received: total,
                expected: Some(expected),
            });
        }
        Ok(total)
    }

    /// Maps an unsuccessful status to its error. Permanent failures discard
    /// the partial data, because the next fetch should start clean.
    async fn status_error(&self, response: reqwest::Response, partial: &PartialFile) -> FetchError {
        let url = RedactedUrl::from_url(self.url);
        let status = response.status();
        let retry_after = retry_after(response.headers());

        let error = match status.as_u16() {
            401 | 403 => {
                let detail = read_error_detail(response, &Secrets::of(self.url)).await;
                FetchError::AccessDenied {
                    url,
                    status: status.as_u16(),
                    detail,
                }
            }
            404 | 410 => FetchError::NotFound {
                url,
                status: status.as_u16(),
            },
            429 => FetchError::RateLimited { url, retry_after },
            500..=599 => FetchError::ServerError {
                url,
                status: status.as_u16(),
                retry_after,
            },
            other => FetchError::HttpStatus { url, status: other },
        };

        if !error.is_transient()
            && let Err(discard_error) = partial.discard()
        {
            tracing::warn!(error = %discard_error, "Failed to discard partial model download");
        }
        error
    }
}

/// Parses the first byte position of `Content-Range: bytes <start>-<end>/<size>`.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let value = header_text(headers, header::CONTENT_RANGE)?;
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    let (start, _) = range.split_once('-')?;
    start.trim().parse().ok()
}

/// Parses `Retry-After` in its delay-seconds form. An HTTP-date is ignored,
/// so the computed backoff applies.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = header_text(headers, header::RETRY_AFTER)?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

fn is_html_content_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "text/html" || essence == "application/xhtml+xml"
}

/// Reads the start of an error body and extracts the storage service's
/// explanation, with any echoed secret replaced.
async fn read_error_detail(mut response: reqwest::Response, secrets: &Secrets) -> Option<String> {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }

    let text = String::from_utf8_lossy(&body);
    let detail = storage_error_detail(&text)?;
    let detail: String = secrets
        .scrub(&detail)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_DETAIL_CHARS)
        .collect();
    Some(detail)
}

/// Extracts `Code` and the most specific message from an Azure Storage or S3
/// XML error body, such as `<Error><Code>AuthenticationFailed</Code>
/// <AuthenticationErrorDetail>Signed expiry time [...] must be after signed
/// start time [...]</AuthenticationErrorDetail></Error>`.
fn storage_error_detail(body: &str) -> Option<String> {
    let code = xml_element(body, "Code");
    let message = xml_element(body, "AuthenticationErrorDetail").or_else(|| {
        xml_element(body, "Message")
            .map(|message| message.lines().next().unwrap_or_default().to_owned())
    });

    match (code, message) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (Some(code), None) => Some(code),
        (None, Some(message)) => Some(message),
        (None, None) => None,
    }
}

/// Returns the trimmed text of the first `<name>…</name>` in `body`.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&close)? + start;
    let text = body[start..end].trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_authentication_failure_is_explained() {
        let body = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code>\
            <Message>Server failed to authenticate the request.\nRequestId:1\nTime:2024</Message>\
            <AuthenticationErrorDetail>Signed expiry time [Mon, 01 Jan 2024 00:00:00 GMT] must be after signed start time [Tue, 02 Jan 2024 00:00:00 GMT]</AuthenticationErrorDetail></Error>";
        let detail = storage_error_detail(body).expect("detail");
        assert!(
            detail.starts_with("AuthenticationFailed: Signed expiry time"),
            "{detail}"
        );
    }

    #[test]
    fn s3_error_uses_first_message_line() {
        let body =
            "<Error><Code>AccessDenied</Code><Message>Request has expired\nmore</Message></Error>";
        assert_eq!(
            storage_error_detail(body).as_deref(),
            Some("AccessDenied: Request has expired")
        );
        assert_eq!(storage_error_detail("<html>no</html>"), None);
    }

    #[test]
    fn content_range_start_is_parsed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_RANGE,
            "bytes 100-199/200".parse().expect("valid header"),
        );
        assert_eq!(content_range_start(&headers), Some(100));
    }

    #[test]
    fn html_content_types_are_recognized() {
        assert!(is_html_content_type("text/html; charset=utf-8"));
        assert!(is_html_content_type("TEXT/HTML"));
        assert!(!is_html_content_type("application/zip"));
        assert!(!is_html_content_type("application/octet-stream"));
    }
}
