//! Removal of secret values from text the agent publishes: logs, results,
//! `/readyz`, metrics and pod annotations.
//!
//! Model URLs already reach errors through the model store's redaction, but
//! other errors (GStreamer's, an MQTT client's) may quote a stream URL with
//! its password in it. Every message the serve command publishes about an
//! error goes through [`Redactor::redact`].

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use url::Url;
use visionfleet_model::REDACTED;

/// The secret values seen so far, shared by every part of the agent.
///
/// Values are only added, never removed: a message about an old config may
/// still quote the password that config had.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self
            .secrets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("Redactor").field("secrets", &count).finish()
    }
}

impl Redactor {
    /// Adds `secret`, and its encoded forms as they appear in a URL's
    /// userinfo and query.
    pub fn add(&self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let mut forms = vec![secret.to_owned()];
        forms.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
        if let Some(userinfo) = userinfo_encoding(secret) {
            forms.push(userinfo);
        }

        let mut secrets = self.secrets.write().unwrap_or_else(PoisonError::into_inner);
        for value in forms {
            if !secrets.contains(&value) {
                secrets.push(value);
            }
        }
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|value| std::cmp::Reverse(value.len()));
    }

    /// Adds the secret parts of a URL: its password and every query value.
    pub fn add_url(&self, raw: &str) {
        let Ok(url) = Url::parse(raw) else {
            return;
        };
        if let Some(password) = url.password() {
            self.add(password);
        }
        for (_, value) in url.query_pairs() {
            self.add(&value);
        }
        if let Some(query) = url.query() {
            for pair in query.split('&') {
                self.add(pair.split_once('=').map_or(pair, |(_, value)| value));
            }
        }
    }

    /// Returns `text` with every known secret replaced by `REDACTED`.
    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.read().unwrap_or_else(PoisonError::into_inner);
        let mut redacted = text.to_owned();
        for secret in secrets.iter() {
            if redacted.contains(secret.as_str()) {
                redacted = redacted.replace(secret.as_str(), REDACTED);
            }
        }
        redacted
    }
}

/// Returns `secret` percent-encoded as a URL password, as `url` writes it.
fn userinfo_encoding(secret: &str) -> Option<String> {
    let mut url = Url::parse("http://host/").ok()?;
    url.set_password(Some(secret)).ok()?;
    url.password().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_plain_and_encoded_secret() {
        let redactor = Redactor::default();
        redactor.add("p@ss word");

        let text = redactor.redact(
            "rtsp://viewer:p%40ss%20word@cam/1 failed; ?password=p%40ss+word; password p@ss word",
        );

        assert_eq!(
            text,
            "rtsp://viewer:REDACTED@cam/1 failed; ?password=REDACTED; password REDACTED"
        );
    }

    #[test]
    fn url_query_values_become_secrets() {
        let redactor = Redactor::default();
        redactor.add_url("https://models.example/m.zip?sv=2024&sig=SECRET123");

        let text =
            redactor.redact("fetch of https://models.example/m.zip?sv=2024&sig=SECRET123 failed");

        assert!(!text.contains("SECRET123"), "{text}");
        assert!(!text.contains("2024"), "{text}");
    }

    #[test]
    fn empty_secret_ignored() {
        let redactor = Redactor::default();
        redactor.add("");

        assert_eq!(redactor.redact("text"), "text");
    }
}
