//! The Kubernetes API client and the two reads and writes the agent makes:
//! its node's source override annotation, and its own pod's state.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use tokio::sync::OnceCell;

/// The Kubernetes client, created on first use: from the service account
/// in a pod, from `KUBECONFIG` or `~/.kube/config` elsewhere. A failed
/// creation is tried again on the next use.
#[derive(Clone, Default)]
pub struct Cluster {
    client: Arc<OnceCell<kube::Client>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("connected", &self.client.initialized())
            .finish()
    }
}

impl Cluster {
    pub async fn client(&self) -> Result<kube::Client, kube::Error> {
        self.client
            .get_or_try_init(kube::Client::try_default)
            .await
            .cloned()
    }

    /// Reads annotation `annotation` of node `node`; `None` when the node
    /// does not have it or it is blank. Needs `get` on `nodes`.
    pub async fn node_annotation(
        &self,
        node: &str,
        annotation: &str,
    ) -> Result<Option<String>, kube::Error> {
        let nodes: Api<Node> = Api::all(self.client().await?);
        let node = nodes.get(node).await?;
        Ok(node
            .metadata
            .annotations
            .and_then(|annotations| annotations.get(annotation).cloned())
            .filter(|value| !value.trim().is_empty()))
    }
}
