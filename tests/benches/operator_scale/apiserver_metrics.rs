//! Write requests the apiserver counted, from its `apiserver_request_total`
//! metric read with `kubectl get --raw /metrics`.
//!
//! Kubernetes 1.20 labels the metric by verb, resource and subresource but
//! not by client, so the counts cover every client of the cluster: the
//! benchmark compares them over a window in which only the operator writes
//! the resources it owns.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

/// Verbs that change objects; server-side apply is counted as `APPLY`.
const WRITE_VERBS: [&str; 5] = ["POST", "PUT", "PATCH", "APPLY", "DELETE"];

/// Resources the operator writes.
pub const OPERATOR_RESOURCES: [&str; 4] = ["visionmodels", "daemonsets", "configmaps", "events"];

/// Write counts keyed by `verb resource[/subresource]`.
pub type WriteCounts = BTreeMap<String, f64>;

/// Reads the apiserver's write counts for [`OPERATOR_RESOURCES`].
pub async fn write_counts() -> Result<WriteCounts> {
    let kubectl = std::env::var("VISIONFLEET_KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&kubectl)
            .args(["get", "--raw", "/metrics"])
            .output()
            .with_context(|| format!("failed to run {kubectl}"))
    })
    .await??;
    if !output.status.success() {
        bail!(
            "kubectl get --raw /metrics failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(parse_write_counts(&String::from_utf8_lossy(&output.stdout)))
}

/// Returns `after - before` for every key whose count changed.
pub fn difference(before: &WriteCounts, after: &WriteCounts) -> WriteCounts {
    after
        .iter()
        .filter_map(|(key, count)| {
            let delta = count - before.get(key).copied().unwrap_or(0.0);
            (delta != 0.0).then(|| (key.clone(), delta))
        })
        .collect()
}

fn parse_write_counts(text: &str) -> WriteCounts {
    let mut counts = WriteCounts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let labels = parse_labels(labels);
        let label = |name: &str| labels.get(name).map(String::as_str).unwrap_or_default();

        if !WRITE_VERBS.contains(&label("verb")) || !OPERATOR_RESOURCES.contains(&label("resource"))
        {
            continue;
        }
        let resource = match label("subresource") {
            "" => label("resource").to_owned(),
            subresource => format!("{}/{subresource}", label("resource")),
        };
        let key = format!("{} {resource}", label("verb"));
        *counts.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    counts
}

/// Parses `name="value",...`; label values in this metric hold no quotes or commas.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split("\",")
        .filter_map(|pair| {
            let (name, value) = pair.split_once("=\"")?;
            Some((name.to_owned(), value.trim_end_matches('"').to_owned()))
        })
        .collect()
}
