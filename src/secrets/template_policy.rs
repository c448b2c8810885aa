//! Which label and annotation keys a tenant may stamp on the operator's Secrets through
//! `spec.secretTemplate`: the platform team's choice. A replicator's annotation (Reflector,
//! kubed, kubernetes-replicator, a Kyverno clone label) would copy the credentials, token and
//! signing-key Secrets into namespaces the tenant can read; keys under `kubernetes.io/` make
//! the cluster itself act on a Secret. By default all of those are refused.

use crate::api::SecretTemplate;

/// Keys refused unless the platform team says otherwise (`*` matches any characters).
pub const DEFAULT_DENIED_KEYS: &[&str] = &[
    "reflector.v1.k8s.emberstack.com/*",
    "replicator.v1.mittwald.de/*",
    "kubed.appscode.com/*",
    "kyverno.io/*",
    "*.kyverno.io/*",
    "kubernetes.io/*",
    "*.kubernetes.io/*",
    "k8s.io/*",
    "*.k8s.io/*",
];

/// Keys no policy can allow: the operator's own.
const ALWAYS_DENIED: &[&str] = &["tpp-operator.dev/*", "*.tpp-operator.dev/*"];

/// The platform team's rule for `spec.secretTemplate` keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplatePolicy {
    /// When not empty, only keys matching one of these may be set.
    pub allowed: Vec<String>,
    /// Keys matching one of these may never be set.
    pub denied: Vec<String>,
}

impl Default for TemplatePolicy {
    fn default() -> Self {
        TemplatePolicy {
            allowed: Vec::new(),
            denied: DEFAULT_DENIED_KEYS.iter().map(|k| k.to_string()).collect(),
        }
    }
}

impl TemplatePolicy {
    /// Whether `key` may be set.
    pub fn allows(&self, key: &str) -> bool {
        let denied = ALWAYS_DENIED
            .iter()
            .copied()
            .chain(self.denied.iter().map(String::as_str))
            .any(|p| glob(p, key));
        let allowed = self.allowed.is_empty() || self.allowed.iter().any(|p| glob(p, key));
        allowed && !denied
    }

    /// The first label or annotation key of `template` that may not be set, with what it is.
    pub fn refused(&self, template: &SecretTemplate) -> Option<(&'static str, String)> {
        let labels = template.labels.keys().map(|k| ("label", k));
        let annotations = template.annotations.keys().map(|k| ("annotation", k));
        labels
            .chain(annotations)
            .find(|(_, key)| !self.allows(key))
            .map(|(what, key)| (what, key.clone()))
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (hand-written: a
/// glob crate for one wildcard over short keys would be more code to trust, not less).
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return pattern == text;
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn globs_match_prefixes_suffixes_and_exact_keys() {
        assert!(glob("kubed.appscode.com/*", "kubed.appscode.com/sync"));
        assert!(glob("*.kubernetes.io/*", "reloader.kubernetes.io/x"));
        assert!(!glob("*.kubernetes.io/*", "kubernetes.io/x"));
        assert!(glob("team", "team") && !glob("team", "teams"));
        assert!(glob("a*b*c", "aXbYc") && !glob("a*b*c", "aXbY"));
        assert!(glob("*", "anything"));
    }

    #[test]
    fn replicators_and_system_keys_are_refused_by_default() {
        let policy = TemplatePolicy::default();
        for key in [
            "reflector.v1.k8s.emberstack.com/reflection-allowed",
            "reflector.v1.k8s.emberstack.com/reflection-auto-namespaces",
            "replicator.v1.mittwald.de/replicate-to",
            "kubed.appscode.com/sync",
            "generate.kyverno.io/clone-source",
            "kubernetes.io/service-account.name",
            "argocd.argoproj.io.kubernetes.io/x",
            "tpp-operator.dev/owner",
        ] {
            assert!(!policy.allows(key), "{key} allowed");
        }
        for key in [
            "team",
            "app.example.com/tier",
            "reloader.stakater.com/match",
        ] {
            assert!(policy.allows(key), "{key} refused");
        }
    }

    #[test]
    fn an_allow_list_narrows_and_the_operator_keys_stay_refused() {
        let policy = TemplatePolicy {
            allowed: vec!["team".into(), "*.example.com/*".into()],
            denied: vec![],
        };
        assert!(policy.allows("team") && policy.allows("a.example.com/b"));
        assert!(!policy.allows("other"));
        let everything = TemplatePolicy {
            allowed: vec!["*".into()],
            denied: vec![],
        };
        assert!(!everything.allows("tpp-operator.dev/registration"));
        let template = SecretTemplate {
            labels: BTreeMap::from([("team".into(), "a".into())]),
            annotations: BTreeMap::from([(
                "reflector.v1.k8s.emberstack.com/reflection-allowed".into(),
                "true".into(),
            )]),
        };
        assert_eq!(
            TemplatePolicy::default().refused(&template),
            Some((
                "annotation",
                "reflector.v1.k8s.emberstack.com/reflection-allowed".to_string()
            ))
        );
    }
}
