//! Redaction of secrets in model URLs before they reach errors and logs.
//!
//! Signed URLs carry their credential in the query string (Azure SAS `sig=`,
//! S3 `X-Amz-Signature=`), so every query value is replaced, not only known
//! parameter names. A userinfo password and the fragment are replaced too.

use std::fmt;

use url::Url;

/// The placeholder that replaces each secret part.
pub const REDACTED: &str = "REDACTED";

/// A model location safe to print: query values, password and fragment replaced.
///
/// The only way to build one is [`RedactedUrl::new`], so a value of this type
/// never contains the secret parts of the original.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedactedUrl(String);

impl RedactedUrl {
    /// Redacts `raw`, a URL or a local path.
    pub fn new(raw: &str) -> Self {
        match Url::parse(raw) {
            Ok(url) => Self::from_url(&url),
            Err(_) => Self(redact_unparsed(raw)),
        }
    }

    /// Redacts a parsed URL.
    pub fn from_url(url: &Url) -> Self {
        let mut redacted = url.clone();

        if redacted.password().is_some() {
            // set_password fails only for URLs without a host, and such a URL
            // cannot carry the password found above.
            let _ = redacted.set_password(Some(REDACTED));
        }

        if let Some(query) = url.query() {
            redacted.set_query(Some(&redact_query(query)));
        }

        if url.fragment().is_some() {
            redacted.set_fragment(Some(REDACTED));
        }

        Self(redacted.into())
    }

    /// Returns the redacted text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Replaces each query value, and each bare query item without `=`, because
/// such an item can itself be a token.
fn redact_query(query: &str) -> String {
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) => format!("{key}={REDACTED}"),
            None if pair.is_empty() => String::new(),
            None => REDACTED.to_owned(),
        })
        .collect();
    pairs.join("&")
}

/// Redacts text that is not a valid URL: a local path keeps everything before
/// the first `?` or `#`, and text with a scheme but an invalid body keeps only
/// the scheme, because its userinfo cannot be located reliably.
fn redact_unparsed(raw: &str) -> String {
    if let Some((scheme, _)) = raw.split_once("://") {
        return format!("{scheme}://{REDACTED}");
    }

    match raw.find(['?', '#']) {
        Some(index) => format!("{}?{REDACTED}", &raw[..index]),
        None => raw.to_owned(),
    }
}

/// Secret strings taken from a URL: its query values, password and fragment.
///
/// Used to scrub text that a server or a library produced from the request,
/// such as an error body that echoes the signature back.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    /// Collects the secret parts of `url`. Values shorter than 4 characters are
    /// skipped, because scrubbing them would garble ordinary words and they are
    /// not credentials.
    pub(crate) fn of(url: &Url) -> Self {
        let mut secrets: Vec<String> = url
            .query_pairs()
            .map(|(_, value)| value.into_owned())
            .collect();
        secrets.extend(url.password().map(str::to_owned));
        secrets.extend(url.fragment().map(str::to_owned));

        // Servers may echo a value in its raw, percent-encoded form.
        if let Some(query) = url.query() {
            secrets.extend(
                query
                    .split('&')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(_, value)| value.to_owned()),
            );
        }

        secrets.retain(|secret| secret.len() >= 4);
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.dedup();
        Self(secrets)
    }

    /// Replaces every secret in `text` with [`REDACTED`].
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut scrubbed = text.to_owned();
        for secret in &self.0 {
            scrubbed = scrubbed.replace(secret.as_str(), REDACTED);
        }
        scrubbed
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} values)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_redacted() {
        let url = "https://acct.blob.core.windows.net/m/model.zip?sv=2022-11-02&se=2024-01-01&sig=abc%2Bdef";
        let redacted = RedactedUrl::new(url);
        assert_eq!(
            redacted.as_str(),
            "https://acct.blob.core.windows.net/m/model.zip?sv=REDACTED&se=REDACTED&sig=REDACTED"
        );
    }

    #[test]
    fn password_and_fragment_are_redacted() {
        let redacted = RedactedUrl::new("https://user:hunter2@example.com/model.zip#token");
        assert_eq!(
            redacted.as_str(),
            "https://user:REDACTED@example.com/model.zip#REDACTED"
        );
    }

    #[test]
    fn bare_query_item_is_redacted() {
        let redacted = RedactedUrl::new("https://example.com/model.zip?secretonly&a=1");
        assert_eq!(
            redacted.as_str(),
            "https://example.com/model.zip?REDACTED&a=REDACTED"
        );
    }

    #[test]
    fn local_path_is_kept() {
        assert_eq!(
            RedactedUrl::new("/models/model.onnx").as_str(),
            "/models/model.onnx"
        );
        assert_eq!(
            RedactedUrl::new("models/a.zip?x=1").as_str(),
            "models/a.zip?REDACTED"
        );
    }

    #[test]
    fn invalid_url_keeps_only_scheme() {
        assert_eq!(
            RedactedUrl::new("https://us er:pw@[bad/x?sig=1").as_str(),
            "https://REDACTED"
        );
    }

    #[test]
    fn secrets_are_scrubbed_from_text() {
        let url = Url::parse("https://example.com/m.zip?sig=abc%2Bdef&sv=1").expect("valid URL");
        let secrets = Secrets::of(&url);
        assert_eq!(
            secrets.scrub("bad signature abc+def"),
            "bad signature REDACTED"
        );
        assert_eq!(secrets.scrub("raw abc%2Bdef"), "raw REDACTED");
        assert_eq!(secrets.scrub("version 1"), "version 1");
    }
}
