//! The ClusterProviders the platform team declared in the operator's configuration (the chart's
//! `providers` value, mounted as a file): applied at start with server-side apply, so that the
//! chart can ship its default provider although Helm cannot create an object of a CRD it
//! installs in the same release. Never deleted by the operator: removing one from the list
//! leaves it for the platform team to delete.

use crate::api::{ClusterProvider, ClusterProviderSpec};
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde::Deserialize;

/// Field manager of the declared providers' writes.
const MANAGER: &str = "tpp-operator-providers";

/// One declared provider: a name and a ClusterProvider spec.
#[derive(Deserialize)]
struct Declared {
    name: String,
    #[serde(flatten)]
    spec: ClusterProviderSpec,
}

/// Parses a list of declared providers (JSON, as the chart writes it); the error names the
/// entry that cannot be read.
fn parse(text: &str) -> Result<Vec<(String, ClusterProviderSpec)>, String> {
    let items: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON list: {e}"))?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value::<Declared>(item)
                .map(|d| (d.name, d.spec))
                .map_err(|e| format!("entry {i}: {e}"))
        })
        .collect()
}

/// Applies the providers declared in `path`; returns their names.
pub async fn apply_declared(client: &Client, path: &str) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let declared = parse(&text).map_err(|e| format!("{path}: {e}"))?;
    let api: Api<ClusterProvider> = Api::all(client.clone());
    let mut names = Vec::new();
    for (name, spec) in declared {
        let object = serde_json::json!({
            "apiVersion": "tpp-operator.dev/v1alpha1",
            "kind": "ClusterProvider",
            "metadata": {"name": name},
            "spec": spec,
        });
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|e| format!("cannot apply ClusterProvider {name}: {e}"))?;
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ProviderProfile;

    #[test]
    fn declared_providers_are_read_as_the_chart_writes_them() {
        let text = r#"[{"name": "leatherback", "profile": "leatherback", "url": "https://api-openbanking.leatherback.co", "allowedNamespaces": {"names": ["team-a"]}}]"#;
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0, "leatherback");
        assert_eq!(parsed[0].1.profile, ProviderProfile::Leatherback);
        assert_eq!(parsed[0].1.allowed_namespaces.names, ["team-a"]);
        let err = parse(r#"[{"name": "x", "profile": "nonsense", "url": "u"}]"#).unwrap_err();
        assert!(err.starts_with("entry 0:"), "{err}");
    }
}
