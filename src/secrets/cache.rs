//! Contents of the Secrets this operator writes, kept between reconciles, so that a reconcile
//! with nothing to change (or a token refresh) reads no Secret from the API server.
//!
//! Hand-written because kube's reflector store would hold every watched Secret whole, all the
//! time (every private key and token, 10 000s of them at scale). This keeps a bounded number of
//! contents and trusts one only while the operator's label-selected metadata watch reports the
//! same resourceVersion for that Secret; anything else is a miss, answered by a GET.

use super::owner::managed_by_operator;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Secret contents kept at most (a few KiB each): enough for every Secret of a thousand
/// registrations; beyond it entries are dropped and read again when needed.
pub const CAPACITY: usize = 4096;

type Key = (String, String);

/// Bounded Secret contents, valid while the metadata watch agrees on their version.
pub struct SecretCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    /// The resourceVersion the watch last reported per Secret: the truth a content must match.
    current: HashMap<Key, String>,
    contents: HashMap<Key, Arc<Secret>>,
}

impl Default for SecretCache {
    fn default() -> Self {
        SecretCache::with_capacity(CAPACITY)
    }
}

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

impl SecretCache {
    /// A cache holding at most `capacity` contents.
    pub fn with_capacity(capacity: usize) -> Self {
        SecretCache {
            inner: Mutex::new(Inner::default()),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Secret as last read or written, if the watch still reports that very version.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Secret> {
        let inner = self.lock();
        let k = key(namespace, name);
        let secret = inner.contents.get(&k)?;
        let version = secret.metadata.resource_version.as_ref()?;
        (inner.current.get(&k) == Some(version)).then(|| Secret::clone(secret))
    }

    /// Keeps a Secret just read or written. Only the operator's own Secrets are kept: no watch
    /// reports the versions of any other, so they could never be trusted.
    pub fn put(&self, secret: &Secret) {
        let meta = &secret.metadata;
        let (Some(ns), Some(name), Some(_)) = (
            meta.namespace.as_deref(),
            meta.name.as_deref(),
            meta.resource_version.as_deref(),
        ) else {
            return;
        };
        if !managed_by_operator(secret) {
            return;
        }
        let mut inner = self.lock();
        let k = key(ns, name);
        if inner.contents.len() >= self.capacity && !inner.contents.contains_key(&k) {
            // Any entry will do: a dropped one costs one GET the next time it is needed.
            if let Some(victim) = inner.contents.keys().next().cloned() {
                inner.contents.remove(&victim);
            }
        }
        let mut kept = secret.clone();
        kept.metadata.managed_fields = None;
        inner.contents.insert(k, Arc::new(kept));
    }

    /// Drops what is known of a Secret (it was deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut inner = self.lock();
        let k = key(namespace, name);
        inner.contents.remove(&k);
        inner.current.remove(&k);
    }

    /// Takes in one event of the metadata watch of the operator's Secrets in `scope` (a
    /// namespace, or `None` for all of them).
    pub fn observe(&self, scope: Option<&str>, event: &Event<PartialObjectMeta<Secret>>) {
        let mut inner = self.lock();
        match event {
            // A relist: Secrets deleted while the watch was down are never reported, so nothing
            // known of this scope is trusted until the list reports it again.
            Event::Init => {
                let in_scope = |k: &Key| scope.is_none_or(|ns| k.0 == ns);
                inner.current.retain(|k, _| !in_scope(k));
                inner.contents.retain(|k, _| !in_scope(k));
            }
            Event::InitApply(meta) | Event::Apply(meta) => {
                let m = &meta.metadata;
                if let (Some(ns), Some(name), Some(version)) = (
                    m.namespace.as_deref(),
                    m.name.as_deref(),
                    m.resource_version.as_deref(),
                ) {
                    let k = key(ns, name);
                    if inner
                        .current
                        .get(&k)
                        .is_some_and(|known| older(version, known))
                    {
                        // Another watch of the same Secrets lags behind: the version it
                        // reports is not the truth any more.
                        return;
                    }
                    let stale = inner
                        .contents
                        .get(&k)
                        .is_some_and(|s| s.metadata.resource_version.as_deref() != Some(version));
                    if stale {
                        inner.contents.remove(&k);
                    }
                    inner.current.insert(k, version.to_string());
                }
            }
            // Deleted, or no longer labelled as the operator's (the watch reports that as a
            // deletion): nothing more is known.
            Event::Delete(meta) => {
                let m = &meta.metadata;
                if let (Some(ns), Some(name)) = (m.namespace.as_deref(), m.name.as_deref()) {
                    let k = key(ns, name);
                    inner.contents.remove(&k);
                    inner.current.remove(&k);
                }
            }
            Event::InitDone => {}
        }
    }
}

/// Whether `version` comes before `known`. ResourceVersions are opaque, but the API server's
/// are etcd revisions (integers) and compare as such; anything else counts as newer, as before.
fn older(version: &str, known: &str) -> bool {
    match (version.parse::<u64>(), known.parse::<u64>()) {
        (Ok(v), Ok(k)) => v < k,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{LABEL_MANAGED_BY, MANAGED_BY};
    use kube::api::ObjectMeta;

    fn secret(name: &str, version: &str, ours: bool) -> Secret {
        Secret {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                resource_version: Some(version.into()),
                labels: ours
                    .then(|| [(LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn meta(name: &str, version: &str) -> PartialObjectMeta<Secret> {
        PartialObjectMeta {
            types: None,
            metadata: secret(name, version, true).metadata,
            _phantom: Default::default(),
        }
    }

    fn version(s: Option<Secret>) -> Option<String> {
        s.and_then(|s| s.metadata.resource_version)
    }

    #[test]
    fn a_content_is_trusted_only_at_the_version_the_watch_reports() {
        let cache = SecretCache::default();
        cache.put(&secret("a", "1", true));
        // Not yet reported by the watch: a miss.
        assert_eq!(cache.get("ns", "a"), None);
        cache.observe(Some("ns"), &Event::Apply(meta("a", "1")));
        assert_eq!(version(cache.get("ns", "a")).as_deref(), Some("1"));
        // Changed by someone else: the content is dropped.
        cache.observe(Some("ns"), &Event::Apply(meta("a", "2")));
        assert_eq!(cache.get("ns", "a"), None);
        // A read that raced the change and kept the old version is never trusted.
        cache.put(&secret("a", "1", true));
        assert_eq!(cache.get("ns", "a"), None);
        cache.put(&secret("a", "2", true));
        assert_eq!(version(cache.get("ns", "a")).as_deref(), Some("2"));
        cache.observe(Some("ns"), &Event::Delete(meta("a", "2")));
        assert_eq!(cache.get("ns", "a"), None);
    }

    #[test]
    fn secrets_of_others_are_never_kept() {
        let cache = SecretCache::default();
        cache.observe(Some("ns"), &Event::Apply(meta("b", "1")));
        cache.put(&secret("b", "1", false));
        assert_eq!(cache.get("ns", "b"), None);
    }

    #[test]
    fn a_relist_trusts_nothing_until_reported_again() {
        let cache = SecretCache::default();
        cache.observe(Some("ns"), &Event::Apply(meta("a", "1")));
        cache.put(&secret("a", "1", true));
        cache.observe(Some("ns"), &Event::Init);
        assert_eq!(cache.get("ns", "a"), None);
        cache.put(&secret("a", "1", true));
        cache.observe(Some("ns"), &Event::InitApply(meta("a", "1")));
        cache.observe(Some("ns"), &Event::InitDone);
        assert_eq!(version(cache.get("ns", "a")).as_deref(), Some("1"));
        // Another namespace's relist leaves this one alone.
        cache.observe(Some("other"), &Event::Init);
        assert!(cache.get("ns", "a").is_some());
        cache.observe(None, &Event::Init);
        assert_eq!(cache.get("ns", "a"), None);
    }

    #[test]
    fn contents_are_bounded() {
        let cache = SecretCache::with_capacity(2);
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            cache.observe(Some("ns"), &Event::Apply(meta(name, "1")));
            cache.put(&secret(name, "1", true));
            assert!(cache.lock().contents.len() <= 2, "after {i}");
        }
        assert!(cache.get("ns", "c").is_some());
    }

    #[test]
    fn a_lagging_watch_never_moves_the_trusted_version_back() {
        // Two watches see the operator's Secrets; one lags behind the other.
        let cache = SecretCache::default();
        cache.observe(Some("ns"), &Event::Apply(meta("a", "5")));
        // A read that started before the write at version 5 stores its older content late.
        cache.put(&secret("a", "4", true));
        cache.observe(Some("ns"), &Event::Apply(meta("a", "4")));
        assert_eq!(
            cache.get("ns", "a"),
            None,
            "version 4 is not the truth any more"
        );
        cache.put(&secret("a", "5", true));
        assert_eq!(version(cache.get("ns", "a")).as_deref(), Some("5"));
        assert!(older("9", "10") && !older("10", "9") && !older("x", "10"));
    }
}
