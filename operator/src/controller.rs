//! Wires the reconcile to the watches: VisionModels, the DaemonSets and
//! ConfigMaps it owns, the agent pods (their reports feed the status) and
//! node labels (a relabelled node moves between variants).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, ResourceExt};
use visionfleet_api::VisionModel;
use visionfleet_api::labels::{
    AGENT_COMPONENT, COMPONENT_LABEL, MANAGED_BY_LABEL, OPERATOR_FIELD_MANAGER,
};

use crate::context::{Backoff, Context, Stores};
use crate::metrics::Metrics;
use crate::reconcile::verify::Verifier;
use crate::reconcile::{error_policy, reconcile};
use crate::settings::AgentSettings;

/// Everything the controller is built from.
#[expect(
    missing_debug_implementations,
    reason = "kube::Client and Recorder do not implement Debug"
)]
pub struct ControllerParts {
    pub client: kube::Client,
    pub settings: AgentSettings,
    pub verifier: Verifier,
    pub metrics: Arc<Metrics>,
    pub reporter: Reporter,
    /// Namespace to watch, or `None` for every namespace.
    pub namespace: Option<String>,
}

/// Failure to start the controller.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the VisionModel CRD is not installed: run `kubectl apply -f crds/visionmodel.yaml` ({0})"
    )]
    CrdMissing(#[source] kube::Error),
}

/// Runs the controller until the process receives SIGTERM or Ctrl-C.
pub async fn run(
    parts: ControllerParts,
    on_ready: impl FnOnce() + Send + 'static,
) -> Result<(), StartError> {
    let client = parts.client.clone();
    let scope = Scope(parts.namespace.clone());
    let models: Api<VisionModel> = scope.api(&client);
    models
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(StartError::CrdMissing)?;

    let managed =
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={OPERATOR_FIELD_MANAGER}"));
    let agents = watcher::Config::default().labels(&format!("{COMPONENT_LABEL}={AGENT_COMPONENT}"));

    let (daemon_sets, daemon_set_events) =
        reflect(scope.api::<DaemonSet>(&client), managed.clone());
    let (config_maps, config_map_events) = reflect(scope.api::<ConfigMap>(&client), managed);
    let (pods, pod_events) = reflect(scope.api::<Pod>(&client), agents);
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .predicate_filter(predicates::labels, Default::default());

    let controller = Controller::new(models, watcher::Config::default().any_semantic());
    let model_store = controller.store();
    let stores = Stores {
        daemon_sets: daemon_sets.clone(),
        config_maps,
        pods,
    };
    let context = Arc::new(Context {
        client: client.clone(),
        settings: parts.settings,
        verifier: parts.verifier,
        stores: stores.clone(),
        recorder: Recorder::new(client, parts.reporter),
        metrics: Arc::clone(&parts.metrics),
        backoff: Backoff::new(Duration::from_secs(5), Duration::from_secs(300)),
    });

    let pod_owner_store = daemon_sets;
    let every_model = model_store.clone();
    let controller = controller
        .owns_stream(daemon_set_events)
        .owns_stream(config_map_events)
        .watches_stream(pod_events, move |pod| model_of_pod(&pod, &pod_owner_store))
        .watches_stream(node_events, move |_node: Node| {
            every_model
                .state()
                .iter()
                .map(|model| ObjectRef::from_obj(model.as_ref()))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal();

    // The watches start with the controller, so readiness is signalled from
    // a task once their caches have synced.
    let synced_models = model_store.clone();
    tokio::spawn(async move {
        wait_for_caches(&stores, &synced_models).await;
        tracing::info!("Watch caches synced");
        on_ready();
    });
    tracing::info!("Controller started");

    let shared = Arc::clone(&context);
    controller
        .run(reconcile, error_policy, context)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "Reconcile ended with an error");
            }
            forget_deleted(&shared, &model_store);
            futures::future::ready(())
        })
        .await;

    tracing::info!("Controller stopped");
    Ok(())
}

/// The namespaces the controller watches.
struct Scope(Option<String>);

impl Scope {
    fn api<K>(&self, client: &kube::Client) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        match &self.0 {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        }
    }
}

/// Starts a watch that keeps a cache, and returns the cache and the stream
/// of touched objects that triggers reconciles.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// Maps an agent pod to its VisionModel through the owning DaemonSet.
fn model_of_pod(pod: &Pod, daemon_sets: &Store<DaemonSet>) -> Option<ObjectRef<VisionModel>> {
    let namespace = pod.namespace()?;
    let owner = pod
        .owner_references()
        .iter()
        .find(|owner| owner.kind == "DaemonSet")?;
    let daemon_set = daemon_sets.get(&ObjectRef::new(&owner.name).within(&namespace))?;
    let model = daemon_set
        .owner_references()
        .iter()
        .find(|owner| owner.kind == "VisionModel")?;

    Some(ObjectRef::new(&model.name).within(&namespace))
}

async fn wait_for_caches(stores: &Stores, models: &Store<VisionModel>) {
    stores.wait_until_ready().await;
    let _ = models.wait_until_ready().await;
}

/// Drops the metric series and remembered verifications of deleted VisionModels.
fn forget_deleted(context: &Context, models: &Store<VisionModel>) {
    let models = models.state();
    let names: BTreeSet<(String, String)> = models
        .iter()
        .map(|model| (model.namespace().unwrap_or_default(), model.name_any()))
        .collect();
    let uids: BTreeSet<String> = models.iter().filter_map(|model| model.uid()).collect();

    context.metrics.retain(&names);
    context.verifier.retain(&uids);
}
