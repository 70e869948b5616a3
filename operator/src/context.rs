//! State shared by every reconcile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;

use crate::metrics::Metrics;
use crate::reconcile::verify::Verifier;
use crate::settings::AgentSettings;

/// Caches of the objects the operator made, kept current by watches, so a
/// reconcile reads them without API calls.
#[derive(Debug, Clone)]
pub struct Stores {
    pub daemon_sets: Store<DaemonSet>,
    pub config_maps: Store<ConfigMap>,
    pub pods: Store<Pod>,
}

impl Stores {
    /// Waits until every cache has its first full list, so that a reconcile
    /// never mistakes a cache still filling for missing objects.
    pub async fn wait_until_ready(&self) {
        let ready = [
            self.daemon_sets.wait_until_ready().await.is_ok(),
            self.config_maps.wait_until_ready().await.is_ok(),
            self.pods.wait_until_ready().await.is_ok(),
        ];
        if ready.contains(&false) {
            tracing::warn!("A watch cache closed before its first list");
        }
    }
}

/// Everything a reconcile needs.
#[expect(
    missing_debug_implementations,
    reason = "kube::Client and Recorder do not implement Debug"
)]
pub struct Context {
    pub client: kube::Client,
    pub settings: AgentSettings,
    pub verifier: Verifier,
    pub stores: Stores,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub backoff: Backoff,
}

/// Per-object retry delays after errors: doubling from `initial` up to `cap`,
/// reset by a successful reconcile.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    pub fn new(initial: Duration, cap: Duration) -> Self {
        Self {
            initial,
            cap,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure of `key` and returns how long to wait before the next try.
    pub fn next_delay(&self, key: &str) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = failures.entry(key.to_owned()).or_default();
        *count = count.saturating_add(1);

        let factor = 2u32.saturating_pow(count.saturating_sub(1).min(16));
        self.initial.saturating_mul(factor).min(self.cap)
    }

    /// Forgets the failures of `key`.
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_until_cap() {
        let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));

        let delays: Vec<u64> = (0..6)
            .map(|_| backoff.next_delay("store-12/shelves").as_secs())
            .collect();

        assert_eq!(delays, [5, 10, 20, 40, 60, 60]);
    }

    #[test]
    fn backoff_reset_starts_over() {
        let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));
        backoff.next_delay("a");
        backoff.next_delay("a");

        backoff.reset("a");

        assert_eq!(backoff.next_delay("a"), Duration::from_secs(5));
        assert_eq!(backoff.next_delay("b"), Duration::from_secs(5));
    }
}
