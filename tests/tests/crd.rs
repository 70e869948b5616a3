//! The generated VisionModel CRD on a real kube-apiserver: it installs,
//! every example is accepted, and the schema rejects bad manifests with a
//! message that names the field.
//!
//! Needs `scripts/local-cluster up` and `eval "$(scripts/local-cluster env)"`.

#![allow(clippy::unwrap_used, reason = "test helpers panic on broken fixtures")]

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use visionfleet_api::VisionModel;
use visionfleet_e2e::TestCluster;
use visionfleet_e2e::crd::{install_crd, repository_root};
use visionfleet_e2e::manifest::apply_yaml_file;

fn yaml_files(folder: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repository_root().join(folder))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml")
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn crd_installs_and_is_established() -> Result<()> {
    let cluster = TestCluster::connect().await?;

    install_crd(&cluster.client()).await?;

    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client());
    let crd = crds.get("visionmodels.visionfleet.dev").await?;
    let established = crd
        .status
        .and_then(|status| status.conditions)
        .unwrap_or_default()
        .into_iter()
        .any(|condition| condition.type_ == "Established" && condition.status == "True");
    ensure!(established, "the CRD is not Established");
    Ok(())
}

#[tokio::test]
async fn every_example_is_accepted() -> Result<()> {
    let cluster = TestCluster::connect().await?;
    install_crd(&cluster.client()).await?;
    let namespace = cluster.namespace("examples").await?;

    let files = yaml_files("examples");
    ensure!(
        files.len() >= 3,
        "expected at least 3 examples, found {}",
        files.len()
    );
    for file in &files {
        apply_yaml_file(&namespace.client(), file, Some(namespace.name()))
            .await
            .with_context(|| format!("{} was rejected", file.display()))?;
    }

    let models: Api<VisionModel> = Api::namespaced(namespace.client(), namespace.name());
    let stored = models.list(&Default::default()).await?;
    ensure!(
        stored.items.len() >= files.len(),
        "expected a VisionModel per example, found {}",
        stored.items.len()
    );
    for model in &stored.items {
        ensure!(
            !model.spec.accelerator.preference.is_empty(),
            "defaults were not applied to {:?}",
            model.metadata.name
        );
    }
    Ok(())
}

#[tokio::test]
async fn defaults_filled_in_by_apiserver() -> Result<()> {
    let cluster = TestCluster::connect().await?;
    install_crd(&cluster.client()).await?;
    let namespace = cluster.namespace("defaults").await?;

    apply_yaml_file(
        &namespace.client(),
        repository_root().join("examples/minimal.yaml"),
        Some(namespace.name()),
    )
    .await?;

    let models: Api<VisionModel> = Api::namespaced(namespace.client(), namespace.name());
    let minimal = models.get("minimal").await?;
    ensure!(
        minimal.spec.source.max_fps == 5.0,
        "maxFps default: {}",
        minimal.spec.source.max_fps
    );
    ensure!(minimal.spec.inference.confidence_threshold == 0.5);
    ensure!(minimal.spec.accelerator.allow_cpu_fallback);
    ensure!(minimal.spec.output.messages_per_minute == 10);
    Ok(())
}

/// Each file in `tests/manifests/invalid/` starts with a comment
/// `# Expected rejection field: <path>`, which the apiserver's message must name.
#[tokio::test]
async fn invalid_manifests_rejected_naming_field() -> Result<()> {
    let cluster = TestCluster::connect().await?;
    install_crd(&cluster.client()).await?;
    let namespace = cluster.namespace("invalid").await?;

    let files = yaml_files("tests/manifests/invalid");
    ensure!(
        files.len() >= 4,
        "expected at least 4 invalid manifests, found {}",
        files.len()
    );
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let field = text
            .lines()
            .find_map(|line| line.strip_prefix("# Expected rejection field: "))
            .with_context(|| format!("{} lacks its expected-field comment", file.display()))?;

        let result = apply_yaml_file(&namespace.client(), &file, Some(namespace.name())).await;

        let error = match result {
            Ok(_) => anyhow::bail!("{} was accepted", file.display()),
            Err(error) => format!("{error:#}"),
        };
        ensure!(
            error.contains(field),
            "{}: the error does not name {field}: {error}",
            file.display()
        );
    }
    Ok(())
}
