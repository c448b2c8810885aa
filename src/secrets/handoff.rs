//! The authorisation hand-off Secret (`<consent>-authorisation`): how the callback writes it
//! and what the leader accepts as one.

use super::{Owner, TemplatePolicy};
use crate::api::contract::{handoff as handoff_keys, Handoff};
use crate::api::{AccountConsent, LABEL_CONSENT};
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use kube::Resource;

/// The hand-off Secret the callback creates for `consent`, owned by it and labelled so the
/// leader's Secret watch sees it at once; `None` for a consent without a uid. The consent's
/// `secretTemplate` is stamped on it only if `policy` allows every key (it holds a code).
pub fn handoff_secret(
    consent: &AccountConsent,
    handoff: &Handoff,
    policy: &TemplatePolicy,
) -> Option<Secret> {
    let template = consent
        .spec
        .secret_template
        .clone()
        .filter(|t| policy.refused(t).is_none())
        .unwrap_or_default();
    let owner = Owner {
        label: LABEL_CONSENT,
        name: consent.meta().name.clone()?,
        reference: consent.controller_owner_ref(&())?,
        template,
    };
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(consent.authorisation_secret_name()),
            labels: Some(owner.labels()),
            annotations: Some(owner.annotations()),
            owner_references: Some(vec![owner.reference]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(handoff.data()),
        ..Default::default()
    })
}

/// True for a Secret shaped like a hand-off: a `state` and nothing but hand-off keys.
pub fn is_handoff(secret: &Secret) -> bool {
    let keys: Vec<&String> = secret
        .data
        .iter()
        .flat_map(|d| d.keys())
        .chain(secret.string_data.iter().flat_map(|d| d.keys()))
        .collect();
    let allowed = [
        handoff_keys::CODE,
        handoff_keys::STATE,
        handoff_keys::ID_TOKEN,
        handoff_keys::ERROR,
    ];
    keys.iter().any(|k| *k == handoff_keys::STATE)
        && keys.iter().all(|k| allowed.contains(&k.as_str()))
}
