//! Step 2: resolve the model URL and verify the model before any node sees it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use sha2::{Digest, Sha256};
use visionfleet_api::{ModelFormat, ResolvedModel, VisionModel};
use visionfleet_model::{
    FetchError, FetchPolicy, LayoutError, ModelPackage, ModelSource, ModelStore, layout,
};

use crate::build::VerifiedModel;
use crate::status::ModelCheck;

/// How long a verified model is trusted before the operator asks the origin
/// again (a conditional request, so an unchanged file is not downloaded).
const REVERIFY_AFTER: Duration = Duration::from_secs(3600);

/// Why a model could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("Secret {name} named by spec.model.urlFrom was not found")]
    SecretNotFound { name: String },

    #[error("Secret {name} has no key {key} named by spec.model.urlFrom")]
    SecretKeyMissing { name: String, key: String },

    #[error("failed to read Secret {name}: {source}")]
    SecretLookup { name: String, source: kube::Error },

    #[error(transparent)]
    Fetch(#[from] FetchError),

    #[error(transparent)]
    Layout(#[from] LayoutError),

    #[error("spec.model.format is {expected:?} but the file is {found}")]
    FormatMismatch {
        expected: ModelFormat,
        found: &'static str,
    },
}

impl VerifyError {
    /// Returns the CamelCase reason for the `ModelVerified` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SecretNotFound { .. } | Self::SecretKeyMissing { .. } => "ModelSecretMissing",
            Self::SecretLookup { .. } => "ModelSecretUnreadable",
            Self::Fetch(error) => error.reason(),
            Self::Layout(error) => error.reason(),
            Self::FormatMismatch { .. } => "FormatMismatch",
        }
    }

    /// Whether retrying soon may succeed without a change to the spec.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::SecretLookup { .. } => true,
            Self::Fetch(error) => error.is_transient(),
            // A missing Secret is often created right after the VisionModel.
            Self::SecretNotFound { .. } | Self::SecretKeyMissing { .. } => true,
            Self::Layout(_) | Self::FormatMismatch { .. } => false,
        }
    }
}

/// A verified model, remembered per VisionModel so that resyncs and
/// status-only changes do not fetch it again.
#[derive(Clone, Debug)]
struct Verified {
    fingerprint: String,
    resolved: ResolvedModel,
    at: Instant,
}

/// The model verifier: the model store plus what it verified last.
#[derive(Debug)]
pub struct Verifier {
    store: ModelStore,
    policy: FetchPolicy,
    verified: Mutex<HashMap<String, Verified>>,
}

impl Verifier {
    /// Creates a verifier. The operator never reads files on its own disk
    /// for users, so `file` URLs are left to the agents.
    pub fn new(store: ModelStore, mut policy: FetchPolicy) -> Self {
        policy.allowed_schemes.retain(|scheme| scheme != "file");

        Self {
            store,
            policy,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies the model of a VisionModel, returning what the builders and
    /// the status need.
    pub async fn verify(
        &self,
        model: &VisionModel,
        client: &kube::Client,
    ) -> Result<(VerifiedModel, ModelCheck), VerifyError> {
        let url = resolve_url(model, client).await?;
        if url.starts_with("file:") {
            let verified = VerifiedModel {
                sha256: model.spec.model.sha256.clone(),
            };
            return Ok((verified, ModelCheck::NodeLocal));
        }

        let key = model.metadata.uid.clone().unwrap_or_default();
        let fingerprint = fingerprint(model, &url);
        if let Some(resolved) = self.remembered(&key, &fingerprint) {
            return Ok((verified_model(&resolved), ModelCheck::Verified(resolved)));
        }

        let source = ModelSource {
            url,
            sha256: model.spec.model.sha256.clone(),
        };
        let package = self.store.fetch(&source, &self.policy).await?;
        let resolved = inspect(model, &package)?;

        self.remember(key, fingerprint, resolved.clone());
        Ok((verified_model(&resolved), ModelCheck::Verified(resolved)))
    }

    /// Forgets a VisionModel that was deleted.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    fn remembered(&self, key: &str, fingerprint: &str) -> Option<ResolvedModel> {
        let verified = self.lock();
        let entry = verified.get(key)?;
        (entry.fingerprint == fingerprint && entry.at.elapsed() < REVERIFY_AFTER)
            .then(|| entry.resolved.clone())
    }

    fn remember(&self, key: String, fingerprint: String, resolved: ResolvedModel) {
        self.lock().insert(
            key,
            Verified {
                fingerprint,
                resolved,
                at: Instant::now(),
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Verified>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn resolve_url(model: &VisionModel, client: &kube::Client) -> Result<String, VerifyError> {
    if let Some(url) = &model.spec.model.url {
        return Ok(url.clone());
    }
    let Some(reference) = &model.spec.model.url_from else {
        // Validation runs first and requires url or urlFrom.
        return Ok(String::new());
    };

    let namespace = model.metadata.namespace.as_deref().unwrap_or("default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get_opt(&reference.name)
        .await
        .map_err(|source| VerifyError::SecretLookup {
            name: reference.name.clone(),
            source,
        })?
        .ok_or_else(|| VerifyError::SecretNotFound {
            name: reference.name.clone(),
        })?;

    secret
        .data
        .as_ref()
        .and_then(|data| data.get(&reference.key))
        .map(|value| String::from_utf8_lossy(&value.0).trim().to_owned())
        .ok_or_else(|| VerifyError::SecretKeyMissing {
            name: reference.name.clone(),
            key: reference.key.clone(),
        })
}

/// Hashes everything that decides which model is served, so a change to any
/// of it verifies again. The hash is kept in memory only.
fn fingerprint(model: &VisionModel, url: &str) -> String {
    let spec = &model.spec.model;
    let mut hasher = Sha256::new();

    hasher.update(url.as_bytes());
    hasher.update([0]);
    hasher.update(spec.sha256.as_deref().unwrap_or_default().as_bytes());
    hasher.update([0]);
    hasher.update(format!("{:?}{:?}", spec.format, spec.labels).as_bytes());
    hex::encode(hasher.finalize())
}

/// Checks the package against the spec and describes it for the status.
fn inspect(model: &VisionModel, package: &ModelPackage) -> Result<ResolvedModel, VerifyError> {
    let found = if package.manifest.is_some() {
        "a Custom Vision export"
    } else {
        "a bare ONNX model"
    };
    match (model.spec.model.format, package.manifest.is_some()) {
        (ModelFormat::CustomVision, false) | (ModelFormat::Onnx, true) => {
            return Err(VerifyError::FormatMismatch {
                expected: model.spec.model.format,
                found,
            });
        }
        _ => {}
    }

    let layout = layout::detect(&package.onnx)?;
    let labels = model
        .spec
        .model
        .labels
        .clone()
        .or_else(|| package.labels.clone());
    let label_count = match &labels {
        Some(labels) => {
            layout::check_label_count(&layout, labels)?;
            labels.len()
        }
        None => layout.class_count().unwrap_or_default() as usize,
    };

    let input_shape = package
        .onnx
        .inputs
        .first()
        .and_then(|input| input.tensor())
        .and_then(|tensor| tensor.dims())
        .unwrap_or_default();

    let hex = package.digest_hex();
    Ok(ResolvedModel {
        digest: package.digest.clone(),
        short_digest: hex[..12.min(hex.len())].to_owned(),
        task: layout.task().to_string(),
        format: layout.name().to_owned(),
        label_count: u32::try_from(label_count).unwrap_or(u32::MAX),
        input_shape,
    })
}

fn verified_model(resolved: &ResolvedModel) -> VerifiedModel {
    VerifiedModel {
        sha256: Some(resolved.digest.trim_start_matches("sha256:").to_owned()),
    }
}
