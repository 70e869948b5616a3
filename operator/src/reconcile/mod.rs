//! Reconcile of one VisionModel, as a pipeline of named steps:
//! validate, verify the model, build the desired objects, apply them,
//! check the agents' ServiceAccount, compute the status and patch it when
//! it changed.

pub mod account;
pub mod apply;
mod report;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use visionfleet_api::VisionModel;
use visionfleet_api::labels::VISION_MODEL_LABEL;
use visionfleet_api::validation::validate;

use crate::build::{self, vision_model_label};
use crate::context::Context;
use crate::status::{ModelCheck, Observation};
use account::{AccountCheck, check_agent_account};
use apply::ApplyError;
use verify::VerifyError;

/// How often a healthy VisionModel is reconciled without any change, to
/// repair drift the watches missed.
const RESYNC: Duration = Duration::from_secs(300);

/// How long to wait before checking again a model that failed verification
/// permanently; a fixed upload at the same URL is picked up then.
const RECHECK_FAILED_MODEL: Duration = Duration::from_secs(300);

/// A reconcile failure. Each variant belongs to a fixed category, used as
/// the Event reason and the metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("model verification failed: {0}")]
    Verify(#[from] VerifyError),

    #[error(transparent)]
    Apply(#[from] ApplyError),

    #[error("failed to update the status: {0}")]
    Status(#[source] kube::Error),
}

impl Error {
    /// Returns the fixed category of the error.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Verify(_) => "ModelVerificationFailed",
            Self::Apply(_) => "ApplyFailed",
            Self::Status(_) => "StatusUpdateFailed",
        }
    }
}

/// Reconciles one VisionModel.
#[tracing::instrument(skip_all, fields(namespace = model.namespace().unwrap_or_default(), name = model.name_any()))]
pub async fn reconcile(model: Arc<VisionModel>, context: Arc<Context>) -> Result<Action, Error> {
    context.stores.wait_until_ready().await;
    let _timer = context.metrics.reconcile_started();
    let namespace = model.namespace().unwrap_or_default();
    let (daemon_sets, config_maps, pods) = observe(&model, &context);

    let outcome = run_steps(&model, &context, &namespace, &daemon_sets, &config_maps).await;
    let observation = Observation {
        invalid_spec: outcome.invalid_spec.clone(),
        model: outcome.model.clone(),
        missing_agent_account: match &outcome.agent_account {
            AccountCheck::Missing(name) => Some(name.clone()),
            AccountCheck::Present | AccountCheck::Unknown => None,
        },
        daemon_sets: &daemon_sets,
        pods: &pods,
    };
    report::update_status(&model, &observation, &context)
        .await
        .map_err(Error::Status)?;

    match outcome.error {
        Some(error) => Err(error),
        None => {
            context.backoff.reset(&backoff_key(&model));
            Ok(outcome.next)
        }
    }
}

/// Decides when to retry after an error: transient errors back off per
/// object, doubling up to a cap; permanent ones wait for a change.
pub fn error_policy(model: Arc<VisionModel>, error: &Error, context: Arc<Context>) -> Action {
    context.metrics.reconcile_failed(error.category());
    tracing::warn!(namespace = model.namespace().unwrap_or_default(), name = model.name_any(), category = error.category(), %error, "Reconcile failed");

    let transient = match error {
        Error::Verify(error) => error.is_transient(),
        Error::Apply(error) => error.is_transient(),
        Error::Status(_) => true,
    };
    if transient {
        Action::requeue(context.backoff.next_delay(&backoff_key(&model)))
    } else {
        Action::requeue(RECHECK_FAILED_MODEL)
    }
}

/// Findings of the reconcile steps.
struct Outcome {
    invalid_spec: Option<String>,
    model: ModelCheck,
    agent_account: AccountCheck,
    error: Option<Error>,
    next: Action,
}

async fn run_steps(
    model: &VisionModel,
    context: &Context,
    namespace: &str,
    daemon_sets: &[DaemonSet],
    config_maps: &[ConfigMap],
) -> Outcome {
    // Step 1: validate what the schema cannot check.
    if let Err(invalid) = validate(&model.spec) {
        return Outcome {
            invalid_spec: Some(invalid.to_string()),
            model: ModelCheck::NotChecked,
            agent_account: AccountCheck::Unknown,
            error: None,
            next: Action::await_change(),
        };
    }

    // Step 2: verify the model; a failure leaves the running objects alone.
    let (verified, check) = match context.verifier.verify(model, &context.client).await {
        Ok(verified) => verified,
        Err(error) => {
            let check = ModelCheck::Failed {
                reason: error.reason().to_owned(),
                message: error.to_string(),
            };
            // A remembered failure was reported when it happened; repeating
            // it as a new error would log and count it on every watch event.
            let error = match error {
                VerifyError::Remembered(_) => None,
                error => Some(error.into()),
            };
            return Outcome {
                invalid_spec: None,
                model: check,
                agent_account: AccountCheck::Unknown,
                error,
                next: Action::requeue(RECHECK_FAILED_MODEL),
            };
        }
    };

    // Steps 3 and 4: build the desired objects and apply what changed.
    let desired = build::desired(model, &verified, &context.settings);
    let settled = rollout_settled(daemon_sets);
    let error = apply::apply(
        &context.client,
        namespace,
        &desired,
        daemon_sets,
        config_maps,
        settled,
    )
    .await
    .err()
    .map(Error::from);

    // Step 5: a missing agent ServiceAccount keeps every agent pod from
    // being created, so the status names it.
    let agent_account = check_agent_account(
        &context.client,
        namespace,
        &context.settings.service_account,
    )
    .await;

    Outcome {
        invalid_spec: None,
        model: check,
        agent_account,
        error,
        next: Action::requeue(RESYNC),
    }
}

/// Reads the VisionModel's DaemonSets, ConfigMaps and agent pods from the watch caches.
fn observe(model: &VisionModel, context: &Context) -> (Vec<DaemonSet>, Vec<ConfigMap>, Vec<Pod>) {
    let namespace = model.namespace();
    let label = vision_model_label(model);
    let owned_by_model = |object: &dyn Fn() -> (Option<String>, Option<String>)| {
        let (object_namespace, object_label) = object();
        object_namespace == namespace && object_label.as_deref() == Some(label.as_str())
    };

    let daemon_sets: Vec<DaemonSet> = context
        .stores
        .daemon_sets
        .state()
        .iter()
        .filter(|daemon_set| {
            owned_by_model(&|| {
                (
                    daemon_set.namespace(),
                    daemon_set.labels().get(VISION_MODEL_LABEL).cloned(),
                )
            })
        })
        .filter(|daemon_set| is_controlled_by(daemon_set.as_ref(), model))
        .map(|daemon_set| daemon_set.as_ref().clone())
        .collect();
    let config_maps = context
        .stores
        .config_maps
        .state()
        .iter()
        .filter(|config_map| {
            owned_by_model(&|| {
                (
                    config_map.namespace(),
                    config_map.labels().get(VISION_MODEL_LABEL).cloned(),
                )
            })
        })
        .filter(|config_map| is_controlled_by(config_map.as_ref(), model))
        .map(|config_map| config_map.as_ref().clone())
        .collect();
    let pods = context
        .stores
        .pods
        .state()
        .iter()
        .filter(|pod| {
            owned_by_model(&|| {
                (
                    pod.namespace(),
                    pod.labels().get(VISION_MODEL_LABEL).cloned(),
                )
            })
        })
        .map(|pod| pod.as_ref().clone())
        .collect();

    (daemon_sets, config_maps, pods)
}

fn is_controlled_by<K: Resource>(object: &K, model: &VisionModel) -> bool {
    let uid = model.meta().uid.as_deref();
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && Some(owner.uid.as_str()) == uid)
}

/// Checks that every DaemonSet has rolled out its latest spec to all its nodes.
fn rollout_settled(daemon_sets: &[DaemonSet]) -> bool {
    daemon_sets.iter().all(|daemon_set| {
        let Some(status) = &daemon_set.status else {
            return false;
        };
        status.observed_generation >= daemon_set.metadata.generation
            && status.updated_number_scheduled.unwrap_or(0) == status.desired_number_scheduled
    })
}

fn backoff_key(model: &VisionModel) -> String {
    format!(
        "{}/{}",
        model.namespace().unwrap_or_default(),
        model.name_any()
    )
}
