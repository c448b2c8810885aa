//! Counts API-server writes by watching what the operator writes: every change a watch delivers
//! after its initial list is one write (create, update, patch or delete).

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::Client;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tpp_operator::api::{AccountConsent, TppRegistration};

/// Writes seen per kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    /// TppRegistration writes (spec, metadata or status).
    pub registrations: u64,
    /// AccountConsent writes.
    pub consents: u64,
    /// Writes of Secrets labelled as the operator's.
    pub secrets: u64,
    /// Events created or updated.
    pub events: u64,
}

impl Counts {
    /// All writes.
    pub fn total(&self) -> u64 {
        self.registrations + self.consents + self.secrets + self.events
    }
}

/// Watches running until `stop`.
pub struct Counter {
    counts: [Arc<AtomicU64>; 4],
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Counter {
    /// Starts the watches and returns once each has listed what exists.
    pub async fn start(client: &Client, namespace: &str) -> Result<Counter, String> {
        let counts: [Arc<AtomicU64>; 4] = Default::default();
        let mut tasks = Vec::new();
        let mut synced = Vec::new();
        let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=tpp-operator");
        macro_rules! watch {
            ($kind:ty, $i:expr, $config:expr) => {{
                let api: Api<$kind> = Api::namespaced(client.clone(), namespace);
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                synced.push(rx);
                tasks.push(tokio::spawn(count(api, $config, counts[$i].clone(), tx)));
            }};
        }
        watch!(TppRegistration, 0, watcher::Config::default());
        watch!(AccountConsent, 1, watcher::Config::default());
        watch!(Secret, 2, owned);
        watch!(K8sEvent, 3, watcher::Config::default());
        for rx in synced {
            tokio::time::timeout(Duration::from_secs(120), rx)
                .await
                .map_err(|_| "a write-counting watch did not list in 120 s".to_string())?
                .map_err(|_| "a write-counting watch failed".to_string())?;
        }
        Ok(Counter { counts, tasks })
    }

    /// Stops the watches and returns the counts.
    pub fn stop(self) -> Counts {
        for t in &self.tasks {
            t.abort();
        }
        let get = |i: usize| self.counts[i].load(Ordering::Relaxed);
        Counts {
            registrations: get(0),
            consents: get(1),
            secrets: get(2),
            events: get(3),
        }
    }
}

async fn count<K>(
    api: Api<K>,
    config: watcher::Config,
    counter: Arc<AtomicU64>,
    synced: tokio::sync::oneshot::Sender<()>,
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let mut synced = Some(synced);
    let mut stream = watcher::watcher(api, config).boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::InitDone) => {
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Apply(_) | Event::Delete(_)) => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            // A relist would re-deliver everything; the watch is short enough not to need one.
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
