//! Leader election with a coordination.k8s.io Lease: several replicas may run, only the holder
//! reconciles (and so only the holder calls the provider or writes).

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease lasts without renewal before another replica may take it.
    pub lease_duration: Duration,
    /// A leader that could not renew for this long stops leading (shorter than the duration,
    /// so it stops before anyone else may start).
    pub renew_deadline: Duration,
    /// How often the lease is renewed or, by a follower, looked at.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Defaults of client-go's leader election scaled to `lease_duration`.
    pub fn new(
        namespace: String,
        name: String,
        identity: String,
        lease_duration: Duration,
    ) -> Self {
        LeaseConfig {
            namespace,
            name,
            identity,
            renew_deadline: lease_duration.mul_f64(2.0 / 3.0),
            retry_period: lease_duration / 5,
            lease_duration,
        }
    }
}

/// What a replica does with the lease it sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// No lease exists: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Another holder's lease has not been renewed for a whole duration (or was released): take it.
    TakeOver,
    /// Another replica holds a live lease.
    Follow,
}

/// Decides from the lease and how long ago its record last changed (as observed locally, so
/// that clock skew between nodes does not matter).
pub fn lease_action(
    spec: Option<&LeaseSpec>,
    me: &str,
    unchanged_for: Duration,
    lease_duration: Duration,
) -> LeaseAction {
    let Some(spec) = spec else {
        return LeaseAction::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == me => LeaseAction::Renew,
        None | Some("") => LeaseAction::TakeOver,
        Some(_) if unchanged_for >= lease_duration => LeaseAction::TakeOver,
        Some(_) => LeaseAction::Follow,
    }
}

/// Leadership ended without a shutdown being asked for: the process should exit so that it
/// restarts as a standby.
#[derive(Debug, thiserror::Error)]
#[error("lost the leader lease")]
pub struct LostLeadership;

/// Runs `lead` while this replica holds the lease, until `shutdown` is cancelled.
///
/// `lead` starts once the lease is held and gets a token that is cancelled on shutdown: it
/// finishes its in-flight work and returns, and only then is the lease released, so a standby
/// never starts while this replica still works. Losing the lease drops `lead` at once,
/// in-flight work included, so that two replicas never act on the same object, and returns
/// `LostLeadership`.
pub async fn while_leading<F, Fut>(
    client: Client,
    config: LeaseConfig,
    shutdown: CancellationToken,
    lead: F,
) -> Result<(), LostLeadership>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let (leading_tx, mut leading) = watch::channel(false);
    // The lease is released only on this explicit stop. If this future is dropped (the task
    // aborted, like a crashed process), the election task is aborted and the lease expires.
    let release = CancellationToken::new();
    let mut election = AbortOnDrop(tokio::spawn(run(
        client,
        config,
        leading_tx,
        release.clone().cancelled_owned(),
    )));
    let became_leader = tokio::select! {
        _ = shutdown.cancelled() => false,
        became = leading.wait_for(|l| *l) => became.is_ok(),
    };
    let result = if became_leader {
        let work = lead(shutdown.child_token());
        tokio::pin!(work);
        tokio::select! {
            _ = &mut work => Ok(()),
            // Dropping the work cancels in-flight reconciles at once.
            _ = leading.wait_for(|l| !*l) => Err(LostLeadership),
        }
    } else {
        Ok(())
    };
    release.cancel();
    let _ = (&mut election.0).await;
    result
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the election until `shutdown`; `leading` says whether this replica holds the lease.
/// On shutdown a held lease is released so a standby takes over at once.
pub async fn run(
    client: Client,
    config: LeaseConfig,
    leading: watch::Sender<bool>,
    shutdown: impl Future<Output = ()>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut observed: Option<(Option<String>, Option<String>)> = None;
    let mut observed_at = Instant::now();
    let mut last_renewal: Option<Instant> = None;
    tokio::pin!(shutdown);
    // No call may outlast a renewal round, or a hung API server would keep a stale leader.
    let limit = config.retry_period;
    let pp = PostParams::default();
    loop {
        match tokio::time::timeout(limit, api.get_opt(&config.name))
            .await
            .unwrap_or(Err(timeout_error()))
        {
            Ok(current) => {
                let record = current.as_ref().and_then(|l| l.spec.as_ref()).map(|s| {
                    (
                        s.holder_identity.clone(),
                        s.renew_time.as_ref().map(|t| t.0.to_string()),
                    )
                });
                if record != observed {
                    observed = record;
                    observed_at = Instant::now();
                }
                let action = lease_action(
                    current.as_ref().and_then(|l| l.spec.as_ref()),
                    &config.identity,
                    observed_at.elapsed(),
                    config.lease_duration,
                );
                let written = match action {
                    LeaseAction::Follow => false,
                    LeaseAction::Create => {
                        let lease = new_lease(&config, None);
                        let create = api.create(&pp, &lease);
                        matches!(tokio::time::timeout(limit, create).await, Ok(Ok(_)))
                    }
                    LeaseAction::Renew | LeaseAction::TakeOver => match current {
                        Some(lease) => {
                            let updated = new_lease(&config, Some(&lease));
                            let replace = api.replace(&config.name, &pp, &updated);
                            matches!(tokio::time::timeout(limit, replace).await, Ok(Ok(_)))
                        }
                        None => false,
                    },
                };
                if written {
                    last_renewal = Some(Instant::now());
                    if !*leading.borrow() {
                        tracing::info!(lease = %config.name, identity = %config.identity, "became leader");
                    }
                    leading.send_replace(true);
                } else if action == LeaseAction::Follow {
                    last_renewal = None;
                    leading.send_replace(false);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, lease = %config.name, "cannot read the leader lease")
            }
        }
        if *leading.borrow() && last_renewal.is_none_or(|t| t.elapsed() >= config.renew_deadline) {
            tracing::warn!(lease = %config.name, "could not renew the leader lease in time; stopping leading");
            leading.send_replace(false);
            last_renewal = None;
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(config.retry_period) => {}
        }
    }
    if leading.send_replace(false) {
        release(&api, &config).await;
    }
}

fn timeout_error() -> kube::Error {
    kube::Error::Service(Box::new(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "lease call timed out",
    )))
}

fn new_lease(config: &LeaseConfig, current: Option<&Lease>) -> Lease {
    let now = MicroTime(Timestamp::now());
    let previous = current.and_then(|l| l.spec.clone()).unwrap_or_default();
    let taking_over = previous.holder_identity.as_deref() != Some(config.identity.as_str());
    Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            // The resourceVersion makes the update fail if anyone changed the lease meanwhile.
            resource_version: current.and_then(|l| l.metadata.resource_version.clone()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(config.lease_duration.as_secs().max(1) as i32),
            acquire_time: if taking_over {
                Some(now.clone())
            } else {
                previous.acquire_time.clone()
            },
            renew_time: Some(now),
            lease_transitions: Some(
                previous.lease_transitions.unwrap_or(0)
                    + i32::from(taking_over && current.is_some()),
            ),
            ..Default::default()
        }),
    }
}

/// Gives the lease up so that a standby does not wait for it to expire.
async fn release(api: &Api<Lease>, config: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => tracing::info!(lease = %config.name, "released the leader lease"),
        Err(e) => {
            tracing::warn!(error = %e, lease = %config.name, "could not release the leader lease")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(who: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(who.into()),
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        let d = Duration::from_secs(15);
        assert_eq!(
            lease_action(None, "a", Duration::ZERO, d),
            LeaseAction::Create
        );
        assert_eq!(
            lease_action(Some(&held_by("a")), "a", Duration::from_secs(99), d),
            LeaseAction::Renew
        );
        assert_eq!(
            lease_action(Some(&held_by("b")), "a", Duration::from_secs(14), d),
            LeaseAction::Follow
        );
        assert_eq!(
            lease_action(Some(&held_by("b")), "a", Duration::from_secs(15), d),
            LeaseAction::TakeOver
        );
        assert_eq!(
            lease_action(Some(&LeaseSpec::default()), "a", Duration::ZERO, d),
            LeaseAction::TakeOver
        );
    }

    #[test]
    fn a_leader_stops_before_a_follower_may_start() {
        let c = LeaseConfig::new("ns".into(), "l".into(), "a".into(), Duration::from_secs(15));
        assert!(c.renew_deadline + c.retry_period < c.lease_duration);
    }
}
