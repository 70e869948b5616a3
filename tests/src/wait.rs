//! Polling until a condition on the cluster holds.
//!
//! Controllers converge asynchronously, so tests wait for the state they
//! expect instead of sleeping. The timeout is a safety net for a stuck test,
//! not a latency assertion: pick it generously.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, sleep};

/// Time between two checks of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Why a condition does not hold (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    /// The condition may still come true: the text describes the state seen.
    Pending(String),
    /// The condition can no longer come true, so waiting stops at once.
    Fatal(String),
}

impl Unmet {
    pub fn pending(observed: impl Display) -> Self {
        Self::Pending(observed.to_string())
    }

    pub fn fatal(error: impl Display) -> Self {
        Self::Fatal(error.to_string())
    }
}

/// Classifies API errors: missing objects, conflicts, throttling, server
/// errors and transport failures are worth retrying, the rest are not.
impl From<kube::Error> for Unmet {
    fn from(error: kube::Error) -> Self {
        let retryable = match &error {
            kube::Error::Api(status) => matches!(status.code, 404 | 409 | 429 | 500..=504),
            kube::Error::HyperError(_) | kube::Error::Service(_) => true,
            _ => false,
        };
        if retryable {
            Self::pending(error)
        } else {
            Self::fatal(error)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(
        "timed out after {timeout:?} waiting for {description}; last observed: {last_observed}"
    )]
    TimedOut {
        description: String,
        timeout: Duration,
        last_observed: String,
    },
    #[error("gave up waiting for {description}: {reason}")]
    Failed { description: String, reason: String },
}

/// Calls `condition` every 250 ms until it returns `Ok`, and returns that
/// value. Stops early on [`Unmet::Fatal`].
///
/// ```no_run
/// # async fn example(pods: kube::Api<k8s_openapi::api::core::v1::Pod>) -> Result<(), visionfleet_e2e::wait::WaitError> {
/// use std::time::Duration;
/// use visionfleet_e2e::{Unmet, wait_for};
///
/// let ip = wait_for("pod web to get an IP", Duration::from_secs(60), || async {
///     let pod = pods.get("web").await?;
///     let ip = pod.status.and_then(|status| status.pod_ip);
///     ip.ok_or_else(|| Unmet::pending("no podIP yet"))
/// })
/// .await?;
/// # Ok(())
/// # }
/// ```
pub async fn wait_for<T, F, Fut>(
    description: &str,
    timeout: Duration,
    mut condition: F,
) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Unmet>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last_observed = match condition().await {
            Ok(value) => return Ok(value),
            Err(Unmet::Pending(observed)) => observed,
            Err(Unmet::Fatal(reason)) => {
                return Err(WaitError::Failed {
                    description: description.to_owned(),
                    reason,
                });
            }
        };

        if Instant::now() + POLL_INTERVAL > deadline {
            return Err(WaitError::TimedOut {
                description: description.to_owned(),
                timeout,
                last_observed,
            });
        }
        sleep(POLL_INTERVAL).await;
    }
}
