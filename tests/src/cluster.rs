//! Connection to the local test cluster.

use std::net::IpAddr;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use crate::namespace::{NamespaceError, TestNamespace};

const SETUP_HINT: &str = "start the local cluster with `scripts/local-cluster up`, then run `eval \"$(scripts/local-cluster env)\"`";

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("KUBECONFIG is not set; {SETUP_HINT}")]
    KubeconfigUnset,
    #[error("failed to load the kubeconfig named by KUBECONFIG ({paths}): {source}; {SETUP_HINT}")]
    InvalidKubeconfig {
        paths: String,
        #[source]
        source: KubeconfigError,
    },
    #[error(
        "refusing to run against {url}: the tests create and delete Nodes, so they only run against a \
         cluster on 127.0.0.1 or localhost; {SETUP_HINT}"
    )]
    NotLocal { url: String },
    #[error("failed to build a Kubernetes client for {url}: {source}")]
    Client {
        url: String,
        #[source]
        source: kube::Error,
    },
    #[error("kube-apiserver at {url} is unreachable: {source}; {SETUP_HINT}")]
    Unreachable {
        url: String,
        #[source]
        source: kube::Error,
    },
}

/// The local cluster that `scripts/local-cluster up` runs.
#[derive(Clone)]
pub struct TestCluster {
    config: Config,
    client: Client,
    server_version: String,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TestCluster")
            .field("url", &self.config.cluster_url.to_string())
            .field("server_version", &self.server_version)
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    /// Connects with the kubeconfig that `KUBECONFIG` names and checks that
    /// the apiserver is reachable.
    ///
    /// Never falls back to `~/.kube/config`, so a forgotten environment
    /// cannot point the tests at another cluster.
    pub async fn connect() -> Result<Self, ConnectError> {
        let config = load_config().await?;
        let url = config.cluster_url.to_string();
        if !is_loopback_host(config.cluster_url.host()) {
            return Err(ConnectError::NotLocal { url });
        }

        let client = Client::try_from(config.clone()).map_err(|source| ConnectError::Client {
            url: url.clone(),
            source,
        })?;
        let version = client
            .apiserver_version()
            .await
            .map_err(|source| ConnectError::Unreachable { url, source })?;

        Ok(Self {
            config,
            client,
            server_version: version.git_version,
        })
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Client configuration, for code that needs its own client, such as
    /// cleanup that runs outside the test's Tokio runtime.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The apiserver's version string, e.g. `v1.20.2`.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// Creates a namespace of its own for the test named `test_name`.
    pub async fn namespace(&self, test_name: &str) -> Result<TestNamespace, NamespaceError> {
        TestNamespace::create(self, test_name).await
    }
}

async fn load_config() -> Result<Config, ConnectError> {
    let paths = std::env::var("KUBECONFIG").unwrap_or_default();
    if paths.trim().is_empty() {
        return Err(ConnectError::KubeconfigUnset);
    }

    let invalid = |source| ConnectError::InvalidKubeconfig {
        paths: paths.clone(),
        source,
    };
    let kubeconfig = Kubeconfig::read().map_err(invalid)?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(invalid)
}

fn is_loopback_host(host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts_accepted() {
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "[::1]"] {
            assert!(is_loopback_host(Some(host)), "{host}");
        }
    }

    #[test]
    fn remote_hosts_rejected() {
        for host in [
            Some("10.0.0.1"),
            Some("kubernetes.example"),
            Some("localhost.example"),
            None,
        ] {
            assert!(!is_loopback_host(host), "{host:?}");
        }
    }
}
