//! Start-up and installation checks of the binary: the CRDs are installed and readable before
//! `run` starts its watches, and `check` (the chart's `helm test`) finds a ready operator.

use kube::api::{Api, ListParams};
use kube::Client;
use std::time::Duration;
use tpp_operator::api::TppRegistration;

/// Checks that the CRDs are installed and readable in every watched namespace, so that a
/// missing CRD or RBAC rule stops the process at start with one clear line.
pub async fn crds_readable(client: &Client, namespaces: &[String]) -> Result<(), kube::Error> {
    if namespaces.is_empty() {
        let api: Api<TppRegistration> = Api::all(client.clone());
        return api.list(&ListParams::default().limit(1)).await.map(|_| ());
    }
    for ns in namespaces {
        let api: Api<TppRegistration> = Api::namespaced(client.clone(), ns);
        api.list(&ListParams::default().limit(1)).await?;
    }
    Ok(())
}

/// Checks that both CRDs exist and are established.
async fn crds_established(client: &Client) -> Result<(), String> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in [
        "tppregistrations.tpp-operator.dev",
        "accountconsents.tpp-operator.dev",
    ] {
        let crd = api
            .get_opt(name)
            .await
            .map_err(|e| format!("cannot read CRD {name}: {e}"))?
            .ok_or_else(|| format!("CRD {name} is not installed"))?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if !established {
            return Err(format!("CRD {name} is not established"));
        }
    }
    Ok(())
}

/// The `check` subcommand: `url` answers 200 and, with `crds`, both CRDs are established.
pub async fn installation(url: &str, crds: bool) -> Result<(), String> {
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    if crds {
        let client = Client::try_default()
            .await
            .map_err(|e| format!("cannot reach Kubernetes: {e}"))?;
        crds_established(&client).await?;
    }
    Ok(())
}
