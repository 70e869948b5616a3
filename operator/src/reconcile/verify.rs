//! Step 2: resolve the model URL and verify the model before any node loads it.

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
use crate::context::Backoff;
use crate::status::ModelCheck;

/// How long a verified model is trusted before the operator asks the origin
/// again (a conditional request, so an unchanged file is not downloaded).
const REVERIFY_AFTER: Duration = Duration::from_secs(3600);

/// Failure to verify a model.
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

    /// A failure of an earlier reconcile whose retry delay has not passed.
    #[error("{}", .0.message)]
    Remembered(RememberedFailure),
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
            Self::Remembered(failure) => failure.reason,
        }
    }

    /// Returns whether retrying soon may succeed without a change to the spec.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::SecretLookup { .. } => true,
            Self::Fetch(error) => error.is_transient(),
            // A missing Secret is often created right after the VisionModel.
            Self::SecretNotFound { .. } | Self::SecretKeyMissing { .. } => true,
            Self::Layout(_) | Self::FormatMismatch { .. } => false,
            Self::Remembered(failure) => failure.transient,
        }
    }
}

/// The last verification of a VisionModel's model, remembered so that
/// resyncs, status changes and node events neither fetch a good model again
/// nor retry a failing one before its backoff delay has passed.
#[derive(Clone, Debug)]
struct Remembered {
    fingerprint: String,
    result: Result<ResolvedModel, RememberedFailure>,
    valid_until: Instant,
}

/// A failed verification, kept as the text the status shows.
#[derive(Clone, Debug)]
pub struct RememberedFailure {
    pub reason: &'static str,
    pub message: String,
    pub transient: bool,
}

/// The model verifier: the model store plus what it verified last.
#[derive(Debug)]
pub struct Verifier {
    store: ModelStore,
    policy: FetchPolicy,
    remembered: Mutex<HashMap<String, Remembered>>,
    retry: Backoff,
}

impl Verifier {
    /// Creates a verifier. The operator never reads files on its own disk
    /// for users, so `file` URLs are left to the agents. Failed downloads are
    /// retried across reconciles with a per-VisionModel backoff rather than
    /// inside one fetch, so one slow origin does not hold a reconcile for minutes.
    pub fn new(store: ModelStore, mut policy: FetchPolicy) -> Self {
        policy.allowed_schemes.retain(|scheme| scheme != "file");
        policy.max_attempts = policy.max_attempts.min(2);

        Self {
            store,
            policy,
            remembered: Mutex::new(HashMap::new()),
            retry: Backoff::new(Duration::from_secs(10), Duration::from_secs(600)),
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
        if let Some(result) = self.recall(&key, &fingerprint) {
            return result
                .map(|resolved| (verified_model(&resolved), ModelCheck::Verified(resolved)))
                .map_err(VerifyError::Remembered);
        }

        let source = ModelSource {
            url,
            sha256: model.spec.model.sha256.clone(),
        };
        let result = match self.store.fetch(&source, &self.policy).await {
            Ok(package) => inspect(model, &package),
            Err(error) => Err(error.into()),
        };

        self.remember(&key, fingerprint, &result);
        let resolved = result?;
        Ok((verified_model(&resolved), ModelCheck::Verified(resolved)))
    }

    /// Forgets the VisionModels whose uid is not in `live`.
    pub fn retain(&self, live: &std::collections::BTreeSet<String>) {
        self.lock().retain(|uid, _| live.contains(uid));
    }

    fn recall(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> Option<Result<ResolvedModel, RememberedFailure>> {
        let remembered = self.lock();
        let entry = remembered.get(key)?;
        (entry.fingerprint == fingerprint && Instant::now() < entry.valid_until)
            .then(|| entry.result.clone())
    }

    fn remember(
        &self,
        key: &str,
        fingerprint: String,
        result: &Result<ResolvedModel, VerifyError>,
    ) {
        let (result, valid_for) = match result {
            Ok(resolved) => {
                self.retry.reset(key);
                (Ok(resolved.clone()), REVERIFY_AFTER)
            }
            Err(error) => {
                let failure = RememberedFailure {
                    reason: error.reason(),
                    message: error.to_string(),
                    transient: error.is_transient(),
                };
                (Err(failure), self.retry.next_delay(key))
            }
        };

        self.lock().insert(
            key.to_owned(),
            Remembered {
                fingerprint,
                result,
                valid_until: Instant::now() + valid_for,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Remembered>> {
        self.remembered
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
