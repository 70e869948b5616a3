//! The HTTP client for one fetch, and the mapping of its errors.
//!
//! The client honours the standard proxy variables (`HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, read by reqwest), except that a
//! loopback host is always reached directly. With the link-local block on, it
//! checks every redirect target and every address DNS returns before
//! connecting, which also covers DNS rebinding. A proxied request is resolved
//! by the proxy, so there only the URL's host and redirect targets are checked.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Once;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;
use url::{Host, Url};

use crate::error::FetchError;
use crate::policy::{
    FetchPolicy, blocked_address_reason, blocked_host_name_reason, is_loopback_host,
};
use crate::redact::{RedactedUrl, Secrets};

/// Maximum number of redirects followed, as in browsers and reqwest's default.
const MAX_REDIRECTS: usize = 10;

/// Builds the client for fetching `url` under `policy`.
pub(crate) fn build_client(url: &Url, policy: &FetchPolicy) -> Result<reqwest::Client, FetchError> {
    install_crypto_provider();

    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("visionfleet-model/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(policy.connect_timeout)
        .read_timeout(policy.read_timeout)
        .redirect(redirect_policy(policy));

    if policy.block_link_local_and_metadata {
        builder = builder.dns_resolver(GuardedResolver);
    }
    if url.host().is_some_and(|host| is_loopback_host(&host)) {
        builder = builder.no_proxy();
    }

    builder.build().map_err(|error| FetchError::RequestFailed {
        url: RedactedUrl::from_url(url),
        detail: describe(error, &Secrets::of(url)),
    })
}

/// Installs rustls' ring provider once per process. reqwest is built without
/// a provider, so one must be installed before the first client is built.
// rustls 0.23.48 deprecates the ring provider because it lacks post-quantum
// key exchange; the workspace builds rustls with ring as its only provider.
#[allow(deprecated)]
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means another part of the process installed a provider first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Returns why `url` may not be fetched, checking the host literally: a
/// metadata host name or a blocked IP address.
pub(crate) fn check_host(url: &Url, policy: &FetchPolicy) -> Result<(), FetchError> {
    if !policy.block_link_local_and_metadata {
        return Ok(());
    }

    let blocked =
        match url.host() {
            Some(Host::Domain(name)) => {
                blocked_host_name_reason(name).map(|reason| (name.to_owned(), reason))
            }
            Some(Host::Ipv4(address)) => blocked_address_reason(IpAddr::V4(address))
                .map(|reason| (address.to_string(), reason)),
            Some(Host::Ipv6(address)) => blocked_address_reason(IpAddr::V6(address))
                .map(|reason| (address.to_string(), reason)),
            None => None,
        };

    match blocked {
        Some((host, detail)) => Err(FetchError::BlockedAddress {
            url: RedactedUrl::from_url(url),
            host,
            detail,
        }),
        None => Ok(()),
    }
}

/// Reason a redirect was rejected, carried through reqwest's error as its source.
#[derive(Debug, thiserror::Error)]
enum RedirectRefused {
    #[error("host {host} is {detail}")]
    Blocked { host: String, detail: &'static str },
    #[error("scheme {scheme} is not allowed")]
    Scheme { scheme: String, allowed: String },
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooMany,
}

fn redirect_policy(policy: &FetchPolicy) -> redirect::Policy {
    let policy = policy.clone();
    redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(RedirectRefused::TooMany);
        }

        let target = attempt.url();
        let scheme = target.scheme();
        if !matches!(scheme, "http" | "https") || !policy.allows_scheme(scheme) {
            let refused = RedirectRefused::Scheme {
                scheme: scheme.to_owned(),
                allowed: policy.allowed_schemes.join(", "),
            };
            return attempt.error(refused);
        }

        match check_host(target, &policy) {
            Err(FetchError::BlockedAddress { host, detail, .. }) => {
                attempt.error(RedirectRefused::Blocked { host, detail })
            }
            _ => attempt.follow(),
        }
    })
}

/// Rejected DNS answer, carried through reqwest's error as its source.
#[derive(Debug, thiserror::Error)]
#[error("host {host} resolves to {address}, which is {detail}")]
struct ResolvedToBlocked {
    host: String,
    address: IpAddr,
    detail: &'static str,
}

/// A resolver that rejects a name when any of its addresses is blocked.
/// Rejecting the whole name, rather than dropping the bad address, keeps a
/// name that mixes public and metadata addresses from working intermittently.
#[derive(Debug)]
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            check_resolved(&host, &addresses)?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

fn check_resolved(host: &str, addresses: &[SocketAddr]) -> Result<(), ResolvedToBlocked> {
    let blocked = addresses.iter().find_map(|address| {
        blocked_address_reason(address.ip()).map(|detail| (address.ip(), detail))
    });
    match blocked {
        Some((address, detail)) => Err(ResolvedToBlocked {
            host: host.to_owned(),
            address,
            detail,
        }),
        None => Ok(()),
    }
}

/// Maps an error from sending a request or reading its headers.
pub(crate) fn request_error(error: reqwest::Error, url: &Url) -> FetchError {
    let redacted = RedactedUrl::from_url(url);

    if let Some(refused) = find_source::<RedirectRefused>(&error) {
        return match refused {
            RedirectRefused::Blocked { host, detail } => FetchError::BlockedAddress {
                url: redacted,
                host: host.clone(),
                detail,
            },
            RedirectRefused::Scheme { scheme, allowed } => FetchError::SchemeNotAllowed {
                url: redacted,
                scheme: scheme.clone(),
                allowed: allowed.clone(),
            },
            RedirectRefused::TooMany => FetchError::RedirectRejected {
                url: redacted,
                detail: refused.to_string(),
            },
        };
    }
    if let Some(blocked) = find_source::<ResolvedToBlocked>(&error) {
        return FetchError::BlockedAddress {
            url: redacted,
            host: format!("{} ({})", blocked.host, blocked.address),
            detail: blocked.detail,
        };
    }

    let phase = if error.is_connect() {
        "connecting"
    } else {
        "waiting for the response"
    };
    if error.is_timeout() {
        return FetchError::DownloadTimedOut {
            url: redacted,
            phase,
        };
    }

    let is_connect = error.is_connect();
    let detail = describe(error, &Secrets::of(url));
    if is_connect {
        return FetchError::ConnectionFailed {
            url: redacted,
            detail,
        };
    }
    FetchError::RequestFailed {
        url: redacted,
        detail,
    }
}

/// Maps an error from reading the response body after `received` bytes.
pub(crate) fn body_error(
    error: reqwest::Error,
    url: &Url,
    received: u64,
    expected: Option<u64>,
) -> FetchError {
    let redacted = RedactedUrl::from_url(url);
    if error.is_timeout() {
        return FetchError::DownloadTimedOut {
            url: redacted,
            phase: "reading the response body",
        };
    }
    FetchError::ConnectionCut {
        url: redacted,
        received,
        expected,
    }
}

fn find_source<E: StdError + 'static>(error: &reqwest::Error) -> Option<&E> {
    let mut source = error.source();
    while let Some(current) = source {
        if let Some(found) = current.downcast_ref::<E>() {
            return Some(found);
        }
        source = current.source();
    }
    None
}

/// Describes a reqwest error and its causes without the URL, with any
/// secret that a cause might echo replaced.
pub(crate) fn describe(error: reqwest::Error, secrets: &Secrets) -> String {
    let error = error.without_url();
    let mut parts = vec![error.to_string()];

    let mut source = error.source();
    while let Some(current) = source {
        let text = current.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = current.source();
    }

    secrets.scrub(&parts.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_url_is_refused_before_connecting() {
        let policy = FetchPolicy::default();
        for raw in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/x",
            "http://[fd00:ec2::254]/x",
            "http://metadata.google.internal/computeMetadata/v1/",
        ] {
            let url = Url::parse(raw).expect("valid URL");
            let error = check_host(&url, &policy).expect_err("blocked host");
            assert_eq!(error.reason(), "BlockedAddress", "{raw}");
        }
    }

    #[test]
    fn dns_answer_with_metadata_address_is_refused() {
        let public: SocketAddr = "203.0.113.7:0".parse().expect("valid address");
        let metadata: SocketAddr = "169.254.169.254:0".parse().expect("valid address");
        assert!(check_resolved("models.example.com", &[public]).is_ok());
        let refused =
            check_resolved("rebind.example.com", &[public, metadata]).expect_err("blocked answer");
        assert_eq!(refused.address, metadata.ip());
    }

    #[tokio::test]
    async fn resolver_accepts_localhost() {
        let name: Name = "localhost".parse().expect("valid name");
        let addresses: Vec<SocketAddr> = GuardedResolver
            .resolve(name)
            .await
            .expect("localhost resolves")
            .collect();
        assert!(addresses.iter().all(|address| address.ip().is_loopback()));
    }

    #[test]
    fn block_can_be_disabled() {
        let policy = FetchPolicy {
            block_link_local_and_metadata: false,
            ..FetchPolicy::default()
        };
        let url = Url::parse("http://169.254.169.254/").expect("valid URL");
        assert!(check_host(&url, &policy).is_ok());
    }
}
