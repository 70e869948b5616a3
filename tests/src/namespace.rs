//! A namespace of its own per test, so tests run in parallel on one cluster.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, Config};
use tracing::{info, warn};

use crate::cluster::TestCluster;
use crate::wait::{Unmet, WaitError, wait_for};

/// Label on every namespace and fake Node a test creates; its value is the
/// test namespace's name, so cleanup finds the test's cluster-scoped objects.
pub const TEST_NAMESPACE_LABEL: &str = "e2e.visionfleet.dev/test-namespace";

/// Set to `1` to keep a test's namespace and Nodes after it ends, for
/// inspection with kubectl.
const KEEP_RESOURCES_ENV: &str = "VISIONFLEET_KEEP_TEST_RESOURCES";

/// Maximum length of the test-name part of a namespace name. It caps
/// namespace names at 40 characters, so fake node names
/// `<namespace>-<suffix>` fit the 63-character limit of label values with
/// suffixes of up to 22 characters.
const MAX_TEST_NAME_LENGTH: usize = 30;

/// How long kube-controller-manager may take to give a new namespace its
/// default ServiceAccount and that account's token Secret.
const SERVICE_ACCOUNT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("failed to create test namespace {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("test namespace {name} is not ready for pods: {source}")]
    ServiceAccountMissing {
        name: String,
        #[source]
        source: WaitError,
    },
}

/// A namespace created for one test. Dropping it deletes the namespace and
/// the fake Nodes labelled with its name, unless
/// `VISIONFLEET_KEEP_TEST_RESOURCES=1`.
pub struct TestNamespace {
    name: String,
    client: Client,
    config: Config,
    deleted: bool,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TestNamespace")
            .field("name", &self.name)
            .field("deleted", &self.deleted)
            .finish_non_exhaustive()
    }
}

impl TestNamespace {
    /// Creates `vf-<test name>-<random suffix>` and waits until pods can be
    /// created in it: in Kubernetes 1.20 the ServiceAccount admission plugin
    /// rejects pods until the default ServiceAccount has a token Secret.
    pub async fn create(cluster: &TestCluster, test_name: &str) -> Result<Self, NamespaceError> {
        let name = format!("vf-{}-{}", sanitize(test_name), random_suffix());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    TEST_NAMESPACE_LABEL.to_owned(),
                    name.clone(),
                )])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(cluster.client())
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(|source| NamespaceError::Create {
                name: name.clone(),
                source,
            })?;
        let test_namespace = Self {
            name,
            client: cluster.client(),
            config: cluster.config().clone(),
            deleted: false,
        };
        info!(namespace = %test_namespace.name, "Created test namespace");

        test_namespace.wait_for_service_account_token().await?;
        Ok(test_namespace)
    }

    async fn wait_for_service_account_token(&self) -> Result<(), NamespaceError> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client(), &self.name);
        wait_for(
            "ServiceAccount default to get its token Secret",
            SERVICE_ACCOUNT_TIMEOUT,
            || async {
                let account = accounts.get("default").await?;
                if account.secrets.is_some_and(|secrets| !secrets.is_empty()) {
                    Ok(())
                } else {
                    Err(Unmet::pending(
                        "ServiceAccount default has no token Secret yet",
                    ))
                }
            },
        )
        .await
        .map_err(|source| NamespaceError::ServiceAccountMissing {
            name: self.name.clone(),
            source,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Label selector for the cluster-scoped objects that belong to this test.
    pub fn selector(&self) -> String {
        format!("{TEST_NAMESPACE_LABEL}={}", self.name)
    }

    /// Deletes the namespace and this test's Nodes now, reporting errors.
    /// Does not wait for the namespace's finalization.
    pub async fn delete(mut self) -> Result<(), kube::Error> {
        self.deleted = true;
        delete_test_objects(&self.client, &self.name).await
    }
}

impl Drop for TestNamespace {
    /// Deletes from a separate thread with a client of its own, because the
    /// test's runtime may be shutting down and cannot drive the test's client.
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        if std::env::var(KEEP_RESOURCES_ENV).is_ok_and(|value| value == "1") {
            info!(namespace = %self.name, "Keeping test namespace and nodes ({KEEP_RESOURCES_ENV}=1)");
            return;
        }

        let config = self.config.clone();
        let name = self.name.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = Client::try_from(config).map_err(std::io::Error::other)?;
                delete_test_objects(&client, &name)
                    .await
                    .map_err(std::io::Error::other)
            })
        });

        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                warn!(namespace = %self.name, %error, "Failed to delete test namespace")
            }
            Err(_) => warn!(namespace = %self.name, "Test namespace cleanup thread panicked"),
        }
    }
}

/// Deletes the namespace first, so no controller can create pods in it any
/// more. Then force-deletes its pods: on fake nodes whose kubelet stopped,
/// they would stay Terminating until the pod garbage collector removes them.
/// Deletes the test's Nodes last.
async fn delete_test_objects(client: &Client, name: &str) -> Result<(), kube::Error> {
    match Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_not_found() => {}
        Err(error) => return Err(error),
    }

    let force = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    Api::<Pod>::namespaced(client.clone(), name)
        .delete_collection(&force, &ListParams::default())
        .await?;

    let selector = ListParams::default().labels(&format!("{TEST_NAMESPACE_LABEL}={name}"));
    Api::<Node>::all(client.clone())
        .delete_collection(&DeleteParams::default(), &selector)
        .await?;
    info!(namespace = %name, "Deleted test namespace, its pods and its nodes");
    Ok(())
}

/// Turns a test name such as `module::daemon_set_on_labelled_nodes` into a
/// DNS label fragment.
fn sanitize(test_name: &str) -> String {
    let last_segment = test_name.rsplit("::").next().unwrap_or(test_name);
    let mut sanitized: String = last_segment
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() {
                character.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    sanitized.truncate(MAX_TEST_NAME_LENGTH);
    let trimmed = sanitized.trim_matches('-');
    if trimmed.is_empty() {
        "test".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Six lowercase base-36 characters, different for every call in a process
/// and random across processes (std's `RandomState` is seeded per process).
fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut value = RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));

    let mut suffix = String::with_capacity(6);
    for _ in 0..6 {
        let digit = u32::try_from(value % 36).unwrap_or_default();
        suffix.push(char::from_digit(digit, 36).unwrap_or('0'));
        value /= 36;
    }
    suffix
}

#[cfg(test)]
mod tests {
    use super::{random_suffix, sanitize};

    #[test]
    fn sanitize_makes_dns_label_fragment() {
        assert_eq!(
            sanitize("cluster_smoke::DaemonSet_on_nodes"),
            "daemonset-on-nodes"
        );
        assert_eq!(sanitize("__"), "test");
        assert_eq!(sanitize(&"a".repeat(80)).len(), 30);
    }

    #[test]
    fn random_suffixes_differ() {
        let first = random_suffix();
        let second = random_suffix();
        assert_eq!(first.len(), 6);
        assert_ne!(first, second);
    }
}
