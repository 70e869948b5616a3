//! Stream credentials: from the URL's userinfo, a mounted Secret folder, or
//! environment variables. They are set as element properties (`rtspsrc` and
//! `souphttpsrc` `user-id`/`user-pw`), never written into a URL.

use std::fmt;
use std::path::Path;

use super::SourceError;

/// Environment variable with the stream username, read when neither the URL
/// nor a credentials folder carries one.
pub const USERNAME_ENV: &str = "VISIONFLEET_SOURCE_USERNAME";

/// Environment variable with the stream password; an unset password is empty.
pub const PASSWORD_ENV: &str = "VISIONFLEET_SOURCE_PASSWORD";

/// File names inside a credentials folder, as keys of a Kubernetes Secret.
const USERNAME_FILE: &str = "username";
const PASSWORD_FILE: &str = "password";

/// A username and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: String, password: String) -> Self {
        Self { username, password }
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// Reads the `username` and `password` files of `dir`. One trailing
    /// newline is removed from each, because `echo` and many editors add one.
    pub fn from_dir(dir: &Path) -> Result<Self, SourceError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map(|text| strip_newline(&text).to_owned())
                .map_err(|source| SourceError::Credentials { path, source })
        };
        Ok(Self::new(read(USERNAME_FILE)?, read(PASSWORD_FILE)?))
    }

    /// Reads [`USERNAME_ENV`] and [`PASSWORD_ENV`] through `lookup`; `None`
    /// when no username is set.
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let username = lookup(USERNAME_ENV).filter(|name| !name.is_empty())?;
        let password = lookup(PASSWORD_ENV).unwrap_or_default();
        Some(Self::new(username, password))
    }

    /// Picks the credentials for one connection attempt, most specific
    /// first: the URL's userinfo, then the folder, then the environment.
    /// The folder is read on every attempt, so a rotated Secret takes
    /// effect at the next reconnect.
    pub fn resolve(
        userinfo: Option<&Self>,
        dir: Option<&Path>,
    ) -> Result<Option<Self>, SourceError> {
        if let Some(userinfo) = userinfo {
            return Ok(Some(userinfo.clone()));
        }
        if let Some(dir) = dir {
            return Self::from_dir(dir).map(Some);
        }
        Ok(Self::from_env_with(|name| std::env::var(name).ok()))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &visionfleet_model::REDACTED)
            .finish()
    }
}

fn strip_newline(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_files_read_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("username"), "viewer\n").unwrap();
        std::fs::write(dir.path().join("password"), " spaced pass \r\n").unwrap();

        let credentials = Credentials::from_dir(dir.path()).unwrap();

        assert_eq!(credentials.username(), "viewer");
        assert_eq!(credentials.password(), " spaced pass ");
    }

    #[test]
    fn missing_password_file_names_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("username"), "viewer").unwrap();

        let error = Credentials::from_dir(dir.path()).unwrap_err();

        assert!(matches!(error, SourceError::Credentials { .. }), "{error}");
        assert!(error.to_string().contains("password"), "{error}");
    }

    #[test]
    fn environment_needs_username() {
        let only_password = |name: &str| (name == PASSWORD_ENV).then(|| "secret".to_owned());
        let both = |name: &str| match name {
            USERNAME_ENV => Some("viewer".to_owned()),
            PASSWORD_ENV => Some("secret".to_owned()),
            _ => None,
        };

        assert_eq!(Credentials::from_env_with(only_password), None);
        assert_eq!(
            Credentials::from_env_with(both),
            Some(Credentials::new("viewer".to_owned(), "secret".to_owned()))
        );
    }

    #[test]
    fn userinfo_wins_over_folder() {
        let dir = tempfile::tempdir().unwrap();
        let userinfo = Credentials::new("url-user".to_owned(), "url-pass".to_owned());

        let chosen = Credentials::resolve(Some(&userinfo), Some(dir.path())).unwrap();

        assert_eq!(chosen, Some(userinfo));
    }

    #[test]
    fn debug_hides_password() {
        let credentials = Credentials::new("viewer".to_owned(), "hunter22".to_owned());

        let text = format!("{credentials:?}");

        assert!(text.contains("viewer"), "{text}");
        assert!(!text.contains("hunter22"), "{text}");
    }
}
