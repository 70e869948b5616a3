//! The operator's Prometheus metrics, all in one registry.
//!
//! Labels are bounded: error categories and condition names are fixed sets,
//! and per-VisionModel series (namespace, name, device) are removed when the
//! VisionModel goes away.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use visionfleet_api::{VisionModel, VisionModelStatus};

/// Operator metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounter,
    failures: IntCounterVec,
    duration: Histogram,
    fleet_nodes: IntGaugeVec,
    device_nodes: IntGaugeVec,
    condition: IntGaugeVec,
    /// Devices exported per VisionModel (namespace, name), so that series of
    /// devices and VisionModels that disappear are removed.
    exported: Mutex<BTreeMap<(String, String), BTreeSet<String>>>,
}

/// Node count kinds exported per VisionModel.
const NODE_STATES: [&str; 4] = ["desired", "updated", "ready", "available"];

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();

        let reconciles = IntCounter::new(
            "visionfleet_operator_reconciles_total",
            "Reconciles of VisionModels started.",
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "visionfleet_operator_reconcile_failures_total",
                "Reconciles that ended in an error, by error category.",
            ),
            &["category"],
        )?;
        // A reconcile without a model download takes a few milliseconds of API
        // calls; one that downloads a model can take minutes on a slow link.
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "visionfleet_operator_reconcile_duration_seconds",
                "Time taken by one reconcile, in seconds.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        )?;
        let fleet_nodes = IntGaugeVec::new(
            Opts::new(
                "visionfleet_fleet_nodes",
                "Nodes of a VisionModel's agent DaemonSets, by state.",
            ),
            &["namespace", "name", "state"],
        )?;
        let device_nodes = IntGaugeVec::new(
            Opts::new(
                "visionfleet_fleet_device_nodes",
                "Ready agents of a VisionModel, by the inference device they use.",
            ),
            &["namespace", "name", "device"],
        )?;
        let condition = IntGaugeVec::new(
            Opts::new(
                "visionfleet_vision_model_condition",
                "1 when a VisionModel's condition is True, 0 otherwise.",
            ),
            &["namespace", "name", "condition"],
        )?;

        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(fleet_nodes.clone()))?;
        registry.register(Box::new(device_nodes.clone()))?;
        registry.register(Box::new(condition.clone()))?;

        Ok(Self {
            registry,
            reconciles,
            failures,
            duration,
            fleet_nodes,
            device_nodes,
            condition,
            exported: Mutex::new(BTreeMap::new()),
        })
    }

    /// Counts a reconcile and returns a timer that records its duration when dropped.
    pub fn reconcile_started(&self) -> prometheus::HistogramTimer {
        self.reconciles.inc();
        self.duration.start_timer()
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, category: &'static str) {
        self.failures.with_label_values(&[category]).inc();
    }

    /// Sets the fleet gauges of one VisionModel from its status.
    pub fn observe(&self, model: &VisionModel, status: &VisionModelStatus) {
        let namespace = model.metadata.namespace.clone().unwrap_or_default();
        let name = model.metadata.name.clone().unwrap_or_default();
        let nodes = status.nodes.unwrap_or_default();

        for (state, count) in
            NODE_STATES
                .iter()
                .zip([nodes.desired, nodes.updated, nodes.ready, nodes.available])
        {
            self.fleet_nodes
                .with_label_values(&[namespace.as_str(), name.as_str(), state])
                .set(i64::from(count));
        }
        for condition in &status.conditions {
            let value = i64::from(condition.status == "True");
            self.condition
                .with_label_values(&[namespace.as_str(), name.as_str(), condition.type_.as_str()])
                .set(value);
        }
        self.set_devices(&namespace, &name, status);
    }

    fn set_devices(&self, namespace: &str, name: &str, status: &VisionModelStatus) {
        let mut exported = self
            .exported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current: BTreeSet<String> = status
            .devices
            .iter()
            .map(|device| device.device.clone())
            .collect();
        let previous = exported
            .insert((namespace.to_owned(), name.to_owned()), current.clone())
            .unwrap_or_default();

        for stale in previous.difference(&current) {
            let _ = self
                .device_nodes
                .remove_label_values(&[namespace, name, stale.as_str()]);
        }
        for device in &status.devices {
            self.device_nodes
                .with_label_values(&[namespace, name, device.device.as_str()])
                .set(i64::from(device.nodes));
        }
    }

    /// Removes every series of VisionModels not in `live` (namespace, name).
    pub fn retain(&self, live: &BTreeSet<(String, String)>) {
        let mut exported = self
            .exported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let deleted: Vec<(String, String)> = exported
            .keys()
            .filter(|key| !live.contains(*key))
            .cloned()
            .collect();

        for key in deleted {
            let devices = exported.remove(&key).unwrap_or_default();
            let (namespace, name) = (key.0.as_str(), key.1.as_str());

            for state in NODE_STATES {
                let _ = self
                    .fleet_nodes
                    .remove_label_values(&[namespace, name, state]);
            }
            for condition in visionfleet_api::labels::condition::ALL {
                let _ = self
                    .condition
                    .remove_label_values(&[namespace, name, condition]);
            }
            for device in devices {
                let _ = self
                    .device_nodes
                    .remove_label_values(&[namespace, name, device.as_str()]);
            }
        }
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding gathered metric families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
