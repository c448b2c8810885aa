//! Who owns a Secret: the labels, annotation and owner reference the operator writes, and the
//! checks that keep one object from reading or overwriting another's Secrets.

use crate::api::names::owner_label_value;
use crate::api::{SecretTemplate, ANNOTATION_OWNER, LABEL_MANAGED_BY, MANAGED_BY};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use std::collections::BTreeMap;

/// The object that owns a Secret: its label and owner reference come from here.
#[derive(Clone, Debug)]
pub struct Owner {
    /// Label key naming the owner (registration or consent).
    pub label: &'static str,
    /// Owner's name.
    pub name: String,
    /// Owner reference to set (controller = true).
    pub reference: OwnerReference,
    /// The owner's `spec.secretTemplate`: more labels and annotations for its Secrets.
    pub template: SecretTemplate,
}

impl Owner {
    /// Labels every Secret of this owner carries (the owner label is bounded: long names are
    /// shortened with a hash, see `owner_label_value`).
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.template.labels.clone();
        // The operator's own labels win over the template's.
        labels.insert(LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string());
        labels.insert(self.label.to_string(), owner_label_value(&self.name));
        labels
    }

    /// Annotations every Secret of this owner carries: the template's and the owner's full
    /// name.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut annotations = self.template.annotations.clone();
        annotations.insert(ANNOTATION_OWNER.to_string(), self.name.clone());
        annotations
    }

    /// True when `secret` was written by the operator for this owner (labels match, and the
    /// owner annotation where there is one). A Secret retained from a deleted owner of the same
    /// name counts, so re-creating the owner adopts it.
    pub fn owns(&self, secret: &Secret) -> bool {
        let meta = &secret.metadata;
        let labels = meta.labels.as_ref();
        let annotated = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_OWNER));
        labels
            .and_then(|l| l.get(LABEL_MANAGED_BY))
            .map(String::as_str)
            == Some(MANAGED_BY)
            && labels.and_then(|l| l.get(self.label)) == Some(&owner_label_value(&self.name))
            && match annotated {
                Some(full) => *full == self.name,
                // Written before the annotation existed: only short names were possible.
                None => self.name.len() <= crate::api::names::MAX_LABEL_VALUE,
            }
    }

    /// True when `secret` was written by the operator for any owner other than this one, which
    /// no spec may make this owner read or use.
    pub fn owned_by_another(&self, secret: &Secret) -> bool {
        let controlled_elsewhere = secret.metadata.owner_references.iter().flatten().any(|r| {
            r.controller == Some(true)
                && r.api_version.starts_with("tpp-operator.dev/")
                && r.uid != self.reference.uid
        });
        (managed_by_operator(secret) && !self.owns(secret)) || controlled_elsewhere
    }
}

/// True when the operator wrote `secret` (for whichever owner).
pub fn managed_by_operator(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|v| v == MANAGED_BY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::tests::{owner, secret};

    #[test]
    fn ownership_needs_both_labels() {
        let o = owner();
        assert!(o.owns(&secret(
            &[
                (LABEL_MANAGED_BY, MANAGED_BY),
                (crate::api::LABEL_REGISTRATION, "acme")
            ],
            &[]
        )));
        assert!(!o.owns(&secret(
            &[
                (LABEL_MANAGED_BY, MANAGED_BY),
                (crate::api::LABEL_REGISTRATION, "other")
            ],
            &[]
        )));
        assert!(!o.owns(&secret(&[(crate::api::LABEL_REGISTRATION, "acme")], &[])));
        assert!(!o.owns(&secret(&[], &[])));
    }

    #[test]
    fn the_template_adds_labels_but_never_replaces_the_operators() {
        let o = Owner {
            template: SecretTemplate {
                labels: BTreeMap::from([
                    ("team".to_string(), "payments".to_string()),
                    (LABEL_MANAGED_BY.to_string(), "someone-else".to_string()),
                ]),
                annotations: BTreeMap::from([(
                    "reloader.stakater.com/match".to_string(),
                    "true".to_string(),
                )]),
            },
            ..owner()
        };
        let labels = o.labels();
        assert_eq!(labels["team"], "payments");
        assert_eq!(labels[LABEL_MANAGED_BY], MANAGED_BY);
        assert_eq!(labels[crate::api::LABEL_REGISTRATION], "acme");
        assert_eq!(o.annotations()["reloader.stakater.com/match"], "true");
        assert_eq!(o.annotations()[ANNOTATION_OWNER], "acme");
    }

    #[test]
    fn secrets_of_other_owners_are_recognised() {
        let o = owner();
        let ours = secret(
            &[
                (LABEL_MANAGED_BY, MANAGED_BY),
                (crate::api::LABEL_REGISTRATION, "acme"),
            ],
            &[],
        );
        assert!(!o.owned_by_another(&ours));
        let theirs = secret(
            &[
                (LABEL_MANAGED_BY, MANAGED_BY),
                (crate::api::LABEL_REGISTRATION, "victim"),
            ],
            &[],
        );
        assert!(o.owned_by_another(&theirs));
        // A Secret the user made is theirs to bring.
        assert!(!o.owned_by_another(&secret(&[], &[])));
        // Long names: the label is bounded, the annotation tells them apart.
        let long = Owner {
            name: "a".repeat(200),
            ..owner()
        };
        let mut written = secret(&[], &[]);
        written.metadata.labels = Some(long.labels());
        written.metadata.annotations = Some(long.annotations());
        assert!(long.owns(&written));
        let other = Owner {
            name: format!("{}b", "a".repeat(199)),
            ..owner()
        };
        assert!(!other.owns(&written));
    }
}
