//! The ClusterProviders as the reconcilers use them: for each, its URL, which namespaces may
//! use it, and a `Target` ready to be called (or why there is none). Filled by the
//! ClusterProvider reconciler; read by `controller::inputs` on every reconcile, without an API
//! call.

use crate::api::AllowedNamespaces;
use crate::provider::Target;
use kube::core::{Selector, SelectorExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use url::Url;

/// Whether a provider can be called now.
#[derive(Clone, Debug)]
pub enum ProviderState {
    /// Ready: its target.
    Ready(Arc<Target>),
    /// Not (yet) usable: why, for the registrations' messages.
    NotReady(String),
}

/// One ClusterProvider as the reconcilers use it.
#[derive(Clone, Debug)]
pub struct ProviderEntry {
    /// Its name.
    pub name: String,
    /// The generation of the spec this entry was built from.
    pub generation: Option<i64>,
    /// Its `spec.url` (`None` if it cannot be read as one).
    pub url: Option<Url>,
    /// Which namespaces may use it.
    pub allowed: AllowedNamespaces,
    /// Whether it can be called.
    pub state: ProviderState,
}

impl ProviderEntry {
    /// Whether it needs the namespace's labels to decide (a selector is set).
    pub fn needs_labels(&self) -> bool {
        self.allowed.selector.is_some()
    }

    /// Whether `namespace` (with `labels`, when known) may use it. A selector that cannot be
    /// read as one (an unknown operator) allows nothing.
    pub fn allows(&self, namespace: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        if self.allowed.names.iter().any(|n| n == namespace) {
            return true;
        }
        match (&self.allowed.selector, labels) {
            (Some(selector), Some(labels)) => Selector::try_from(selector.clone())
                .map(|s| s.matches(labels))
                .unwrap_or(false),
            _ => false,
        }
    }
}

/// The providers, by name.
#[derive(Default)]
pub struct ProviderDirectory {
    entries: RwLock<HashMap<String, Arc<ProviderEntry>>>,
    synced: AtomicBool,
    /// The names seen since the watch began listing again (`None`: not listing): a provider
    /// deleted while the watch was away sends no Delete, so whatever the list lacks goes.
    relisting: Mutex<Option<HashSet<String>>>,
    /// Namespace labels read for selectors, with when they were read.
    labels: Mutex<HashMap<String, (Instant, Labels)>>,
}

/// A namespace's labels.
type Labels = BTreeMap<String, String>;

/// How long a namespace's labels are trusted.
const LABELS_TTL: Duration = Duration::from_secs(30);
/// Namespaces whose labels are kept at most (beyond, the oldest are dropped).
const MAX_NAMESPACES: usize = 10_000;

/// Two URLs name the same provider when scheme, host, port and path (trailing slash aside) agree.
pub fn same_provider(a: &Url, b: &Url) -> bool {
    let key = |u: &Url| {
        (
            u.scheme().to_string(),
            u.host_str().map(str::to_ascii_lowercase),
            u.port_or_known_default(),
            u.path().trim_end_matches('/').to_string(),
        )
    };
    key(a) == key(b)
}

impl ProviderDirectory {
    /// The provider named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<ProviderEntry>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Every provider, by name.
    pub fn all(&self) -> Vec<Arc<ProviderEntry>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The providers whose URL is `url`.
    pub fn by_url(&self, url: &Url) -> Vec<Arc<ProviderEntry>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|e| e.url.as_ref().is_some_and(|u| same_provider(u, url)))
            .cloned()
            .collect()
    }

    /// Records what is known of a provider.
    pub fn set(&self, entry: ProviderEntry) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.name.clone(), Arc::new(entry));
    }

    /// Records what a reconcile found (after its I/O) only if the provider is still the one it
    /// looked at: deleted meanwhile, or changed (another generation), the finding is stale and
    /// must not bring the provider back or undo the change.
    pub fn set_if_current(&self, entry: ProviderEntry) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries
            .get(&entry.name)
            .is_some_and(|known| known.generation == entry.generation)
        {
            entries.insert(entry.name.clone(), Arc::new(entry));
        }
    }

    /// The watch lists every ClusterProvider again (at start, or after it lost track).
    pub fn relist_started(&self) {
        *self.relisting.lock().unwrap_or_else(|e| e.into_inner()) = Some(HashSet::new());
    }

    /// A provider of that list.
    pub fn relisted(&self, name: &str) {
        if let Some(seen) = self
            .relisting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            seen.insert(name.to_string());
        }
    }

    /// The list is complete: providers it did not name were deleted while the watch was away.
    pub fn relist_done(&self) {
        let seen = self
            .relisting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(seen) = seen {
            self.entries
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|name, _| seen.contains(name));
        }
        self.mark_synced();
    }

    /// Forgets a deleted provider.
    pub fn remove(&self, name: &str) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// Says that every ClusterProvider that exists has been seen once: from now on an unknown
    /// name is a provider that does not exist, not one not read yet.
    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::SeqCst);
    }

    /// Whether every ClusterProvider has been seen once.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// The labels of `namespace` if read less than 30 s ago.
    pub fn cached_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        let labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        labels
            .get(namespace)
            .filter(|(at, _)| at.elapsed() < LABELS_TTL)
            .map(|(_, l)| l.clone())
    }

    /// Keeps the labels just read of `namespace`.
    pub fn cache_labels(&self, namespace: &str, read: BTreeMap<String, String>) {
        let mut labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        if labels.len() >= MAX_NAMESPACES {
            labels.retain(|_, (at, _)| at.elapsed() < LABELS_TTL);
        }
        if labels.len() < MAX_NAMESPACES {
            labels.insert(namespace.to_string(), (Instant::now(), read));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn entry(allowed: AllowedNamespaces) -> ProviderEntry {
        ProviderEntry {
            name: "p".into(),
            generation: Some(1),
            url: Some("https://bank.example".parse().unwrap()),
            allowed,
            state: ProviderState::NotReady("test".into()),
        }
    }

    #[test]
    fn namespaces_are_allowed_by_name_or_by_labels() {
        let by_name = entry(AllowedNamespaces {
            names: vec!["team-a".into()],
            selector: None,
        });
        assert!(by_name.allows("team-a", None));
        assert!(!by_name.allows("team-b", None));
        let labels = BTreeMap::from([("tier".to_string(), "payments".to_string())]);
        let by_label = entry(AllowedNamespaces {
            names: vec![],
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("tier".into(), "payments".into())])),
                ..Default::default()
            }),
        });
        assert!(by_label.needs_labels());
        assert!(by_label.allows("team-b", Some(&labels)));
        assert!(!by_label.allows("team-b", Some(&BTreeMap::new())));
        assert!(!by_label.allows("team-b", None));
        let everyone = entry(AllowedNamespaces {
            names: vec![],
            selector: Some(LabelSelector::default()),
        });
        assert!(everyone.allows("any", Some(&BTreeMap::new())));
        assert!(!entry(AllowedNamespaces::default()).allows("team-a", None));
    }

    #[test]
    fn providers_are_found_by_name_and_url() {
        let directory = ProviderDirectory::default();
        directory.set(entry(AllowedNamespaces::default()));
        assert!(directory.get("p").is_some());
        assert_eq!(
            directory
                .by_url(&"https://BANK.example:443/".parse().unwrap())
                .len(),
            1
        );
        assert!(directory
            .by_url(&"https://bank.example.evil.io".parse().unwrap())
            .is_empty());
        directory.remove("p");
        assert!(directory.get("p").is_none());
        assert!(!directory.is_synced());
        directory.mark_synced();
        assert!(directory.is_synced());
    }

    fn named(name: &str, generation: i64) -> ProviderEntry {
        ProviderEntry {
            name: name.into(),
            generation: Some(generation),
            ..entry(AllowedNamespaces::default())
        }
    }

    #[test]
    fn a_provider_deleted_while_the_watch_was_away_goes_at_the_next_list() {
        let directory = ProviderDirectory::default();
        directory.set(named("kept", 1));
        directory.set(named("deleted", 1));
        directory.relist_started();
        directory.relisted("kept");
        directory.set(named("kept", 1));
        directory.relist_done();
        assert!(directory.get("kept").is_some());
        assert!(directory.get("deleted").is_none());
        assert!(directory.is_synced());
    }

    #[test]
    fn a_stale_finding_neither_revives_nor_overrides_a_provider() {
        let directory = ProviderDirectory::default();
        // Deleted while its discovery ran: the finding does not bring it back.
        directory.set_if_current(named("gone", 1));
        assert!(directory.get("gone").is_none());
        // Changed while its discovery ran: the finding of the old spec is dropped.
        directory.set(named("p", 2));
        let mut old = named("p", 1);
        old.allowed = AllowedNamespaces {
            names: vec!["team-z".into()],
            selector: None,
        };
        directory.set_if_current(old);
        assert!(directory
            .get("p")
            .is_some_and(|e| e.allowed.names.is_empty()));
        let mut current = named("p", 2);
        current.allowed.names = vec!["team-a".into()];
        directory.set_if_current(current);
        assert!(directory
            .get("p")
            .is_some_and(|e| e.allowed.names == vec!["team-a".to_string()]));
    }
}
