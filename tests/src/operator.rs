//! The operator run in-process against the test cluster, watching one test
//! namespace, so that parallel tests each have their own operator.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kube::runtime::events::Reporter;
use tokio::task::JoinHandle;
use visionfleet_model::{FetchPolicy, ModelStore};
use visionfleet_operator::controller::{self, ControllerParts};
use visionfleet_operator::metrics::Metrics;
use visionfleet_operator::reconcile::verify::Verifier;
use visionfleet_operator::settings::AgentSettings;

/// A running operator. Dropping it stops the controller.
pub struct TestOperator {
    task: JoinHandle<()>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    _cache: tempfile::TempDir,
}

impl std::fmt::Debug for TestOperator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TestOperator")
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl TestOperator {
    /// Starts the controller for `namespace` with the default agent settings.
    pub fn start(client: kube::Client, namespace: &str) -> std::io::Result<Self> {
        Self::start_with(client, namespace, AgentSettings::default())
    }

    /// Starts the controller for `namespace` with `settings`.
    pub fn start_with(
        client: kube::Client,
        namespace: &str,
        settings: AgentSettings,
    ) -> std::io::Result<Self> {
        let cache = tempfile::tempdir()?;
        let metrics = Arc::new(Metrics::new().map_err(std::io::Error::other)?);
        let ready = Arc::new(AtomicBool::new(false));

        let parts = ControllerParts {
            client,
            settings,
            verifier: Verifier::new(
                ModelStore::new(PathBuf::from(cache.path())),
                FetchPolicy::default(),
            ),
            metrics: Arc::clone(&metrics),
            reporter: Reporter {
                controller: "visionfleet-operator".to_owned(),
                instance: Some(format!("e2e-{namespace}")),
            },
            namespace: Some(namespace.to_owned()),
        };
        let signal = Arc::clone(&ready);
        let task = tokio::spawn(async move {
            if let Err(error) =
                controller::run(parts, move || signal.store(true, Ordering::Relaxed)).await
            {
                tracing::error!(%error, "Operator under test failed to start");
            }
        });

        Ok(Self {
            task,
            ready,
            metrics,
            _cache: cache,
        })
    }

    /// Checks whether the controller's watch caches have synced.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Renders the operator's metrics in the Prometheus text format.
    pub fn metrics(&self) -> String {
        self.metrics.render()
    }
}

impl Drop for TestOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
