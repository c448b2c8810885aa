//! Reading, writing and adopting the Secrets the operator owns, with server-side apply.

pub mod cache;
mod handoff;
mod owner;
mod template_policy;

pub use cache::SecretCache;
pub use handoff::{handoff_secret, is_handoff};
pub use owner::{managed_by_operator, Owner};
pub use template_policy::{TemplatePolicy, DEFAULT_DENIED_KEYS};

use crate::signing::{KeyCache, KeySource, SigningKey};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::Client;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "tpp-operator";

/// Errors of Secret operations, each naming the Secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The Secret exists and was not written by this operator for this owner.
    #[error("Secret {name} exists and is not managed by tpp-operator for this object; rename it or delete it")]
    NotOwned {
        /// Secret name.
        name: String,
    },
    /// The Secret lacks a key or its value is empty.
    #[error("Secret {name} has no non-empty key {key:?}")]
    MissingKey {
        /// Secret name.
        name: String,
        /// Missing key.
        key: String,
    },
    /// A value is not UTF-8 text.
    #[error("key {key:?} of Secret {name} is not UTF-8 text")]
    NotText {
        /// Secret name.
        name: String,
        /// Key.
        key: String,
    },
    /// The Kubernetes API failed.
    #[error("Kubernetes API error on Secret {name}: {source}")]
    Kube {
        /// Secret name.
        name: String,
        /// Underlying error.
        #[source]
        source: kube::Error,
    },
}

/// The signing key under `key` of a Secret (with `kid` as its key id, if given), parsed once
/// per version of the Secret; the error is a message for the user (never key material).
pub fn signing_key(
    cache: &KeyCache,
    secret: &Secret,
    key: &str,
    kid: Option<String>,
) -> Result<Arc<SigningKey>, String> {
    let pem = text_value(secret, key).map_err(|e| e.to_string())?;
    let meta = &secret.metadata;
    let source = KeySource {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        version: meta.resource_version.clone().unwrap_or_default(),
        key: key.to_string(),
        kid,
    };
    cache.get_or_parse(source, &pem).map_err(|e| {
        format!(
            "key {key:?} of Secret {}: {e}",
            meta.name.as_deref().unwrap_or_default()
        )
    })
}

/// Reads one key of a Secret as trimmed text (a trailing newline from `--from-file` is dropped).
pub fn text_value(secret: &Secret, key: &str) -> Result<String, SecretError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| SecretError::MissingKey {
            name: name.clone(),
            key: key.to_string(),
        })?;
    let text = String::from_utf8(bytes).map_err(|_| SecretError::NotText {
        name: name.clone(),
        key: key.to_string(),
    })?;
    let text = text.trim_end_matches(['\r', '\n']).to_string();
    if text.trim().is_empty() {
        return Err(SecretError::MissingKey {
            name,
            key: key.to_string(),
        });
    }
    Ok(text)
}

/// Secret access in one namespace.
#[derive(Clone)]
pub struct Secrets {
    api: Api<Secret>,
    namespace: String,
    cache: Option<Arc<SecretCache>>,
}

impl Secrets {
    /// Secrets of `namespace`.
    pub fn new(client: Client, namespace: &str) -> Self {
        Secrets {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            cache: None,
        }
    }

    /// The same, reading the operator's own Secrets from `cache` while they are current.
    pub fn cached(mut self, cache: Arc<SecretCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Reads a Secret; `None` when it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<Secret>, SecretError> {
        if let Some(secret) = self
            .cache
            .as_ref()
            .and_then(|c| c.get(&self.namespace, name))
        {
            return Ok(Some(secret));
        }
        let secret = self
            .api
            .get_opt(name)
            .await
            .map_err(|source| SecretError::Kube {
                name: name.to_string(),
                source,
            })?;
        if let (Some(cache), Some(s)) = (&self.cache, &secret) {
            cache.put(s);
        }
        Ok(secret)
    }

    fn forget(&self, name: &str) {
        if let Some(cache) = &self.cache {
            cache.forget(&self.namespace, name);
        }
    }

    /// Writes the Secret with exactly `data`, labelled and owned by `owner`. Refuses when a
    /// Secret of that name exists and is not the owner's, so nobody's data is overwritten.
    /// Returns the written Secret's resourceVersion.
    pub async fn apply(
        &self,
        name: &str,
        owner: &Owner,
        data: BTreeMap<String, String>,
    ) -> Result<String, SecretError> {
        let existing = self.get(name).await?;
        self.apply_over(existing.as_ref(), name, owner, data).await
    }

    /// Like `apply`, for values that exist nowhere else (just issued by the provider, which
    /// will not issue them again): retried a few times (0.4 s doubling) on API-server errors,
    /// never when the Secret belongs to someone else.
    pub async fn apply_issued(
        &self,
        name: &str,
        owner: &Owner,
        data: BTreeMap<String, String>,
    ) -> Result<String, SecretError> {
        use backon::{ExponentialBuilder, Retryable};
        let backoff = ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(400))
            .with_max_times(4);
        (|| self.apply(name, owner, data.clone()))
            .retry(backoff)
            .when(|e| !matches!(e, SecretError::NotOwned { .. }))
            .notify(|e, _| tracing::warn!(secret = name, error = %e, "storing what the provider issued failed; retrying"))
            .await
    }

    /// Like `apply`, with the Secret as the caller has just read it (`None`: it did not exist).
    pub async fn apply_over(
        &self,
        existing: Option<&Secret>,
        name: &str,
        owner: &Owner,
        data: BTreeMap<String, String>,
    ) -> Result<String, SecretError> {
        if existing.is_some_and(|s| !owner.owns(s)) {
            return Err(SecretError::NotOwned {
                name: name.to_string(),
            });
        }
        self.apply_unchecked(name, owner, data, true, existing)
            .await
    }

    /// Writes the Secret; when `checked` is the Secret as read (and found owned), the write
    /// carries its resourceVersion, so that a Secret replaced or changed since the check is
    /// not overwritten (the API server answers 409 and the reconcile is retried).
    async fn apply_unchecked(
        &self,
        name: &str,
        owner: &Owner,
        data: BTreeMap<String, String>,
        with_owner_reference: bool,
        checked: Option<&Secret>,
    ) -> Result<String, SecretError> {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                resource_version: checked.and_then(|s| s.metadata.resource_version.clone()),
                labels: Some(owner.labels()),
                annotations: Some(owner.annotations()),
                owner_references: with_owner_reference.then(|| vec![owner.reference.clone()]),
                ..Default::default()
            },
            type_: Some("Opaque".to_string()),
            data: Some(
                data.into_iter()
                    .map(|(k, v)| (k, ByteString(v.into_bytes())))
                    .collect(),
            ),
            ..Default::default()
        };
        let mut value = serde_json::to_value(&secret).map_err(|e| SecretError::Kube {
            name: name.to_string(),
            source: kube::Error::SerdeError(e),
        })?;
        value["apiVersion"] = "v1".into();
        value["kind"] = "Secret".into();
        self.api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(value),
            )
            .await
            .map(|written| {
                if let Some(cache) = &self.cache {
                    cache.put(&written);
                }
                written.metadata.resource_version.unwrap_or_default()
            })
            .map_err(|source| SecretError::Kube {
                name: name.to_string(),
                source,
            })
    }

    /// Deletes the Secret if the owner owns it; a missing or foreign Secret is left alone.
    pub async fn delete_owned(&self, name: &str, owner: &Owner) -> Result<bool, SecretError> {
        match self.get(name).await? {
            Some(s) if owner.owns(&s) => {
                self.forget(name);
                match self.api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
                    Err(source) => Err(SecretError::Kube {
                        name: name.to_string(),
                        source,
                    }),
                }
            }
            _ => Ok(false),
        }
    }

    /// Deletes exactly the Secret that was read (same uid and resourceVersion): a Secret that
    /// changed or was replaced meanwhile is left alone. A missing Secret is fine.
    pub async fn delete_exact(&self, secret: &Secret) -> Result<(), SecretError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        self.forget(&name);
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: secret.metadata.uid.clone(),
                resource_version: secret.metadata.resource_version.clone(),
            }),
            ..DeleteParams::default()
        };
        match self.api.delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(source) => Err(SecretError::Kube { name, source }),
        }
    }

    /// Writes the owner's current labels and annotations onto an owned Secret (its data and
    /// owner reference as they are), after `spec.secretTemplate` changed. Secrets the owner
    /// does not own (adopted, foreign) are left alone.
    pub async fn refresh_metadata(&self, name: &str, owner: &Owner) -> Result<(), SecretError> {
        match self.get(name).await? {
            Some(s) if owner.owns(&s) => {
                let referenced = s
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == owner.reference.uid);
                let data = data_as_text(s.clone());
                self.apply_unchecked(name, owner, data, referenced, Some(&s))
                    .await
                    .map(|_| ())
            }
            _ => Ok(()),
        }
    }

    /// Keeps an owned Secret beyond its owner's life: re-applies it without the owner
    /// reference so garbage collection leaves it alone.
    pub async fn release(&self, name: &str, owner: &Owner) -> Result<bool, SecretError> {
        match self.get(name).await? {
            Some(s) if owner.owns(&s) => {
                let data = data_as_text(s.clone());
                self.apply_unchecked(name, owner, data, false, Some(&s))
                    .await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// A Secret's data as the text `apply` takes (the operator's Secrets hold text only).
fn data_as_text(secret: Secret) -> BTreeMap<String, String> {
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::SecretTemplate;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    pub(super) fn owner() -> Owner {
        Owner {
            label: crate::api::LABEL_REGISTRATION,
            name: "acme".into(),
            reference: OwnerReference::default(),
            template: SecretTemplate::default(),
        }
    }

    pub(super) fn secret(labels: &[(&str, &str)], data: &[(&str, &[u8])]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("s".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn text_values_are_trimmed_and_checked() {
        let s = secret(
            &[],
            &[("k", b"pass\n"), ("empty", b"\n"), ("bin", &[0xff, 0xfe])],
        );
        assert_eq!(text_value(&s, "k").unwrap(), "pass");
        assert!(matches!(
            text_value(&s, "empty"),
            Err(SecretError::MissingKey { .. })
        ));
        assert!(matches!(
            text_value(&s, "nope"),
            Err(SecretError::MissingKey { .. })
        ));
        assert!(matches!(
            text_value(&s, "bin"),
            Err(SecretError::NotText { .. })
        ));
    }
}
