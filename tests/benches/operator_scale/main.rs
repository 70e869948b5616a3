//! The operator at scale on the local kube-apiserver: 200 fake nodes with a
//! fake kubelet, 100 VisionModels and the real `visionfleet-operator`
//! binary watching one namespace.
//!
//! Measures the time from applying a VisionModel to its DaemonSet appearing,
//! the API writes of a forced resync in steady state, the operator's
//! resident memory, and the time to converge after relabelling 50 nodes.
//! Writes one JSON object to `--output` (default stdout). `scripts/bench
//! operator` builds the operator, starts the local cluster and runs this.
//!
//! The nodes form sites of equal size (label `bench.visionfleet.dev/site`);
//! model `i` selects site `i % sites`, so each model runs on one site.
//! Relabelling moves the first sites' nodes to other sites: the DaemonSet
//! controller moves the pods and the operator updates every model's status.

mod apiserver_metrics;
mod operator_process;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Event, ServiceAccount};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use visionfleet_api::VisionModel;
use visionfleet_api::labels::VISION_MODEL_LABEL;
use visionfleet_e2e::model_server::{ModelServer, Served};
use visionfleet_e2e::namespace::TEST_NAMESPACE_LABEL;
use visionfleet_e2e::world::fixture_bytes;
use visionfleet_e2e::{FakeKubelet, Fleet, NodeTemplate, TestCluster, TestNamespace};

use crate::operator_process::OperatorProcess;

const SITE_LABEL: &str = "bench.visionfleet.dev/site";
/// A label no VisionModel selects: changing it makes the operator reconcile
/// every model (it watches node labels) without changing what any model needs.
const RESYNC_LABEL: &str = "bench.visionfleet.dev/resync";
const FIXTURE: &str = "orientation-classification.zip";
const FIELD_MANAGER: &str = "visionfleet-bench";

/// Upper bounds for each phase to finish; not latency targets.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(900);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Quiet time before and after the forced resync, so that its window holds
/// only the resync's reconciles.
const QUIET_TIME: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
struct Args {
    operator: PathBuf,
    output: Option<PathBuf>,
    nodes: usize,
    models: usize,
    sites: usize,
    relabel: usize,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,operator_scale=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = parse_args()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(&args))?;

    let text = serde_json::to_string_pretty(&report)?;
    match &args.output {
        Some(path) => std::fs::write(path, text + "\n")
            .with_context(|| format!("failed to write {}", path.display()))?,
        None => println!("{text}"),
    }
    Ok(())
}

/// Reads `--operator PATH --output PATH --nodes N --models N --sites N
/// --relabel N`; `cargo bench` also passes `--bench`, which is ignored.
fn parse_args() -> Result<Args> {
    let mut args = Args {
        operator: default_operator_path()?,
        output: None,
        nodes: 200,
        models: 100,
        sites: 20,
        relabel: 50,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        if flag == "--bench" {
            continue;
        }
        let value = argv
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--operator" => args.operator = PathBuf::from(value),
            "--output" => args.output = Some(PathBuf::from(value)),
            "--nodes" => args.nodes = value.parse()?,
            "--models" => args.models = value.parse()?,
            "--sites" => args.sites = value.parse()?,
            "--relabel" => args.relabel = value.parse()?,
            other => bail!(
                "unknown option {other}; use --operator, --output, --nodes, --models, --sites or --relabel"
            ),
        }
    }
    if args.sites == 0 || !args.nodes.is_multiple_of(args.sites) {
        bail!(
            "--nodes {} must be a multiple of --sites {}",
            args.nodes,
            args.sites
        );
    }
    if !args.relabel.is_multiple_of(args.nodes / args.sites) || args.relabel * 2 > args.nodes {
        bail!("--relabel must be whole sites and at most half the nodes");
    }
    Ok(args)
}

/// Returns the operator that `cargo build --release -p visionfleet-operator`
/// builds, beside this bench's own folder (`target/release/deps`).
fn default_operator_path() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("cannot locate the target folder")?;
    Ok(release.join("visionfleet-operator"))
}

/// One measured world: the namespace, its nodes, the kubelet, the model
/// server and the operator. Fields drop in declaration order, so the
/// operator stops first and the namespace (with its nodes) is deleted last.
struct Bench {
    operator: OperatorProcess,
    /// Kept for its heartbeats and pod reports; dropping it stops them.
    _kubelet: FakeKubelet,
    server: ModelServer,
    fleet: Fleet,
    client: kube::Client,
    args: Args,
    namespace: TestNamespace,
}

async fn run(args: &Args) -> Result<Value> {
    let cluster = TestCluster::connect().await?;
    visionfleet_e2e::crd::install_crd(&cluster.client()).await?;
    let namespace = cluster.namespace("operator-scale").await?;
    let client = namespace.client();
    tracing::info!(
        namespace = namespace.name(),
        "Created the benchmark namespace"
    );

    create_agent_service_account(&client, namespace.name()).await?;
    let server = ModelServer::start().await?;
    server.set(FIXTURE, Served::File(fixture_bytes(FIXTURE)?.into()));

    let fleet = Fleet::new(&namespace);
    let started = Instant::now();
    let kubelet = create_nodes(&fleet, client.clone(), args).await?;
    tracing::info!(
        nodes = args.nodes,
        seconds = started.elapsed().as_secs_f64(),
        "Nodes registered"
    );

    let cache = tempfile::tempdir()?;
    let log = std::env::temp_dir().join(format!("{}-operator.log", namespace.name()));
    let mut operator =
        OperatorProcess::start(&args.operator, namespace.name(), cache.path(), &log).await?;
    operator.wait_ready(Duration::from_secs(120)).await?;
    tracing::info!(log = %log.display(), "Operator ready");

    let bench = Bench {
        operator,
        _kubelet: kubelet,
        server,
        fleet,
        client,
        args: args.clone(),
        namespace,
    };
    let figures = bench.measure().await?;
    drop(bench);
    Ok(json!({ "figures": figures, "operator_log": log }))
}

async fn create_agent_service_account(client: &kube::Client, namespace: &str) -> Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let account = serde_json::from_value(json!({"metadata": {"name": "visionfleet-agent"}}))?;
    accounts.create(&PostParams::default(), &account).await?;
    Ok(())
}

fn site_of(node: usize, args: &Args) -> usize {
    node / (args.nodes / args.sites)
}

fn site_name(site: usize) -> String {
    format!("site-{site:02}")
}

fn node_suffix(node: usize) -> String {
    format!("n{node:03}")
}

async fn create_nodes(fleet: &Fleet, client: kube::Client, args: &Args) -> Result<FakeKubelet> {
    futures::stream::iter(0..args.nodes)
        .map(|node| {
            let template = NodeTemplate::new(node_suffix(node))
                .label(SITE_LABEL, site_name(site_of(node, args)));
            async move { fleet.create_node(&template).await }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;

    let mut kubelet = FakeKubelet::new(client);
    for node in 0..args.nodes {
        kubelet
            .start_node(&fleet.node_name(&node_suffix(node)))
            .await?;
    }
    Ok(kubelet)
}

impl Bench {
    async fn measure(&self) -> Result<Value> {
        let apply = self.apply_models().await?;
        let rollout_started = Instant::now();
        let expected = self.expected_nodes_per_model(false);
        let rollout = self
            .wait_for_convergence(&expected, rollout_started)
            .await?;
        let rss_after_rollout = self.operator.rss_kib()?;

        let resync = self.forced_resync().await?;

        let relabel = self.relabel_nodes().await?;
        let rss_after_relabel = self.operator.rss_kib()?;

        Ok(json!({
            "nodes": self.args.nodes,
            "models": self.args.models,
            "sites": self.args.sites,
            "nodes_per_model": self.args.nodes / self.args.sites,
            "apply_to_daemonset": apply,
            "rollout_after_last_apply_s": rollout,
            "resync": resync,
            "relabel": relabel,
            "model_server_requests": self.server.requests(),
            "operator_rss_mib": {
                "after_rollout": kib_to_mib(rss_after_rollout),
                "after_relabel": kib_to_mib(rss_after_relabel),
                "peak_vmhwm": kib_to_mib(self.operator.peak_rss_kib()?),
                "peak_sampled": kib_to_mib(self.operator.peak_sampled_kib()),
            },
        }))
    }

    fn models(&self) -> Api<VisionModel> {
        Api::namespaced(self.client.clone(), self.namespace.name())
    }

    fn daemon_sets(&self) -> Api<DaemonSet> {
        Api::namespaced(self.client.clone(), self.namespace.name())
    }

    fn model_name(index: usize) -> String {
        format!("model-{index:03}")
    }

    /// Applies every VisionModel back to back and returns the time from the
    /// start of each apply request to its first DaemonSet in the watch.
    async fn apply_models(&self) -> Result<Value> {
        let created = Arc::new(Mutex::new(BTreeMap::<String, Instant>::new()));
        let watch = tokio::spawn(record_daemon_set_creation(
            self.daemon_sets(),
            Arc::clone(&created),
        ));
        // Let the watch start before the first apply.
        tokio::time::sleep(Duration::from_secs(1)).await;

        let mut applied = BTreeMap::new();
        for index in 0..self.args.models {
            let name = Self::model_name(index);
            applied.insert(name.clone(), Instant::now());
            self.apply_model(&name, index % self.args.sites).await?;
        }
        let last_apply = Instant::now();
        tracing::info!(models = self.args.models, "VisionModels applied");

        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        while lock(&created).len() < self.args.models {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {} DaemonSets appeared",
                    lock(&created).len(),
                    self.args.models
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        watch.abort();

        let created = lock(&created).clone();
        let mut latencies: Vec<f64> = applied
            .iter()
            .filter_map(|(name, at)| {
                Some(created.get(name)?.duration_since(*at).as_secs_f64() * 1000.0)
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        let all_created = created.values().max().copied().unwrap_or(last_apply);
        Ok(json!({
            "latency_ms": distribution(&latencies),
            "apply_burst_s": (last_apply - applied.values().min().copied().unwrap_or(last_apply)).as_secs_f64(),
            "all_created_after_last_apply_s": all_created.saturating_duration_since(last_apply).as_secs_f64(),
        }))
    }

    async fn apply_model(&self, name: &str, site: usize) -> Result<()> {
        let body = json!({
            "apiVersion": "visionfleet.dev/v1alpha1",
            "kind": "VisionModel",
            "metadata": {"name": name},
            "spec": {
                "model": {"url": self.server.url(FIXTURE)},
                "nodeSelector": {"matchLabels": {
                    TEST_NAMESPACE_LABEL: self.namespace.name(),
                    SITE_LABEL: site_name(site),
                }},
                "source": {"url": "rtsp://camera.local:554/stream1"},
            },
        });
        self.models()
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .with_context(|| format!("failed to apply VisionModel {name}"))?;
        Ok(())
    }

    /// Nodes each model should run on, before or after the relabelling.
    fn expected_nodes_per_model(&self, relabelled: bool) -> BTreeMap<String, i32> {
        let mut per_site = vec![0i32; self.args.sites];
        for node in 0..self.args.nodes {
            per_site[self.site_after(node, relabelled)] += 1;
        }
        (0..self.args.models)
            .map(|index| (Self::model_name(index), per_site[index % self.args.sites]))
            .collect()
    }

    /// Relabelled nodes move `relabel / nodes_per_site` sites up.
    fn site_after(&self, node: usize, relabelled: bool) -> usize {
        let site = site_of(node, &self.args);
        if relabelled && node < self.args.relabel {
            site + self.args.relabel / (self.args.nodes / self.args.sites)
        } else {
            site
        }
    }

    /// Waits until every model's DaemonSets schedule the expected nodes and
    /// its status reports them desired and ready. Returns the seconds from
    /// `since` to each of the three.
    async fn wait_for_convergence(
        &self,
        expected: &BTreeMap<String, i32>,
        since: Instant,
    ) -> Result<Value> {
        let mut reached: BTreeMap<&str, f64> = BTreeMap::new();
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let state = self.fleet_state().await?;
            let checks = [
                ("daemonsets_desired", &state.scheduled),
                ("status_desired", &state.desired),
                ("status_ready", &state.ready),
            ];
            for (name, observed) in checks {
                if !reached.contains_key(name) && observed == expected {
                    reached.insert(name, since.elapsed().as_secs_f64());
                    tracing::info!(
                        check = name,
                        seconds = since.elapsed().as_secs_f64(),
                        "Converged"
                    );
                }
            }
            if reached.len() == checks.len() {
                return Ok(json!(reached));
            }
            if Instant::now() > deadline {
                bail!("no convergence after {CONVERGE_TIMEOUT:?}; reached {reached:?}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn fleet_state(&self) -> Result<FleetState> {
        let mut state = FleetState::default();
        for model in self.models().list(&ListParams::default()).await? {
            let nodes = model
                .status
                .and_then(|status| status.nodes)
                .unwrap_or_default();
            state.desired.insert(
                model.metadata.name.clone().unwrap_or_default(),
                nodes.desired,
            );
            state
                .ready
                .insert(model.metadata.name.unwrap_or_default(), nodes.ready);
        }
        for daemon_set in self.daemon_sets().list(&ListParams::default()).await? {
            let Some(model) = daemon_set.labels().get(VISION_MODEL_LABEL).cloned() else {
                continue;
            };
            let scheduled = daemon_set
                .status
                .map_or(0, |status| status.desired_number_scheduled);
            *state.scheduled.entry(model).or_default() += scheduled;
        }
        Ok(state)
    }

    /// Changes a label no model selects on one node, which makes the
    /// operator reconcile every model, and counts the writes that follow.
    async fn forced_resync(&self) -> Result<Value> {
        tokio::time::sleep(QUIET_TIME).await;
        let writes_before = apiserver_metrics::write_counts().await?;
        let versions_before = self.resource_versions().await?;
        let reconciles_before = self.operator.reconciles().await?;

        let node = self.fleet.node_name(&node_suffix(self.args.nodes - 1));
        let touched = Instant::now();
        let touched_at = k8s_openapi::jiff::Timestamp::now();
        self.fleet
            .relabel(&node, &[(RESYNC_LABEL, Some("1"))])
            .await?;
        let target = reconciles_before + self.args.models as f64;
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        while self.operator.reconciles().await? < target {
            if Instant::now() > deadline {
                bail!("the operator did not reconcile every model after the node label change");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let reconciled_s = touched.elapsed().as_secs_f64();
        tokio::time::sleep(QUIET_TIME).await;

        let reconciles = self.operator.reconciles().await? - reconciles_before;
        let writes = apiserver_metrics::difference(
            &writes_before,
            &apiserver_metrics::write_counts().await?,
        );
        let changed = changed_versions(&versions_before, &self.resource_versions().await?);
        let events = self.events_since(touched_at).await?;
        Ok(json!({
            "reconciles": reconciles,
            "all_reconciled_after_s": reconciled_s,
            "window_s": touched.elapsed().as_secs_f64(),
            "apiserver_writes": writes,
            "apiserver_writes_total": writes.values().sum::<f64>(),
            "resource_version_changes": changed,
            "resource_version_changes_total": changed.len(),
            "events_in_window": events,
        }))
    }

    /// resourceVersions of the VisionModels, DaemonSets, ConfigMaps and
    /// Events in the namespace, keyed by `kind/name`. A new Event counts as
    /// a change, so events the operator records show up too.
    async fn resource_versions(&self) -> Result<BTreeMap<String, String>> {
        let mut versions = BTreeMap::new();
        insert_versions(&mut versions, self.models()).await?;
        insert_versions(&mut versions, self.daemon_sets()).await?;
        let namespace = self.namespace.name();
        insert_versions::<ConfigMap>(
            &mut versions,
            Api::namespaced(self.client.clone(), namespace),
        )
        .await?;
        insert_versions::<Event>(
            &mut versions,
            Api::namespaced(self.client.clone(), namespace),
        )
        .await?;
        Ok(versions)
    }

    /// Counts the namespace's Event objects last seen at or after `since` (one
    /// second before it, because event times have second resolution), by
    /// reporting component, reason and object kind.
    async fn events_since(
        &self,
        since: k8s_openapi::jiff::Timestamp,
    ) -> Result<BTreeMap<String, i32>> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), self.namespace.name());
        let cutoff = since - k8s_openapi::jiff::SignedDuration::from_secs(1);
        let mut counts = BTreeMap::new();
        for event in events.list(&ListParams::default()).await? {
            let last_seen = event
                .last_timestamp
                .as_ref()
                .map(|time| time.0)
                .or_else(|| event.event_time.as_ref().map(|time| time.0))
                .or_else(|| {
                    event
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|time| time.0)
                });
            if last_seen.is_none_or(|seen| seen < cutoff) {
                continue;
            }
            let component = event
                .reporting_component
                .clone()
                .filter(|component| !component.is_empty())
                .or_else(|| {
                    event
                        .source
                        .as_ref()
                        .and_then(|source| source.component.clone())
                })
                .unwrap_or_default();
            let key = format!(
                "{component} {} {}",
                event.reason.unwrap_or_default(),
                event.involved_object.kind.unwrap_or_default()
            );
            *counts.entry(key).or_default() += 1;
        }
        Ok(counts)
    }

    /// Moves the first `relabel` nodes to other sites and times the
    /// convergence from the first label patch.
    async fn relabel_nodes(&self) -> Result<Value> {
        let expected = self.expected_nodes_per_model(true);
        let started = Instant::now();
        futures::stream::iter(0..self.args.relabel)
            .map(|node| {
                let name = self.fleet.node_name(&node_suffix(node));
                let site = site_name(self.site_after(node, true));
                async move {
                    self.fleet
                        .relabel(&name, &[(SITE_LABEL, Some(site.as_str()))])
                        .await
                }
            })
            .buffer_unordered(10)
            .try_collect::<Vec<_>>()
            .await?;
        let patched_s = started.elapsed().as_secs_f64();
        tracing::info!(
            nodes = self.args.relabel,
            seconds = patched_s,
            "Nodes relabelled"
        );

        let converged = self.wait_for_convergence(&expected, started).await?;
        Ok(json!({
            "nodes": self.args.relabel,
            "labels_patched_s": patched_s,
            "converged_s": converged,
        }))
    }
}

/// Per-model node counts: DaemonSets' desiredNumberScheduled (summed over a
/// model's variants) and the status's desired and ready nodes.
#[derive(Debug, Default)]
struct FleetState {
    scheduled: BTreeMap<String, i32>,
    desired: BTreeMap<String, i32>,
    ready: BTreeMap<String, i32>,
}

/// Records when the watch first receives a DaemonSet of each VisionModel.
async fn record_daemon_set_creation(
    api: Api<DaemonSet>,
    seen: Arc<Mutex<BTreeMap<String, Instant>>>,
) {
    let stream = watcher(api, watcher::Config::default()).applied_objects();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(daemon_set) => {
                if let Some(model) = daemon_set.labels().get(VISION_MODEL_LABEL) {
                    lock(&seen)
                        .entry(model.clone())
                        .or_insert_with(Instant::now);
                }
            }
            Err(error) => tracing::warn!(%error, "DaemonSet watch failed; retrying"),
        }
    }
}

async fn insert_versions<K>(versions: &mut BTreeMap<String, String>, api: Api<K>) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for object in api.list(&ListParams::default()).await? {
        versions.insert(
            object_key(&object),
            object.resource_version().unwrap_or_default(),
        );
    }
    Ok(())
}

fn changed_versions(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|key| before.get(*key) != after.get(*key))
        .cloned()
        .collect()
}

fn object_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!("{}/{}", K::kind(&()), object.name_any())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Median, p99 and range of sorted values, nearest-rank.
fn distribution(sorted: &[f64]) -> Value {
    let rank = |fraction: f64| {
        let index = (fraction * sorted.len() as f64).ceil() as usize;
        sorted
            .get(index.clamp(1, sorted.len().max(1)) - 1)
            .copied()
            .unwrap_or(0.0)
    };
    json!({
        "n": sorted.len(),
        "min": sorted.first().copied().unwrap_or(0.0),
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": sorted.last().copied().unwrap_or(0.0),
    })
}
