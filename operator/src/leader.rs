//! Leader election with a `coordination.k8s.io/v1` Lease, so that of several
//! operator replicas only one writes at a time.
//!
//! The holder renews the Lease every `renew_every`; another replica takes it
//! over once it has not been renewed for `lease_duration`. Updates carry the
//! Lease's resourceVersion, so two replicas racing for an expired Lease
//! cannot both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity, usually its pod name.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

/// A held Lease.
#[derive(Debug)]
pub struct Leadership {
    api: Api<Lease>,
    settings: LeaseSettings,
}

/// Waits until this replica holds the Lease.
pub async fn acquire(
    client: kube::Client,
    settings: LeaseSettings,
) -> Result<Leadership, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);

    loop {
        match try_take(&api, &settings).await {
            Ok(true) => {
                tracing::info!(lease = %settings.name, identity = %settings.identity, "Acquired leadership");
                return Ok(Leadership { api, settings });
            }
            Ok(false) => {
                tracing::debug!(lease = %settings.name, "Lease is held by another replica")
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!("Lost a race for the lease")
            }
            Err(error) => return Err(error),
        }
        tokio::time::sleep(settings.renew_every).await;
    }
}

impl Leadership {
    /// Renews the Lease until renewal fails or another replica holds it,
    /// then returns, so the caller can stop writing.
    pub async fn keep(self) -> kube::Error {
        loop {
            tokio::time::sleep(self.settings.renew_every).await;

            match try_take(&self.api, &self.settings).await {
                Ok(true) => {}
                Ok(false) => {
                    return kube::Error::Service(
                        format!(
                            "lease {} is now held by another replica",
                            self.settings.name
                        )
                        .into(),
                    );
                }
                Err(error) => return error,
            }
        }
    }
}

/// Takes or renews the Lease when it is free, expired or already ours.
async fn try_take(api: &Api<Lease>, settings: &LeaseSettings) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        api.create(&PostParams::default(), &new_lease(settings, now))
            .await?;
        return Ok(true);
    };

    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let ours = spec.holder_identity.as_deref() == Some(settings.identity.as_str());
    if !ours && !expired(spec, now) {
        return Ok(false);
    }

    if !ours {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.holder_identity = Some(settings.identity.clone());
    spec.lease_duration_seconds = Some(seconds(settings.lease_duration));
    spec.renew_time = Some(MicroTime(now));

    api.replace(&settings.name, &PostParams::default(), &lease)
        .await?;
    Ok(true)
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(MicroTime(renewed)) = spec.renew_time else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));

    renewed + duration < now
}

fn new_lease(settings: &LeaseSettings, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(settings.name.clone()),
            namespace: Some(settings.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(settings.identity.clone()),
            lease_duration_seconds: Some(seconds(settings.lease_duration)),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}
