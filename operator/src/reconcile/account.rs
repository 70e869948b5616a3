//! Step 5: check that the agents' ServiceAccount exists in the VisionModel's
//! namespace.
//!
//! A pod can only use a ServiceAccount of its own namespace, and the
//! ServiceAccount admission plugin rejects a pod whose account is missing.
//! The DaemonSet controller then reports only `FailedCreate` Events on the
//! DaemonSet, so the operator names the cause in the VisionModel's status.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;

/// Result of the ServiceAccount check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCheck {
    Present,
    /// The ServiceAccount with this name does not exist.
    Missing(String),
    /// The API did not answer the check, for example without RBAC `get` on
    /// ServiceAccounts. The status then does not mention the account.
    Unknown,
}

/// Looks the ServiceAccount `name` up in `namespace`.
pub async fn check_agent_account(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> AccountCheck {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);

    match accounts.get_opt(name).await {
        Ok(Some(_)) => AccountCheck::Present,
        Ok(None) => AccountCheck::Missing(name.to_owned()),
        Err(error) => {
            tracing::warn!(namespace, service_account = name, %error, "Failed to check the agent ServiceAccount");
            AccountCheck::Unknown
        }
    }
}
