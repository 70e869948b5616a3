//! Steps 6 and 7: compute the status, patch it only when it changed, and
//! publish an Event for every condition change a user must see.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use visionfleet_api::labels::{OPERATOR_FIELD_MANAGER, condition};
use visionfleet_api::{VisionModel, VisionModelStatus};

use crate::context::Context;
use crate::status::{Observation, compute};

/// Computes the status and writes it when it differs from the current one.
pub async fn update_status(
    model: &VisionModel,
    observation: &Observation<'_>,
    context: &Context,
) -> Result<(), kube::Error> {
    let status = compute(model, observation, Time(Timestamp::now()));
    context.metrics.observe(model, &status);

    let previous = model.status.clone().unwrap_or_default();
    if previous == status {
        return Ok(());
    }

    patch_status(model, &status, &context.client).await?;
    publish_events(model, &previous, &status, context).await;
    Ok(())
}

async fn patch_status(
    model: &VisionModel,
    status: &VisionModelStatus,
    client: &kube::Client,
) -> Result<(), kube::Error> {
    let api: Api<VisionModel> =
        Api::namespaced(client.clone(), &model.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": VisionModel::api_version(&()),
        "kind": VisionModel::kind(&()),
        "status": status,
    });

    api.patch_status(
        &model.name_any(),
        &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

/// Publishes one Event per condition whose status or reason changed, as a
/// Warning when it reports a problem. Event failures are logged, never
/// fatal: the status already shows the same.
async fn publish_events(
    model: &VisionModel,
    previous: &VisionModelStatus,
    status: &VisionModelStatus,
    context: &Context,
) {
    let reference = model.object_ref(&());

    for current in &status.conditions {
        let before = previous
            .conditions
            .iter()
            .find(|earlier| earlier.type_ == current.type_);
        if before.is_some_and(|before| {
            before.status == current.status && before.reason == current.reason
        }) {
            continue;
        }
        if before.is_none() && !is_problem(current) && current.type_ != condition::READY {
            continue;
        }

        let event = Event {
            type_: if is_problem(current) {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: current.reason.clone(),
            note: Some(truncate(&current.message, 1000)),
            action: current.type_.clone(),
            secondary: None,
        };
        if let Err(error) = context.recorder.publish(&event, &reference).await {
            tracing::warn!(namespace = model.namespace().unwrap_or_default(), name = model.name_any(), reason = %current.reason, %error, "Failed to publish event");
        }
    }
}

/// Checks whether a condition reports something a user must act on.
fn is_problem(condition: &Condition) -> bool {
    match condition.type_.as_str() {
        condition::MODEL_VERIFIED => condition.status == "False",
        condition::DEGRADED | condition::ACCELERATOR_FALLBACK => condition.status == "True",
        _ => false,
    }
}

fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
