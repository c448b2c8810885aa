//! What the plugin asks of the API server, with the user's kubeconfig and RBAC: read an object,
//! list its events, set one annotation. API errors become one clear line.

use super::cli::Target;
use super::{Kind, Object};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Client;
use tpp_operator::api::{AccountConsent, TppRegistration};

/// Field manager recorded for the plugin's patches.
const FIELD_MANAGER: &str = "kubectl-tpp";

/// A client from the user's kubeconfig (`KUBECONFIG`, else `~/.kube/config`; in a pod, its
/// ServiceAccount) and the namespace to work in: `namespace` if given, else the current
/// context's.
pub async fn connect(namespace: Option<String>) -> Result<(Client, String), String> {
    let client = Client::try_default()
        .await
        .map_err(|e| format!("cannot load a kubeconfig (KUBECONFIG or ~/.kube/config): {e}"))?;
    let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
    Ok((client, namespace))
}

/// The API server, in one namespace.
pub struct Cluster {
    client: Client,
    namespace: String,
}

/// What one read of one kind found.
enum Lookup {
    Found(Object),
    Missing,
    Forbidden(String),
}

impl Cluster {
    /// Works in `namespace`.
    pub fn new(client: Client, namespace: String) -> Cluster {
        Cluster { client, namespace }
    }

    /// The object `target` names, among `kinds` (in that order when no kind is given).
    pub async fn find(&self, target: &Target, kinds: &[Kind]) -> Result<Object, String> {
        let candidates: Vec<Kind> = match target.kind {
            Some(kind) if kinds.contains(&kind) => vec![kind],
            Some(kind) => {
                return Err(format!(
                    "{}/{} is an {}; this command works on {} only",
                    kind.short(),
                    target.name,
                    kind.name(),
                    plural(kinds)
                ))
            }
            None => kinds.to_vec(),
        };
        let mut forbidden = None;
        for kind in &candidates {
            match self.get(*kind, &target.name).await? {
                Lookup::Found(object) => return Ok(object),
                Lookup::Missing => {}
                // Another kind may still be readable and hold the name.
                Lookup::Forbidden(message) => {
                    forbidden.get_or_insert(message);
                }
            }
        }
        if let Some(message) = forbidden {
            return Err(message);
        }
        let kinds = candidates
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(" or ");
        Err(format!(
            "no {kinds} named {:?} in namespace {:?}",
            target.name, self.namespace
        ))
    }

    async fn get(&self, kind: Kind, name: &str) -> Result<Lookup, String> {
        let result = match kind {
            Kind::Registration => {
                let api: Api<TppRegistration> =
                    Api::namespaced(self.client.clone(), &self.namespace);
                api.get_opt(name)
                    .await
                    .map(|o| o.map(|r| Object::Registration(Box::new(r))))
            }
            Kind::Consent => {
                let api: Api<AccountConsent> =
                    Api::namespaced(self.client.clone(), &self.namespace);
                api.get_opt(name)
                    .await
                    .map(|o| o.map(|c| Object::Consent(Box::new(c))))
            }
        };
        match result {
            Ok(Some(object)) => Ok(Lookup::Found(object)),
            Ok(None) => Ok(Lookup::Missing),
            Err(e) if status_code(&e) == Some(403) => Ok(Lookup::Forbidden(describe(
                &e,
                &format!("cannot read {}/{name}", kind.short()),
            ))),
            Err(e) => Err(describe(
                &e,
                &format!("cannot read {}/{name}", kind.short()),
            )),
        }
    }

    /// The object's events (events.k8s.io/v1 regarding it by kind and name), or why they
    /// cannot be read; status still shows the object then.
    pub async fn events(&self, object: &Object) -> Result<Vec<Event>, String> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let selector = format!(
            "regarding.name={},regarding.kind={}",
            object.name(),
            object.kind().name()
        );
        api.list(&ListParams::default().fields(&selector))
            .await
            .map(|list| list.items)
            .map_err(|e| describe(&e, "cannot list events"))
    }

    /// Sets one annotation with a JSON merge patch of `metadata.annotations` (nothing else).
    pub async fn annotate(&self, object: &Object, key: &str, value: &str) -> Result<(), String> {
        let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        let name = object.name();
        let result = match object.kind() {
            Kind::Registration => {
                let api: Api<TppRegistration> =
                    Api::namespaced(self.client.clone(), &self.namespace);
                api.patch(name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            Kind::Consent => {
                let api: Api<AccountConsent> =
                    Api::namespaced(self.client.clone(), &self.namespace);
                api.patch(name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
        };
        result.map_err(|e| describe(&e, &format!("cannot annotate {}", object.reference())))
    }
}

fn plural(kinds: &[Kind]) -> String {
    kinds
        .iter()
        .map(|k| format!("{}s", k.name()))
        .collect::<Vec<_>>()
        .join(" and ")
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// One line saying what failed and why, in the API server's words where it has them.
fn describe(e: &kube::Error, what: &str) -> String {
    match e {
        kube::Error::Api(status) => {
            let message = status.message.trim();
            match status.code {
                403 => format!("{what}: forbidden: {message}"),
                401 => format!(
                    "{what}: unauthorized: the API server refused your credentials (expired token?): {message}"
                ),
                404 if message.contains("could not find the requested resource") => format!(
                    "{what}: the API server does not serve this kind; are the tpp-operator CRDs installed? ({message})"
                ),
                code => format!("{what}: {message} (HTTP {code})"),
            }
        }
        other => {
            // The causes say what went wrong (connection refused, certificate unknown...).
            let mut text = format!("{what}: cannot reach the API server: {other}");
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text.replace('\n', " ")
        }
    }
}
