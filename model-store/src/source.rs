//! The model source, and the checks on its URL and pin.

use std::fmt;
use std::path::PathBuf;

use url::Url;

use crate::error::FetchError;
use crate::http;
use crate::policy::FetchPolicy;
use crate::redact::RedactedUrl;

/// A model to fetch.
#[derive(Clone, PartialEq, Eq)]
pub struct ModelSource {
    /// An `http`, `https` or `file` URL, or a local path. It may carry a
    /// secret (a SAS signature in its query), so it is only ever printed
    /// redacted, including by `Debug`.
    pub url: String,
    /// Expected sha256 of the downloaded file as 64 hexadecimal digits,
    /// optionally prefixed with `sha256:`. When set, a file with another
    /// digest is rejected, and a package already cached under this digest is
    /// used without any request.
    pub sha256: Option<String>,
}

impl ModelSource {
    /// Returns the URL with its secrets replaced, for logs and messages.
    pub fn redacted_url(&self) -> RedactedUrl {
        RedactedUrl::new(&self.url)
    }
}

impl fmt::Debug for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelSource")
            .field("url", &self.redacted_url())
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// A checked model location.
#[derive(Clone, Debug)]
pub(crate) enum Location {
    Remote(Url),
    Local(PathBuf),
}

impl Location {
    /// Parses `raw` and checks its scheme and host against `policy`.
    pub(crate) fn parse(raw: &str, policy: &FetchPolicy) -> Result<Self, FetchError> {
        let invalid = |detail: &str| FetchError::InvalidUrl {
            url: RedactedUrl::new(raw),
            detail: detail.to_owned(),
        };
        if raw.trim().is_empty() {
            return Err(invalid("the URL is empty"));
        }

        let url = match Url::parse(raw) {
            Ok(url) => url,
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                check_scheme("file", RedactedUrl::new(raw), policy)?;
                return Ok(Self::Local(PathBuf::from(raw)));
            }
            Err(error) => return Err(invalid(&error.to_string())),
        };

        check_scheme(url.scheme(), RedactedUrl::from_url(&url), policy)?;
        match url.scheme() {
            "http" | "https" => {
                if url.host().is_none() {
                    return Err(invalid("the URL has no host"));
                }
                http::check_host(&url, policy)?;
                Ok(Self::Remote(url))
            }
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| invalid("the file URL is not a local absolute path"))?;
                Ok(Self::Local(path))
            }
            other => Err(FetchError::SchemeNotAllowed {
                url: RedactedUrl::from_url(&url),
                scheme: other.to_owned(),
                allowed: "http, https, file (supported by this fetcher)".to_owned(),
            }),
        }
    }
}

fn check_scheme(scheme: &str, url: RedactedUrl, policy: &FetchPolicy) -> Result<(), FetchError> {
    if policy.allows_scheme(scheme) {
        return Ok(());
    }
    Err(FetchError::SchemeNotAllowed {
        url,
        scheme: scheme.to_owned(),
        allowed: policy.allowed_schemes.join(", "),
    })
}

/// Normalizes a sha256 pin to 64 lowercase hexadecimal digits.
pub(crate) fn parse_pin(pin: &str) -> Result<String, FetchError> {
    let trimmed = pin.trim();
    let hex = trimmed.strip_prefix("sha256:").unwrap_or(trimmed);
    if hex.len() != 64 || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(FetchError::InvalidPin {
            pin: pin.to_owned(),
        });
    }
    Ok(hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn pins_are_normalized() {
        let hex = "AB".repeat(32);
        assert_eq!(parse_pin(&hex).expect("valid pin"), "ab".repeat(32));
        assert_eq!(
            parse_pin(&format!("sha256:{hex}")).expect("valid pin"),
            "ab".repeat(32)
        );
        assert_eq!(
            parse_pin("abc").expect_err("short pin").reason(),
            "InvalidDigestPin"
        );
        assert_eq!(
            parse_pin(&"zz".repeat(32)).expect_err("not hex").reason(),
            "InvalidDigestPin"
        );
    }

    #[test]
    fn locations_are_classified() {
        let policy = FetchPolicy::default();
        assert!(matches!(
            Location::parse("https://example.com/m.zip", &policy),
            Ok(Location::Remote(_))
        ));
        assert!(
            matches!(Location::parse("file:///models/m.zip", &policy), Ok(Location::Local(path)) if path == Path::new("/models/m.zip"))
        );
        assert!(matches!(
            Location::parse("/models/m.onnx", &policy),
            Ok(Location::Local(_))
        ));
        assert!(matches!(
            Location::parse("models/m.onnx", &policy),
            Ok(Location::Local(_))
        ));
    }

    #[test]
    fn disallowed_schemes_are_rejected() {
        let https_only = FetchPolicy {
            allowed_schemes: vec!["https".to_owned()],
            ..FetchPolicy::default()
        };
        for raw in [
            "http://example.com/m.zip",
            "file:///m.zip",
            "/m.zip",
            "ftp://example.com/m.zip",
        ] {
            let error = Location::parse(raw, &https_only).expect_err("rejected scheme");
            assert_eq!(error.reason(), "SchemeNotAllowed", "{raw}");
        }

        let everything = FetchPolicy {
            allowed_schemes: vec!["ftp".to_owned()],
            ..FetchPolicy::default()
        };
        let error = Location::parse("ftp://example.com/m.zip", &everything)
            .expect_err("unsupported scheme");
        assert_eq!(error.reason(), "SchemeNotAllowed");
    }

    #[test]
    fn debug_output_is_redacted() {
        let source = ModelSource {
            url: "https://a.example/m.zip?sig=topsecret".to_owned(),
            sha256: None,
        };
        let printed = format!("{source:?}");
        assert!(printed.contains("sig=REDACTED"), "{printed}");
        assert!(!printed.contains("topsecret"), "{printed}");
    }
}
