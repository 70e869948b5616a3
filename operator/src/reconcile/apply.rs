//! Step 4: server-side apply of the desired objects, and removal of the
//! ones a VisionModel no longer needs.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use visionfleet_api::labels::OPERATOR_FIELD_MANAGER;

use crate::build::{DesiredObjects, build_hash};

/// A failed write to the Kubernetes API.
#[derive(Debug, thiserror::Error)]
#[error("failed to {verb} {kind} {namespace}/{name}: {source}")]
pub struct ApplyError {
    verb: &'static str,
    kind: String,
    namespace: String,
    name: String,
    #[source]
    source: kube::Error,
}

impl ApplyError {
    /// Returns whether the API server may accept the same write later: conflicts,
    /// throttling, server errors and connection failures, but not a rejection
    /// of the object itself.
    pub fn is_transient(&self) -> bool {
        match &self.source {
            kube::Error::Api(status) => matches!(status.code, 409 | 429) || status.code >= 500,
            _ => true,
        }
    }
}

/// Writes made by the apply step.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub writes: usize,
}

/// Applies what changed and deletes what is no longer wanted. `observed_*`
/// are the VisionModel's objects as the watch caches have them. An object
/// whose build hash matches is not written, so an unchanged VisionModel
/// costs no API write.
pub async fn apply(
    client: &kube::Client,
    namespace: &str,
    desired: &DesiredObjects,
    observed_daemon_sets: &[DaemonSet],
    observed_config_maps: &[ConfigMap],
    rollout_settled: bool,
) -> Result<Applied, ApplyError> {
    let mut applied = Applied::default();

    // An immutable ConfigMap that exists already has the right content: its name is its hash.
    let config_map_name = desired.config_map.name_any();
    if !observed_config_maps
        .iter()
        .any(|observed| observed.name_any() == config_map_name)
    {
        server_side_apply(client, namespace, &desired.config_map).await?;
        applied.writes += 1;
    }

    for daemon_set in &desired.daemon_sets {
        let current = observed_daemon_sets
            .iter()
            .find(|observed| observed.name_any() == daemon_set.name_any());
        if current.and_then(build_hash) != build_hash(daemon_set) {
            server_side_apply(client, namespace, daemon_set).await?;
            applied.writes += 1;
        }
    }

    let wanted: BTreeSet<String> = desired
        .daemon_sets
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    for stale in observed_daemon_sets
        .iter()
        .filter(|observed| !wanted.contains(&observed.name_any()))
    {
        delete::<DaemonSet>(client, namespace, &stale.name_any()).await?;
        applied.writes += 1;
    }

    // Old pods keep their ConfigMap mounted until the rollout replaces them.
    if rollout_settled {
        for stale in observed_config_maps
            .iter()
            .filter(|observed| observed.name_any() != config_map_name)
        {
            delete::<ConfigMap>(client, namespace, &stale.name_any()).await?;
            applied.writes += 1;
        }
    }
    Ok(applied)
}

async fn server_side_apply<K>(
    client: &kube::Client,
    namespace: &str,
    object: &K,
) -> Result<(), ApplyError>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let name = object.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(OPERATOR_FIELD_MANAGER).force();

    let mut body = serde_json::to_value(object).unwrap_or_default();
    body["apiVersion"] = K::api_version(&()).into();
    body["kind"] = K::kind(&()).into();

    tracing::info!(kind = %K::kind(&()), namespace, name, "Applying object");
    api.patch(&name, &params, &Patch::Apply(body))
        .await
        .map_err(|source| ApplyError {
            verb: "apply",
            kind: K::kind(&()).into_owned(),
            namespace: namespace.to_owned(),
            name: name.clone(),
            source,
        })?;
    Ok(())
}

async fn delete<K>(client: &kube::Client, namespace: &str, name: &str) -> Result<(), ApplyError>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);

    tracing::info!(kind = %K::kind(&()), namespace, name, "Deleting object the VisionModel no longer needs");
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(ApplyError {
            verb: "delete",
            kind: K::kind(&()).into_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        }),
    }
}
