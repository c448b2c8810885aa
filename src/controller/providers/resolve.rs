//! Which provider a TppRegistration uses, and whether it may: the ClusterProvider it names
//! (`spec.providerRef`), else the one it was resolved to before (`status.provider`), else the one
//! whose URL it names (the deprecated `spec.providerUrl`, or the URL it registered with before
//! ClusterProviders existed), else the operator's default; allowed only if the ClusterProvider
//! allows the registration's namespace, and only while it still points where the registration
//! registered (a changed URL never silently gets the credentials).

use super::directory::{ProviderEntry, ProviderState};
use crate::api::TppRegistration;
use crate::controller::Context;
use crate::provider::Target;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use url::Url;

/// Why a registration may not use a provider now.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProviderRefusal {
    /// The ClusterProviders have not been read yet (just after start): look again shortly.
    #[error("the operator has not read the ClusterProviders yet")]
    NotLoaded,
    /// No ClusterProvider of that name.
    #[error("ClusterProvider {0} does not exist")]
    NotFound(String),
    /// No ClusterProvider has the URL the registration names.
    #[error("no ClusterProvider has the URL {0}")]
    NoProviderForUrl(String),
    /// The ClusterProvider does not allow the registration's namespace.
    #[error("ClusterProvider {provider} does not allow namespace {namespace}")]
    NotAllowed {
        /// The provider.
        provider: String,
        /// The namespace.
        namespace: String,
    },
    /// The ClusterProvider points elsewhere than where the registration registered.
    #[error("ClusterProvider {provider} now points to {now}, but this registration's credentials were issued by {registered}")]
    Moved {
        /// The provider.
        provider: String,
        /// Where the registration registered.
        registered: String,
        /// Where the provider points now.
        now: String,
    },
    /// The provider cannot be called now (discovery failed, bad CA bundle...).
    #[error("ClusterProvider {provider} is not ready: {why}")]
    NotReady {
        /// The provider.
        provider: String,
        /// Why.
        why: String,
    },
    /// Reading the namespace's labels failed.
    #[error("cannot read namespace {namespace}: {source}")]
    Namespace {
        /// The namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl ProviderRefusal {
    /// Whether the registration names a provider it may not use (rather than one that cannot be
    /// used now).
    pub(crate) fn is_wrong_choice(&self) -> bool {
        matches!(
            self,
            ProviderRefusal::NotFound(_)
                | ProviderRefusal::NoProviderForUrl(_)
                | ProviderRefusal::NotAllowed { .. }
        )
    }
}

/// The provider a registration uses.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    /// The ClusterProvider's name.
    pub name: String,
    /// Ready to be called.
    pub target: Arc<Target>,
}

/// Resolves the provider of `obj` (see the module's rules).
pub(crate) async fn resolve(
    ctx: &Context,
    obj: &TppRegistration,
) -> Result<Resolved, ProviderRefusal> {
    let directory = &ctx.providers;
    let namespace = obj.namespace().unwrap_or_default();
    let status = obj.status.as_ref();
    let lookup = |name: &str| match directory.get(name) {
        Some(entry) => Ok(entry),
        None if !directory.is_synced() => Err(ProviderRefusal::NotLoaded),
        None => Err(ProviderRefusal::NotFound(name.to_string())),
    };
    let named = obj
        .spec
        .provider_ref
        .as_ref()
        .map(|r| r.name.clone())
        .or_else(|| status.and_then(|s| s.provider.clone()));
    let mut asking = Asking::new(ctx, &namespace);
    let entry = match (named, obj.provider_url()) {
        (Some(name), _) => lookup(&name)?,
        (None, Some(url)) => by_url(ctx, url, &mut asking).await?,
        (None, None) => lookup(&ctx.settings.default_provider)?,
    };
    if !asking.allowed_by(&entry).await? {
        return Err(ProviderRefusal::NotAllowed {
            provider: entry.name.clone(),
            namespace,
        });
    }
    let registered = status
        .and_then(|s| s.provider_url.as_deref())
        .and_then(|u| Url::parse(u).ok());
    if let (Some(registered), Some(now)) = (registered, &entry.url) {
        if !super::same_provider(&registered, now) {
            return Err(ProviderRefusal::Moved {
                provider: entry.name.clone(),
                registered: registered.to_string(),
                now: now.to_string(),
            });
        }
    }
    match &entry.state {
        ProviderState::Ready(target) => Ok(Resolved {
            name: entry.name.clone(),
            target: target.clone(),
        }),
        ProviderState::NotReady(why) => Err(ProviderRefusal::NotReady {
            provider: entry.name.clone(),
            why: why.clone(),
        }),
    }
}

/// The ClusterProvider with URL `url` that allows `namespace` (several may have the URL).
async fn by_url(
    ctx: &Context,
    url: &str,
    asking: &mut Asking<'_>,
) -> Result<Arc<ProviderEntry>, ProviderRefusal> {
    let directory = &ctx.providers;
    let parsed = Url::parse(url).map_err(|_| ProviderRefusal::NoProviderForUrl(url.to_string()))?;
    let candidates = directory.by_url(&parsed);
    if candidates.is_empty() {
        return Err(match directory.is_synced() {
            true => ProviderRefusal::NoProviderForUrl(url.to_string()),
            false => ProviderRefusal::NotLoaded,
        });
    }
    for entry in &candidates {
        if asking.allowed_by(entry).await? {
            return Ok(entry.clone());
        }
    }
    Err(ProviderRefusal::NotAllowed {
        provider: candidates
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        namespace: asking.namespace.to_string(),
    })
}

/// At most this many names in a "may use" list of a message.
const MAX_LISTED: usize = 10;

/// The names of the ClusterProviders `namespace` may use, sorted, for a refusal's message: a
/// tenant learns which names to put in `spec.providerRef` (never more than names: hosts are the
/// platform team's business).
pub(crate) async fn usable_by(ctx: &Context, namespace: &str) -> Vec<String> {
    let mut asking = Asking::new(ctx, namespace);
    let mut names = Vec::new();
    for entry in ctx.providers.all() {
        // Labels that cannot be read allow nothing by selector: the list is a hint.
        if asking.allowed_by(&entry).await.unwrap_or(false) {
            names.push(entry.name.clone());
        }
    }
    names.sort();
    names.truncate(MAX_LISTED);
    names
}

/// A namespace asking to use providers: its labels are read once, and only when a provider
/// selects namespaces by label.
struct Asking<'a> {
    ctx: &'a Context,
    namespace: &'a str,
    labels: Option<BTreeMap<String, String>>,
}

impl<'a> Asking<'a> {
    fn new(ctx: &'a Context, namespace: &'a str) -> Self {
        Asking {
            ctx,
            namespace,
            labels: None,
        }
    }

    /// Whether `entry` allows this namespace.
    async fn allowed_by(&mut self, entry: &ProviderEntry) -> Result<bool, ProviderRefusal> {
        if entry.needs_labels() && self.labels.is_none() {
            self.labels = Some(namespace_labels(self.ctx, self.namespace).await?);
        }
        Ok(entry.allows(self.namespace, self.labels.as_ref()))
    }
}

/// The labels of `namespace`, read at most every 30 s (a selector on namespace labels is
/// checked on every reconcile).
async fn namespace_labels(
    ctx: &Context,
    namespace: &str,
) -> Result<BTreeMap<String, String>, ProviderRefusal> {
    if let Some(labels) = ctx.providers.cached_labels(namespace) {
        return Ok(labels);
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let found =
        api.get_metadata_opt(namespace)
            .await
            .map_err(|source| ProviderRefusal::Namespace {
                namespace: namespace.to_string(),
                source,
            })?;
    let labels = found.and_then(|n| n.metadata.labels).unwrap_or_default();
    ctx.providers.cache_labels(namespace, labels.clone());
    Ok(labels)
}
