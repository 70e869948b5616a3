//! Installs the project's CRD into the test cluster.

use std::path::PathBuf;

use kube::Client;

use crate::manifest::{ApplyError, apply_yaml_file};

/// Returns the repository's root folder.
pub fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Applies `crds/visionmodel.yaml` and waits until it is Established.
/// Server-side apply makes this safe to call from every test.
pub async fn install_crd(client: &Client) -> Result<(), ApplyError> {
    apply_yaml_file(
        client,
        repository_root().join("crds/visionmodel.yaml"),
        None,
    )
    .await?;
    Ok(())
}
