//! Watching the config file for changes.
//!
//! Kubernetes updates a ConfigMap or Secret volume by writing the new files
//! into a fresh folder and swapping the `..data` symlink to it, so the file
//! a path names changes without any write to the old inode. The watcher
//! therefore opens the path anew every poll and compares what it resolves
//! to (the config and the Secret files it names) with the last result, and
//! sends a new config or a new error only when it differs.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::{self, ConfigError, Identity, ServeConfig};

/// A changed config: the new settings, or why the file cannot be used.
pub type ConfigUpdate = Result<ServeConfig, ConfigError>;

/// Result of the last poll, compared with the next one to detect changes.
#[derive(Debug, PartialEq)]
enum Seen {
    Config(Box<ServeConfig>),
    Error(String),
}

/// Polls `path` every `interval` and sends each change; the first poll
/// always sends.
pub fn spawn(
    path: PathBuf,
    interval: Duration,
    identity: Identity,
) -> (mpsc::Receiver<ConfigUpdate>, JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(4);
    let task = tokio::spawn(async move {
        let mut seen: Option<Seen> = None;
        loop {
            let read_path = path.clone();
            let read_identity = identity.clone();
            match tokio::task::spawn_blocking(move || config::load(&read_path, &read_identity))
                .await
            {
                Ok(update) => {
                    let now = match &update {
                        Ok(config) => Seen::Config(Box::new(config.clone())),
                        Err(error) => Seen::Error(error.to_string()),
                    };
                    if seen.as_ref() != Some(&now) {
                        seen = Some(now);
                        if sender.send(update).await.is_err() {
                            return;
                        }
                    }
                }
                Err(error) => tracing::error!(%error, "Reading the config file panicked"),
            }
            tokio::time::sleep(interval).await;
        }
    });
    (receiver, task)
}
