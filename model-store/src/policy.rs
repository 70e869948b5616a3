//! Limits and network rules for one fetch, and the address checks that keep a
//! model URL from reaching cloud metadata services.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Limits, timeouts and network rules for [`crate::ModelStore::fetch`].
///
/// The defaults suit a model package of up to a few hundred MiB fetched over a
/// slow edge uplink. Every field is public, so callers can tighten them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPolicy {
    /// URL schemes accepted, lowercase. A bare local path counts as `file`.
    /// Default: `https`, `http`, `file`. Redirects may only go to `http` or
    /// `https`, and only when that scheme is in this list.
    pub allowed_schemes: Vec<String>,

    /// Whether to reject link-local addresses (`169.254.0.0/16`, `fe80::/10`),
    /// cloud metadata addresses (`fd00:ec2::254`, `100.100.100.200`) and
    /// metadata host names such as `metadata.google.internal`, checked on the
    /// URL, on every redirect and on each address that DNS returns before
    /// connecting. Loopback stays allowed. Default: `true`.
    pub block_link_local_and_metadata: bool,

    /// Maximum time to establish a TCP and TLS connection. Default: 10 s.
    pub connect_timeout: Duration,

    /// Maximum time to wait for each read of the response, so a stalled
    /// transfer fails while a slow but steady one continues. Default: 30 s.
    pub read_timeout: Duration,

    /// Maximum number of download attempts, the first included; only transient
    /// failures are retried. Default: 5.
    pub max_attempts: u32,

    /// Delay before the first retry; it doubles on each further retry.
    /// Default: 1 s.
    pub backoff_initial: Duration,

    /// Upper bound of the retry delay, also applied to a server's
    /// `Retry-After`. Default: 60 s.
    pub backoff_cap: Duration,

    /// Maximum size of the downloaded file in bytes. Default: 2 GiB.
    pub max_download_bytes: u64,

    /// Maximum total size of the unpacked files in bytes, counted on the
    /// decompressed data rather than the archive headers. Default: 4 GiB.
    pub max_unpacked_bytes: u64,

    /// Maximum number of entries (files and folders) in an archive.
    /// A Custom Vision export has about five. Default: 1000.
    pub max_entries: usize,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            allowed_schemes: vec!["https".to_owned(), "http".to_owned(), "file".to_owned()],
            block_link_local_and_metadata: true,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            max_attempts: 5,
            backoff_initial: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            max_download_bytes: 2 << 30,
            max_unpacked_bytes: 4 << 30,
            max_entries: 1000,
        }
    }
}

impl FetchPolicy {
    /// Returns whether [`FetchPolicy::allowed_schemes`] contains `scheme`, ignoring case.
    pub fn allows_scheme(&self, scheme: &str) -> bool {
        self.allowed_schemes
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(scheme))
    }

    /// Computes the delay before retry number `retry` (1 for the first retry):
    /// `backoff_initial * 2^(retry-1)`, capped at `backoff_cap`, with a random
    /// jitter that removes up to half of it so that many agents retrying after
    /// the same outage spread out. A server's `Retry-After` replaces the
    /// computed delay, still capped.
    pub fn retry_delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(requested) = retry_after {
            return requested.min(self.backoff_cap);
        }

        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        let delay = self
            .backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_cap);

        let jitter = delay.mul_f64(fastrand::f64() / 2.0);
        delay - jitter
    }
}

/// Host names of cloud metadata services, compared case-insensitively and
/// without a trailing dot.
const METADATA_HOST_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
];

/// The AWS instance metadata service's IPv6 address.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// The Alibaba Cloud metadata service's address, outside the link-local range.
const ALIBABA_METADATA_V4: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);

/// Returns why connecting to `address` is refused, or `None` when it is allowed.
pub(crate) fn blocked_address_reason(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => blocked_v4_reason(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return blocked_v4_reason(v4);
            }
            if v6 == AWS_METADATA_V6 {
                return Some("a cloud metadata address");
            }
            if v6.is_unicast_link_local() {
                return Some("a link-local address");
            }
            None
        }
    }
}

fn blocked_v4_reason(address: Ipv4Addr) -> Option<&'static str> {
    if address == ALIBABA_METADATA_V4 {
        return Some("a cloud metadata address");
    }
    if address.is_link_local() {
        return Some("a link-local address");
    }
    None
}

/// Returns why `host` is refused by name, or `None` when the name is allowed.
pub(crate) fn blocked_host_name_reason(host: &str) -> Option<&'static str> {
    let normalized = host.trim_end_matches('.').to_ascii_lowercase();
    METADATA_HOST_NAMES
        .contains(&normalized.as_str())
        .then_some("a cloud metadata host name")
}

/// Returns whether `host` names the local machine: `localhost`, a name under
/// `.localhost`, or a loopback address. Such hosts are never sent through a
/// proxy, as Go's and curl's defaults also do.
pub(crate) fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        url::Host::Ipv4(address) => address.is_loopback(),
        url::Host::Ipv6(address) => address.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_addresses_are_blocked() {
        let blocked = [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "100.100.100.200",
        ];
        for address in blocked {
            let ip: IpAddr = address.parse().expect("valid address");
            assert!(
                blocked_address_reason(ip).is_some(),
                "{address} should be blocked"
            );
        }
    }

    #[test]
    fn loopback_and_public_addresses_are_allowed() {
        for address in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "203.0.113.7",
            "2001:db8::1",
            "fd00:ec2::253",
        ] {
            let ip: IpAddr = address.parse().expect("valid address");
            assert_eq!(
                blocked_address_reason(ip),
                None,
                "{address} should be allowed"
            );
        }
    }

    #[test]
    fn metadata_host_names_are_blocked() {
        assert!(blocked_host_name_reason("metadata.google.internal").is_some());
        assert!(blocked_host_name_reason("METADATA.Google.Internal.").is_some());
        assert_eq!(blocked_host_name_reason("models.example.com"), None);
    }

    #[test]
    fn retry_delay_doubles_up_to_cap() {
        let policy = FetchPolicy {
            backoff_initial: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(10),
            ..FetchPolicy::default()
        };
        for retry in 1..=6 {
            let full = (Duration::from_secs(2) * 2u32.pow(retry - 1)).min(Duration::from_secs(10));
            let delay = policy.retry_delay(retry, None);
            assert!(delay <= full, "retry {retry}: {delay:?} exceeds {full:?}");
            assert!(
                delay >= full / 2,
                "retry {retry}: {delay:?} is below half of {full:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_capped() {
        let policy = FetchPolicy {
            backoff_cap: Duration::from_secs(5),
            ..FetchPolicy::default()
        };
        assert_eq!(
            policy.retry_delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            policy.retry_delay(1, Some(Duration::from_secs(300))),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn loopback_hosts_are_recognized() {
        assert!(is_loopback_host(&url::Host::Domain("localhost")));
        assert!(is_loopback_host(&url::Host::Domain("models.localhost")));
        assert!(is_loopback_host(&url::Host::Ipv4(Ipv4Addr::new(
            127, 0, 0, 2
        ))));
        assert!(!is_loopback_host(&url::Host::Domain("example.com")));
    }
}
