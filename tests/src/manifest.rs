//! Server-side apply of multi-document YAML manifests, for any kind the
//! apiserver serves (resolved through API discovery).

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, ApiCapabilities, ApiResource, Scope};
use kube::{Api, Client};
use serde::Deserialize;
use tracing::info;

use crate::FIELD_MANAGER;
use crate::wait::{Unmet, WaitError, wait_for};

/// How long a freshly applied CustomResourceDefinition may take to become
/// Established and appear in discovery.
const CRD_READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("failed to read manifest {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid YAML in document {document} of {source_name}: {source}")]
    Yaml {
        source_name: String,
        document: usize,
        #[source]
        source: serde_norway::Error,
    },
    #[error("document {document} of {source_name} is not a Kubernetes object: {source}")]
    NotAnObject {
        source_name: String,
        document: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "document {document} of {source_name} has no apiVersion/kind, or an invalid apiVersion"
    )]
    MissingType {
        source_name: String,
        document: usize,
    },
    #[error("document {document} of {source_name} has no metadata.name")]
    MissingName {
        source_name: String,
        document: usize,
    },
    #[error(
        "{kind} {name} is namespaced, but neither the document nor the caller gives a namespace"
    )]
    MissingNamespace { kind: String, name: String },
    #[error("the apiserver does not serve {gvk:?}: {source}")]
    UnknownKind {
        gvk: GroupVersionKind,
        #[source]
        source: Box<WaitError>,
    },
    #[error("failed to apply {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("CustomResourceDefinition {name} did not become Established: {source}")]
    CrdNotEstablished {
        name: String,
        #[source]
        source: WaitError,
    },
}

/// Applies every document of a YAML file, in order, with server-side apply
/// (field manager `visionfleet-e2e`, conflicts forced).
///
/// Namespaced objects without `metadata.namespace` go to `namespace`. After
/// a CustomResourceDefinition, waits until it is Established, so a later
/// document in the same file may be one of its custom resources. Returns the
/// objects as the apiserver stored them.
pub async fn apply_yaml_file(
    client: &Client,
    path: impl AsRef<Path>,
    namespace: Option<&str>,
) -> Result<Vec<DynamicObject>, ApplyError> {
    let path = path.as_ref();
    let yaml = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| ApplyError::Read {
            path: path.to_owned(),
            source,
        })?;
    apply_yaml(client, &yaml, &path.display().to_string(), namespace).await
}

/// Applies every document of `yaml`; `source_name` names it in errors.
/// See [`apply_yaml_file`].
pub async fn apply_yaml(
    client: &Client,
    yaml: &str,
    source_name: &str,
    namespace: Option<&str>,
) -> Result<Vec<DynamicObject>, ApplyError> {
    let documents = parse_documents(yaml, source_name)?;

    let mut applied = Vec::with_capacity(documents.len());
    for document in documents {
        let object = apply_object(client, document, namespace).await?;
        if object
            .types
            .as_ref()
            .is_some_and(|types| types.kind == "CustomResourceDefinition")
        {
            wait_until_established(client, &object.metadata.name.clone().unwrap_or_default())
                .await?;
        }
        applied.push(object);
    }
    Ok(applied)
}

/// A parsed document, with what apply needs checked up front so a bad file
/// fails before anything is applied.
struct Document {
    object: DynamicObject,
    gvk: GroupVersionKind,
    name: String,
}

fn parse_documents(yaml: &str, source_name: &str) -> Result<Vec<Document>, ApplyError> {
    let mut documents = Vec::new();
    for (index, deserializer) in serde_norway::Deserializer::from_str(yaml).enumerate() {
        let document = index + 1;
        let value =
            serde_json::Value::deserialize(deserializer).map_err(|source| ApplyError::Yaml {
                source_name: source_name.to_owned(),
                document,
                source,
            })?;
        if value.is_null() {
            continue;
        }

        let object: DynamicObject =
            serde_json::from_value(value).map_err(|source| ApplyError::NotAnObject {
                source_name: source_name.to_owned(),
                document,
                source,
            })?;
        let gvk = object
            .types
            .as_ref()
            .and_then(|types| GroupVersionKind::try_from(types).ok())
            .filter(|gvk| !gvk.kind.is_empty() && !gvk.version.is_empty())
            .ok_or_else(|| ApplyError::MissingType {
                source_name: source_name.to_owned(),
                document,
            })?;
        let name = object
            .metadata
            .name
            .clone()
            .ok_or_else(|| ApplyError::MissingName {
                source_name: source_name.to_owned(),
                document,
            })?;
        documents.push(Document { object, gvk, name });
    }
    Ok(documents)
}

async fn apply_object(
    client: &Client,
    document: Document,
    namespace: Option<&str>,
) -> Result<DynamicObject, ApplyError> {
    let Document { object, gvk, name } = document;
    let (resource, capabilities) = resolve_kind(client, &gvk).await?;

    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => {
            let namespace = object
                .metadata
                .namespace
                .as_deref()
                .or(namespace)
                .ok_or_else(|| ApplyError::MissingNamespace {
                    kind: gvk.kind.clone(),
                    name: name.clone(),
                })?;
            Api::namespaced_with(client.clone(), namespace, &resource)
        }
    };

    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api
        .patch(&name, &params, &Patch::Apply(&object))
        .await
        .map_err(|source| ApplyError::Apply {
            kind: gvk.kind.clone(),
            name: name.clone(),
            source,
        })?;
    info!(kind = %gvk.kind, %name, namespace = ?applied.metadata.namespace, "Applied object");
    Ok(applied)
}

/// Looks the kind up in discovery, retrying for a while because a custom
/// resource's kind appears only some time after its CRD is Established.
async fn resolve_kind(
    client: &Client,
    gvk: &GroupVersionKind,
) -> Result<(ApiResource, ApiCapabilities), ApplyError> {
    let description = format!(
        "discovery to serve {}/{} {}",
        gvk.group, gvk.version, gvk.kind
    );
    wait_for(&description, CRD_READY_TIMEOUT, || async {
        match discovery::pinned_kind(client, gvk).await {
            Ok(found) => Ok(found),
            Err(error @ kube::Error::Discovery(_)) => Err(Unmet::pending(error)),
            Err(error) => Err(Unmet::from(error)),
        }
    })
    .await
    .map_err(|source| ApplyError::UnknownKind {
        gvk: gvk.clone(),
        source: Box::new(source),
    })
}

async fn wait_until_established(client: &Client, name: &str) -> Result<(), ApplyError> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let description = format!("CustomResourceDefinition {name} to be Established");
    wait_for(&description, CRD_READY_TIMEOUT, || async {
        let crd = crds.get(name).await?;
        let conditions = crd
            .status
            .and_then(|status| status.conditions)
            .unwrap_or_default();
        let established = conditions
            .iter()
            .any(|condition| condition.type_ == "Established" && condition.status == "True");
        if established {
            Ok(())
        } else {
            Err(Unmet::pending(format!("conditions: {conditions:?}")))
        }
    })
    .await
    .map_err(|source| ApplyError::CrdNotEstablished {
        name: name.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::{ApplyError, parse_documents};

    #[test]
    fn parse_skips_empty_documents() {
        let yaml = "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n---\n\
                    apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: b\n";
        let documents = parse_documents(yaml, "inline").expect("valid documents");
        let kinds: Vec<_> = documents
            .iter()
            .map(|document| document.gvk.kind.as_str())
            .collect();
        assert_eq!(kinds, ["ConfigMap", "DaemonSet"]);
        assert_eq!(documents[1].gvk.group, "apps");
        assert_eq!(documents[1].name, "b");
    }

    #[test]
    fn parse_rejects_document_without_kind() {
        let error = parse_documents("apiVersion: v1\nmetadata:\n  name: a\n", "inline").err();
        assert!(
            matches!(error, Some(ApplyError::MissingType { document: 1, .. })),
            "{error:?}"
        );
    }

    #[test]
    fn parse_rejects_document_without_name() {
        let error = parse_documents("apiVersion: v1\nkind: ConfigMap\n", "inline").err();
        assert!(
            matches!(error, Some(ApplyError::MissingName { document: 1, .. })),
            "{error:?}"
        );
    }
}
