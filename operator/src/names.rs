//! Names of generated objects, kept within Kubernetes' length limits.

use sha2::{Digest, Sha256};

/// Maximum length of a label value.
pub const MAX_LABEL_VALUE: usize = 63;

/// Longest DaemonSet name that still leaves room for the `-xxxxx` suffix the
/// DaemonSet controller adds to pod names, so pod names stay valid hostnames.
pub const MAX_DAEMONSET_NAME: usize = 57;

/// Longest ConfigMap name (a DNS subdomain).
pub const MAX_CONFIGMAP_NAME: usize = 253;

/// Returns `name` when it fits in `limit` bytes, else its first bytes and a
/// dash and 8 hex digits of its sha256, so that two long names that share a
/// prefix still differ. The input is a Kubernetes name, so it is ASCII.
pub fn fit(name: &str, limit: usize) -> String {
    if name.len() <= limit {
        return name.to_owned();
    }

    let hash = hex::encode(Sha256::digest(name.as_bytes()));
    let keep = limit - 9;
    let prefix = name[..keep].trim_end_matches(['-', '.']);
    format!("{prefix}-{}", &hash[..8])
}

/// Returns the first `length` hex digits of the sha256 of `bytes`.
pub fn short_hash(bytes: &[u8], length: usize) -> String {
    let hash = hex::encode(Sha256::digest(bytes));
    hash[..length.min(hash.len())].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_name_unchanged() {
        assert_eq!(
            fit("shelf-detection-agent-gpu", MAX_DAEMONSET_NAME),
            "shelf-detection-agent-gpu"
        );
    }

    #[test]
    fn long_name_cut_with_hash() {
        let long = format!("{}-agent-gpu", "a".repeat(80));

        let name = fit(&long, MAX_DAEMONSET_NAME);

        assert_eq!(name.len(), MAX_DAEMONSET_NAME);
        assert!(name.starts_with("aaaa"));
        assert_ne!(
            name,
            fit(&format!("{}-agent-cpu", "a".repeat(80)), MAX_DAEMONSET_NAME)
        );
    }

    #[test]
    fn cut_never_ends_prefix_with_dash() {
        let name = fit(
            &format!("{}-{}", "a".repeat(53), "b".repeat(20)),
            MAX_DAEMONSET_NAME,
        );

        assert!(!name.contains("--"), "{name}");
    }
}
