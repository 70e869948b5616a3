//! Removal of a source's secrets from text that GStreamer produced, such as
//! error messages and their debug details.

use std::fmt;

use percent_encoding::percent_decode_str;
use url::Url;
use visionfleet_model::REDACTED;

use super::credentials::Credentials;

/// Secrets shorter than this are not scrubbed, because replacing them
/// would garble ordinary words. GStreamer does not print `user-pw`, so this
/// is a second line of defence for the password.
const MIN_SECRET_CHARS: usize = 4;

/// The secret strings of one source: its password and its URL's query
/// values and fragment, raw and percent-decoded.
#[derive(Clone, Default)]
pub(crate) struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    pub(crate) fn new(location: Option<&Url>, credentials: Option<&Credentials>) -> Self {
        let mut secrets = Vec::new();
        if let Some(credentials) = credentials {
            secrets.push(credentials.password().to_owned());
        }
        if let Some(location) = location {
            secrets.extend(location.query_pairs().map(|(_, value)| value.into_owned()));
            if let Some(query) = location.query() {
                secrets.extend(
                    query
                        .split('&')
                        .filter_map(|pair| pair.split_once('=').map(|(_, value)| value))
                        .map(str::to_owned),
                );
            }
            if let Some(fragment) = location.fragment() {
                secrets.push(fragment.to_owned());
                secrets.push(
                    percent_decode_str(fragment)
                        .decode_utf8_lossy()
                        .into_owned(),
                );
            }
        }

        secrets.retain(|secret| secret.chars().count() >= MIN_SECRET_CHARS);
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// Replaces every secret in `text` with `REDACTED`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut scrubbed = text.to_owned();
        for secret in &self.secrets {
            scrubbed = scrubbed.replace(secret.as_str(), REDACTED);
        }
        scrubbed
    }
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} secrets)", self.secrets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_and_query_values_scrubbed() {
        let location = Url::parse("rtsp://cam.local/live?token=abc%2Bdef&channel=1").unwrap();
        let credentials = Credentials::new("viewer".to_owned(), "hunter22".to_owned());
        let scrubber = Scrubber::new(Some(&location), Some(&credentials));

        let text = scrubber.scrub("401 for hunter22 at /live?token=abc%2Bdef (token abc+def)");

        assert_eq!(
            text,
            "401 for REDACTED at /live?token=REDACTED (token REDACTED)"
        );
    }

    #[test]
    fn short_values_left_alone() {
        let location = Url::parse("rtsp://cam.local/live?channel=1").unwrap();
        let scrubber = Scrubber::new(Some(&location), None);

        assert_eq!(scrubber.scrub("channel 1 failed"), "channel 1 failed");
    }
}
