//! The Helm chart: renders what the contract needs, installs into a real API server, and the
//! README documents every value.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn helm(args: &[&str], kubeconfig: Option<&Path>) -> Output {
    let mut cmd = Command::new(tool("helm"));
    cmd.current_dir(REPO).args(args);
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    cmd.output().expect("run helm")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn docs(yaml: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|v: &serde_yaml::Value| !v.is_null())
        .collect()
}

/// The value with every number as a float: Helm's YAML round trip writes 95.0 as 95.
fn normalized(v: &serde_yaml::Value) -> serde_json::Value {
    fn walk(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Number(n) => serde_json::json!(n.as_f64()),
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(walk).collect())
            }
            serde_json::Value::Object(o) => {
                serde_json::Value::Object(o.into_iter().map(|(k, v)| (k, walk(v))).collect())
            }
            other => other,
        }
    }
    walk(serde_json::to_value(v).expect("json"))
}

fn of_kind<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> Vec<&'a serde_yaml::Value> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

#[test]
fn default_render_is_hardened_and_carries_the_crds() {
    let rendered = docs(&ok(helm(
        &[
            "template",
            "t",
            "charts/tpp-operator",
            "--namespace",
            "tpp-system",
        ],
        None,
    )));
    let crds = of_kind(&rendered, "CustomResourceDefinition");
    let generated = docs(&tpp_operator::api::crds_yaml().expect("crds"));
    assert_eq!(crds.len(), generated.len());
    for crd in crds {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"].as_str(),
            Some("keep"),
            "CRDs survive helm uninstall"
        );
        let same = generated
            .iter()
            .any(|g| normalized(&g["spec"]) == normalized(&crd["spec"]));
        assert!(
            same,
            "chart CRD {:?} differs from crds/",
            crd["metadata"]["name"]
        );
    }
    let deployment = of_kind(&rendered, "Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0].as_str(),
        Some("ALL")
    );
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        of_kind(&rendered, "ClusterRole").len(),
        1,
        "all namespaces by default"
    );
    assert_eq!(of_kind(&rendered, "PodDisruptionBudget").len(), 1);
    // Events need create and patch.
    let role = of_kind(&rendered, "ClusterRole")[0];
    let events = role["rules"]
        .as_sequence()
        .expect("rules")
        .iter()
        .find(|r| r["apiGroups"][0].as_str() == Some("events.k8s.io"))
        .expect("events rule");
    let verbs: BTreeSet<&str> = events["verbs"]
        .as_sequence()
        .expect("verbs")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(verbs, BTreeSet::from(["create", "patch"]));
}

#[test]
fn a_namespace_list_installs_nothing_cluster_wide() {
    let rendered = docs(&ok(helm(
        &[
            "template",
            "t",
            "charts/tpp-operator",
            "--namespace",
            "tpp-system",
            "--set",
            "watchNamespaces={team-a,team-b}",
            "--set",
            "crds.install=false",
        ],
        None,
    )));
    assert!(of_kind(&rendered, "ClusterRole").is_empty());
    assert!(of_kind(&rendered, "CustomResourceDefinition").is_empty());
    let namespaces: BTreeSet<&str> = of_kind(&rendered, "Role")
        .iter()
        .filter_map(|r| r["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(
        namespaces,
        BTreeSet::from(["team-a", "team-b", "tpp-system"]),
        "a Role per watched namespace plus the lease Role"
    );
    let env = of_kind(&rendered, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
        ["env"]
        .clone();
    let watch = env
        .as_sequence()
        .expect("env")
        .iter()
        .find(|e| e["name"].as_str() == Some("TPP_WATCH_NAMESPACES"))
        .expect("env var");
    assert_eq!(watch["value"].as_str(), Some("team-a,team-b"));
}

#[test]
fn invalid_values_are_refused() {
    let out = helm(
        &[
            "template",
            "t",
            "charts/tpp-operator",
            "--set",
            "logFormat=xml",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("logFormat"));
}

#[test]
fn readme_documents_every_value() {
    let values: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(Path::new(REPO).join("charts/tpp-operator/values.yaml"))
            .expect("values"),
    )
    .expect("YAML");
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).expect("README");
    fn leaves(prefix: &str, v: &serde_yaml::Value, out: &mut Vec<String>) {
        match v {
            serde_yaml::Value::Mapping(m) if !m.is_empty() && prefix != "resources" => {
                for (k, v) in m {
                    let key = k.as_str().unwrap_or_default();
                    let path = if prefix.is_empty() {
                        key.to_string()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    leaves(&path, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut keys = Vec::new();
    leaves("", &values, &mut keys);
    let missing: Vec<_> = keys
        .iter()
        .filter(|k| !readme.contains(&format!("`{k}`")))
        .collect();
    assert!(missing.is_empty(), "README's chart table lacks {missing:?}");
}

#[tokio::test]
async fn helm_install_and_uninstall_on_a_real_api_server() {
    let client = client().await;
    let ns = namespace(&client, "helm").await;
    let kubeconfig = kubeconfig_path();
    let release = format!("h{}", std::process::id());
    // The CRDs are already installed by the test harness, outside Helm.
    ok(helm(
        &[
            "install",
            &release,
            "charts/tpp-operator",
            "--namespace",
            &ns,
            "--set",
            "crds.install=false",
        ],
        Some(&kubeconfig),
    ));
    let status = ok(helm(
        &["status", &release, "--namespace", &ns],
        Some(&kubeconfig),
    ));
    assert!(status.contains("STATUS: deployed"), "{status}");
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client.clone(), &ns);
    let name = format!("{release}-tpp-operator");
    let d = deployments.get(&name).await.expect("Deployment installed");
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(2));
    let roles: kube::Api<k8s_openapi::api::rbac::v1::ClusterRole> = kube::Api::all(client.clone());
    assert!(roles.get_opt(&name).await.expect("get").is_some());
    ok(helm(
        &["uninstall", &release, "--namespace", &ns],
        Some(&kubeconfig),
    ));
    assert!(
        roles.get_opt(&name).await.expect("get").is_none(),
        "uninstall removes the ClusterRole"
    );
    let crds: kube::Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = kube::Api::all(client.clone());
    assert!(crds
        .get_opt("tppregistrations.tpp-operator.dev")
        .await
        .expect("get")
        .is_some());
}
