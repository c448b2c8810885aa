//! The Helm chart: renders what the contract needs, refuses incomplete choices with a clear
//! message, installs into a real API server, and the README documents every value.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use yaml_serde::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const IMAGE: &str = "registry.example.com/tpp-operator";
const CRD_NAMES: [&str; 3] = [
    "clusterproviders.tpp-operator.dev",
    "tppregistrations.tpp-operator.dev",
    "accountconsents.tpp-operator.dev",
];

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

/// `helm template t charts/tpp-operator --namespace tpp-system` with an image and `extra`.
fn template_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "template",
        "t",
        "charts/tpp-operator",
        "--namespace",
        "tpp-system",
        "--set",
        "image.repository=registry.example.com/tpp-operator",
    ];
    args.extend_from_slice(extra);
    args
}

fn render(extra: &[&str]) -> Vec<Value> {
    docs(&ok(helm(&template_args(extra), None)))
}

/// Renders `args` (a full helm command line), expecting a failure; returns stderr.
fn refused(args: &[&str]) -> String {
    let out = helm(args, None);
    assert!(
        !out.status.success(),
        "helm {args:?} rendered:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn docs(yaml: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The value with every number as a float: Helm's YAML round trip writes 95.0 as 95.
fn normalized(v: &Value) -> serde_json::Value {
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

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

fn strings(v: &Value) -> BTreeSet<&str> {
    seq(v).iter().filter_map(Value::as_str).collect()
}

/// The providers the chart declares (its ConfigMap's providers.json), as JSON.
fn providers(rendered: &[Value]) -> Vec<serde_json::Value> {
    let map = of_kind(rendered, "ConfigMap")
        .into_iter()
        .find(|c| {
            c["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-providers"))
        })
        .expect("the providers ConfigMap");
    let text = map["data"]["providers.json"]
        .as_str()
        .expect("providers.json");
    serde_json::from_str(text).expect("a JSON list")
}

fn pod_spec(rendered: &[Value]) -> &Value {
    &of_kind(rendered, "Deployment")[0]["spec"]["template"]["spec"]
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    seq(&container["env"])
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
}

/// Rules of every ClusterRole in `rendered`, with the role's name.
fn cluster_rules(rendered: &[Value]) -> Vec<(&str, &Value)> {
    of_kind(rendered, "ClusterRole")
        .into_iter()
        .flat_map(|r| {
            let name = r["metadata"]["name"].as_str().unwrap_or_default();
            seq(&r["rules"]).iter().map(move |rule| (name, rule))
        })
        .collect()
}

#[test]
fn default_render_is_hardened_and_carries_the_crds() {
    let rendered = render(&["--set", "watchNamespaces={team-a}"]);
    let crds = of_kind(&rendered, "CustomResourceDefinition");
    let generated = docs(&tpp_operator::api::crds_yaml().expect("crds"));
    assert_eq!(crds.len(), generated.len());
    for crd in &crds {
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
    let names: BTreeSet<&str> = crds
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(CRD_NAMES),
        "the names `check --crds` reads"
    );
    let pod = pod_spec(&rendered);
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(pod["securityContext"]["runAsUser"].as_u64(), Some(65532));
    assert_eq!(pod["securityContext"]["runAsGroup"].as_u64(), Some(65532));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"].as_str(),
        Some(format!("{IMAGE}:0.1.0").as_str()),
        "tag defaults to appVersion"
    );
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    assert_eq!(
        strings(&container["securityContext"]["capabilities"]["drop"]),
        BTreeSet::from(["ALL"])
    );
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(
        seq(&container["args"]).len(),
        1,
        "only `run` without extraArgs"
    );
    // Two listeners: the internet-facing one and the one for probes and metrics.
    let ports: Vec<(&str, u64)> = seq(&container["ports"])
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default(),
                p["containerPort"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(ports, vec![("public", 8080), ("metrics", 9090)]);
    assert_eq!(
        env(container, "TPP_PUBLIC_ADDR").expect("public addr")["value"].as_str(),
        Some("0.0.0.0:8080")
    );
    assert_eq!(
        env(container, "TPP_METRICS_ADDR").expect("metrics addr")["value"].as_str(),
        Some("0.0.0.0:9090")
    );
    assert!(
        env(container, "TPP_HTTP_ADDR").is_none(),
        "replaced by the two above"
    );
    // The default provider, applied by the operator from the chart's `providers`.
    assert_eq!(
        env(container, "TPP_DEFAULT_PROVIDER").expect("default provider")["value"].as_str(),
        Some("leatherback")
    );
    assert_eq!(
        env(container, "TPP_PROVIDERS_FILE").expect("providers file")["value"].as_str(),
        Some("/etc/tpp-operator/providers/providers.json")
    );
    let declared = providers(&rendered);
    assert_eq!(declared.len(), 1);
    assert_eq!(declared[0]["name"], "leatherback");
    assert_eq!(declared[0]["url"], "https://api-openbanking.leatherback.co");
    assert_eq!(
        env(container, "TPP_ALLOWED_RETURN_URLS").expect("return URLs")["value"].as_str(),
        Some(""),
        "no return URL is allowed by default"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            container[probe]["httpGet"]["port"].as_str(),
            Some("metrics"),
            "{probe}"
        );
    }
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    let service = of_kind(&rendered, "Service")[0];
    let service_ports: Vec<(&str, u64, &str)> = seq(&service["spec"]["ports"])
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default(),
                p["port"].as_u64().unwrap_or_default(),
                p["targetPort"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        service_ports,
        vec![("public", 8080, "public"), ("metrics", 9090, "metrics")]
    );
    assert_eq!(of_kind(&rendered, "PodDisruptionBudget").len(), 1);
    assert_eq!(of_kind(&rendered, "ServiceAccount").len(), 1);
    assert!(
        of_kind(&rendered, "PrometheusRule").is_empty(),
        "off by default"
    );
    assert!(
        of_kind(&rendered, "ServiceMonitor").is_empty(),
        "off by default"
    );
    assert!(of_kind(&rendered, "Ingress").is_empty(), "off by default");
    // Events need create and patch.
    let role = named(&rendered, "Role", "t-tpp-operator");
    let events = seq(&role["rules"])
        .iter()
        .find(|r| r["apiGroups"][0].as_str() == Some("events.k8s.io"))
        .expect("events rule");
    assert_eq!(
        strings(&events["verbs"]),
        BTreeSet::from(["create", "patch"])
    );
}

#[test]
fn the_image_must_be_named() {
    let err = refused(&[
        "template",
        "t",
        "charts/tpp-operator",
        "--set",
        "watchNamespaces={team-a}",
    ]);
    assert!(err.contains("image.repository is required"), "{err}");
    assert!(
        err.contains("scripts/image.sh"),
        "says how to get one: {err}"
    );
    // A digest wins over the tag.
    let digest = format!("sha256:{}", "ab".repeat(32));
    let rendered = render(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set",
        "image.tag=v9",
        "--set",
        &format!("image.digest={digest}"),
    ]);
    assert_eq!(
        pod_spec(&rendered)["containers"][0]["image"].as_str(),
        Some(format!("{IMAGE}@{digest}").as_str())
    );
    let tagged = render(&["--set", "watchNamespaces={team-a}", "--set", "image.tag=v9"]);
    assert_eq!(
        pod_spec(&tagged)["containers"][0]["image"].as_str(),
        Some(format!("{IMAGE}:v9").as_str())
    );
    let err = refused(&template_args(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set",
        "image.digest=latest",
    ]));
    assert!(err.contains("digest"), "{err}");
}

#[test]
fn the_scope_is_an_explicit_choice() {
    let err = refused(&template_args(&[]));
    assert!(err.contains("watchNamespaces={"), "{err}");
    assert!(err.contains("clusterWide=true"), "{err}");
    let err = refused(&template_args(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set",
        "clusterWide=true",
    ]));
    assert!(err.contains("not both"), "{err}");
    // clusterWide=true: one ClusterRole with the operator's rules, bound to its ServiceAccount.
    let rendered = render(&["--set", "clusterWide=true"]);
    let role = named(&rendered, "ClusterRole", "tpp-system-t-tpp-operator");
    assert!(seq(&role["rules"])
        .iter()
        .any(|r| strings(&r["resources"]).contains("secrets")));
    let binding = named(&rendered, "ClusterRoleBinding", "tpp-system-t-tpp-operator");
    assert_eq!(
        binding["subjects"][0]["name"].as_str(),
        Some("t-tpp-operator")
    );
    assert_eq!(
        binding["subjects"][0]["namespace"].as_str(),
        Some("tpp-system")
    );
    let container = &pod_spec(&rendered)["containers"][0];
    assert_eq!(
        env(container, "TPP_WATCH_NAMESPACES").expect("env")["value"].as_str(),
        Some(""),
        "all namespaces"
    );
    let roles: BTreeSet<&str> = of_kind(&rendered, "Role")
        .iter()
        .filter_map(|r| r["metadata"]["name"].as_str())
        .collect();
    assert_eq!(roles, BTreeSet::from(["t-tpp-operator-leader-election"]));
}

#[test]
fn a_namespace_list_installs_nothing_cluster_wide() {
    let rendered = render(&[
        "--set",
        "watchNamespaces={team-a,team-b}",
        "--set",
        "crds.install=false",
    ]);
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
    let cluster = cluster_rules(&rendered);
    assert!(!cluster.is_empty(), "the CRD read and the aggregated roles");
    for (role, rule) in &cluster {
        assert!(
            !strings(&rule["resources"]).contains("secrets"),
            "ClusterRole {role} grants Secrets"
        );
        // Of the core resources, only reading namespaces (their labels, for ClusterProviders
        // that select namespaces by label).
        if strings(&rule["apiGroups"]).contains("") {
            assert_eq!(
                strings(&rule["resources"]),
                BTreeSet::from(["namespaces"]),
                "{role}"
            );
            assert_eq!(strings(&rule["verbs"]), BTreeSet::from(["get"]), "{role}");
        }
    }
    // The ClusterRoles bound to the operator: get on the CRDs, by name, and the
    // ClusterProviders (cluster-scoped: the platform team's providers).
    let bound: Vec<&str> = of_kind(&rendered, "ClusterRoleBinding")
        .iter()
        .filter(|b| {
            seq(&b["subjects"])
                .iter()
                .any(|s| s["name"].as_str() == Some("t-tpp-operator"))
        })
        .filter_map(|b| b["roleRef"]["name"].as_str())
        .collect();
    assert_eq!(
        bound,
        vec![
            "tpp-system-t-tpp-operator-providers",
            "tpp-system-t-tpp-operator-crd-check"
        ]
    );
    let providers_role = named(&rendered, "ClusterRole", bound[0]);
    let provider_rules = seq(&providers_role["rules"]);
    assert!(provider_rules.iter().all(|r| {
        let resources = strings(&r["resources"]);
        resources.is_subset(&BTreeSet::from([
            "clusterproviders",
            "clusterproviders/status",
            "namespaces",
        ]))
    }));
    let check = named(&rendered, "ClusterRole", bound[1]);
    let rules = seq(&check["rules"]);
    assert_eq!(rules.len(), 1);
    assert_eq!(
        strings(&rules[0]["resources"]),
        BTreeSet::from(["customresourcedefinitions"])
    );
    assert_eq!(strings(&rules[0]["verbs"]), BTreeSet::from(["get"]));
    assert_eq!(
        strings(&rules[0]["resourceNames"]),
        BTreeSet::from(CRD_NAMES)
    );
    let container = &pod_spec(&rendered)["containers"][0];
    assert_eq!(
        env(container, "TPP_WATCH_NAMESPACES").expect("env")["value"].as_str(),
        Some("team-a,team-b")
    );
    // What tests/e2e.rs renders: the same rules, from rbac.yaml alone.
    let only = docs(&ok(helm(
        &template_args(&[
            "--set",
            "watchNamespaces={team-a}",
            "--show-only",
            "templates/rbac.yaml",
        ]),
        None,
    )));
    assert_eq!(of_kind(&only, "Role").len(), 2);
    assert_eq!(
        of_kind(&only, "ClusterRole").len(),
        2,
        "the ClusterProviders and the CRD read"
    );
}

#[test]
fn the_lease_rules_name_the_lease() {
    let rendered = render(&["--set", "watchNamespaces={team-a}"]);
    let role = named(&rendered, "Role", "t-tpp-operator-leader-election");
    assert_eq!(role["metadata"]["namespace"].as_str(), Some("tpp-system"));
    let lease = env(&pod_spec(&rendered)["containers"][0], "TPP_LEASE_NAME").expect("lease name")
        ["value"]
        .as_str()
        .expect("value");
    let mut verbs = BTreeSet::new();
    for rule in seq(&role["rules"]) {
        assert_eq!(strings(&rule["resources"]), BTreeSet::from(["leases"]));
        let rule_verbs = strings(&rule["verbs"]);
        if rule_verbs == BTreeSet::from(["create"]) {
            // RBAC cannot restrict create by name.
            assert!(rule["resourceNames"].is_null());
        } else {
            assert_eq!(
                strings(&rule["resourceNames"]),
                BTreeSet::from([lease]),
                "{rule_verbs:?} not limited to the operator's Lease"
            );
        }
        verbs.extend(rule_verbs);
    }
    assert_eq!(verbs, BTreeSet::from(["create", "get", "update"]));
    let binding = named(&rendered, "RoleBinding", "t-tpp-operator-leader-election");
    assert_eq!(
        binding["subjects"][0]["name"].as_str(),
        Some("t-tpp-operator")
    );
}

#[test]
fn replicas_spread_across_nodes_and_zones_by_default() {
    let rendered = render(&["--set", "watchNamespaces={team-a}"]);
    let deployment = of_kind(&rendered, "Deployment")[0];
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let constraints = seq(&deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]);
    let keys: BTreeSet<&str> = constraints
        .iter()
        .filter_map(|c| c["topologyKey"].as_str())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["kubernetes.io/hostname", "topology.kubernetes.io/zone"])
    );
    for c in constraints {
        assert_eq!(c["whenUnsatisfiable"].as_str(), Some("ScheduleAnyway"));
        assert_eq!(&c["labelSelector"]["matchLabels"], selector);
    }
    // An explicit list replaces the default; its own labelSelector is kept.
    let custom = render(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set-json",
        r#"topologySpreadConstraints=[{"maxSkew":2,"topologyKey":"zone","whenUnsatisfiable":"DoNotSchedule","labelSelector":{"matchLabels":{"x":"y"}}}]"#,
    ]);
    let constraints = seq(&pod_spec(&custom)["topologySpreadConstraints"]);
    assert_eq!(constraints.len(), 1);
    assert_eq!(
        constraints[0]["labelSelector"]["matchLabels"]["x"].as_str(),
        Some("y")
    );
    let none = render(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set-json",
        "topologySpreadConstraints=[]",
    ]);
    assert!(pod_spec(&none)["topologySpreadConstraints"].is_null());
}

#[test]
fn the_network_policy_opens_the_public_port_and_guards_metrics() {
    let rendered = render(&["--set", "watchNamespaces={team-a}"]);
    let policy = of_kind(&rendered, "NetworkPolicy")[0];
    let spec = &policy["spec"];
    assert_eq!(
        &spec["podSelector"]["matchLabels"],
        &of_kind(&rendered, "Deployment")[0]["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(strings(&spec["policyTypes"]), BTreeSet::from(["Ingress"]));
    let rule_for = |port: u64| {
        seq(&spec["ingress"])
            .iter()
            .find(|r| {
                seq(&r["ports"])
                    .iter()
                    .any(|p| p["port"].as_u64() == Some(port))
            })
            .unwrap_or_else(|| panic!("no ingress rule for port {port}"))
    };
    let public = rule_for(8080);
    assert_eq!(seq(&public["ports"]).len(), 1);
    assert!(public["from"].is_null(), "public port open to anyone");
    let metrics = rule_for(9090);
    assert_eq!(seq(&metrics["ports"]).len(), 1);
    let from = seq(&metrics["from"]);
    assert!(
        from.iter().any(
            |p| p["podSelector"].as_mapping().is_some_and(|m| m.is_empty())
                && p["namespaceSelector"].is_null()
        ),
        "the release namespace's pods: {from:?}"
    );
    // The `helm test` pod reaches /readyz whatever metricsFrom says.
    let test_pod = &of_kind(&rendered, "Pod")[0]["metadata"]["labels"];
    assert!(from.iter().any(|p| {
        p["podSelector"]["matchLabels"]
            .as_mapping()
            .is_some_and(|m| m.iter().all(|(k, v)| &test_pod[k] == v) && !m.is_empty())
    }));
    assert!(seq(&spec["ingress"]).len() == 2 && spec["egress"].is_null());

    let custom = render(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set-json",
        r#"networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]"#,
        "--set-json",
        r#"networkPolicy.publicFrom=[{"ipBlock":{"cidr":"10.0.0.0/8"}}]"#,
        "--set-json",
        r#"networkPolicy.egress=[{"to":[{"ipBlock":{"cidr":"0.0.0.0/0"}}]}]"#,
    ]);
    let spec = &of_kind(&custom, "NetworkPolicy")[0]["spec"];
    assert_eq!(
        strings(&spec["policyTypes"]),
        BTreeSet::from(["Ingress", "Egress"])
    );
    assert_eq!(seq(&spec["egress"]).len(), 1);
    assert_eq!(
        spec["ingress"][0]["from"][0]["ipBlock"]["cidr"].as_str(),
        Some("10.0.0.0/8")
    );
    assert_eq!(
        spec["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]
            ["kubernetes.io/metadata.name"]
            .as_str(),
        Some("monitoring")
    );
    let off = render(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set",
        "networkPolicy.enabled=false",
    ]);
    assert!(of_kind(&off, "NetworkPolicy").is_empty());
}

#[test]
fn prometheus_rules_are_valid_promql() {
    // The parser refuses nonsense, so the loop below can fail.
    assert!(promql_parser::parser::parse("max by (namespace (x)").is_err());
    let rendered = render(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.labels.release=kube-prometheus-stack",
        "--set-json",
        r#"prometheusRule.rules=[{"alert":"Extra","expr":"up{job=\"t-tpp-operator\"} == 0"}]"#,
    ]);
    let rule = of_kind(&rendered, "PrometheusRule")[0];
    assert_eq!(
        rule["metadata"]["labels"]["release"].as_str(),
        Some("kube-prometheus-stack")
    );
    let mut alerts = BTreeSet::new();
    for group in seq(&rule["spec"]["groups"]) {
        for r in seq(&group["rules"]) {
            let expr = r["expr"].as_str().expect("expr");
            if let Err(e) = promql_parser::parser::parse(expr) {
                panic!("{:?}: {expr}: {e}", r["alert"]);
            }
            alerts.insert((r["alert"].as_str().expect("alert"), expr));
        }
    }
    let names: BTreeSet<&str> = alerts.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "Extra",
            "TppOperatorAbsent",
            "TppOperatorNoLeader",
            "TppProviderErrors",
            "TppRegistrationNotReady",
            "TppTokenExpiresSoon",
            "TppTokenRefreshFailing",
        ])
    );
    let expr = |name: &str| alerts.iter().find(|(n, _)| *n == name).expect(name).1;
    // "Down" must not depend on a leader having reconciled once.
    assert!(expr("TppOperatorAbsent").starts_with("absent(tpp_operator_build_info{"));
    assert!(expr("TppOperatorNoLeader").contains("max(tpp_operator_leader{"));
    assert!(alerts.iter().all(|(_, e)| !e.contains("reconciles_total")));
}

#[test]
fn every_authenticated_user_may_read_cluster_providers_unless_told_otherwise() {
    let rendered = render(&["--set", "watchNamespaces={team-a}"]);
    let role = named(
        &rendered,
        "ClusterRole",
        "tpp-system-t-tpp-operator-provider-reader",
    );
    let rules = seq(&role["rules"]);
    assert_eq!(rules.len(), 1);
    assert_eq!(
        strings(&rules[0]["resources"]),
        BTreeSet::from(["clusterproviders"])
    );
    assert_eq!(
        strings(&rules[0]["verbs"]),
        BTreeSet::from(["get", "list", "watch"])
    );
    let binding = named(
        &rendered,
        "ClusterRoleBinding",
        "tpp-system-t-tpp-operator-provider-reader",
    );
    assert_eq!(
        binding["subjects"][0]["name"].as_str(),
        Some("system:authenticated")
    );
    let off = render(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set-json",
        "providerReaders=[]",
    ]);
    assert!(of_kind(&off, "ClusterRoleBinding")
        .iter()
        .all(|b| !b["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .ends_with("provider-reader")));
}

#[test]
fn aggregated_roles_extend_view_edit_and_admin() {
    let rendered = render(&["--set", "watchNamespaces={team-a}"]);
    for (role, write) in [("view", false), ("edit", true), ("admin", true)] {
        let label = format!("rbac.authorization.k8s.io/aggregate-to-{role}");
        let found: Vec<_> = of_kind(&rendered, "ClusterRole")
            .into_iter()
            .filter(|r| r["metadata"]["labels"][label.as_str()].as_str() == Some("true"))
            .collect();
        assert_eq!(found.len(), 1, "{label}");
        let rules = seq(&found[0]["rules"]);
        assert_eq!(rules.len(), 2);
        // ClusterProviders are the platform team's: every role may read, none may change.
        assert_eq!(
            strings(&rules[1]["resources"]),
            BTreeSet::from(["clusterproviders"])
        );
        assert_eq!(
            strings(&rules[1]["verbs"]),
            BTreeSet::from(["get", "list", "watch"])
        );
        assert_eq!(
            strings(&rules[0]["apiGroups"]),
            BTreeSet::from(["tpp-operator.dev"])
        );
        assert_eq!(
            strings(&rules[0]["resources"]),
            BTreeSet::from(["tppregistrations", "accountconsents"])
        );
        let mut verbs = BTreeSet::from(["get", "list", "watch"]);
        if write {
            verbs.extend(["create", "update", "patch", "delete"]);
        }
        assert_eq!(strings(&rules[0]["verbs"]), verbs, "{role}");
    }
    let off = render(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set",
        "aggregatedRoles.enabled=false",
    ]);
    assert!(of_kind(&off, "ClusterRole")
        .iter()
        .all(|r| r["metadata"]["labels"].as_mapping().is_some_and(|m| m
            .keys()
            .all(|k| !k.as_str().unwrap_or_default().contains("aggregate")))));
}

#[test]
fn helm_test_checks_readiness_and_the_crds() {
    let rendered = render(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set",
        "service.metricsPort=9999",
    ]);
    let pods = of_kind(&rendered, "Pod");
    assert_eq!(pods.len(), 1);
    let pod = pods[0];
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["helm.sh/hook"].as_str(), Some("test"));
    assert_eq!(
        annotations["helm.sh/hook-delete-policy"].as_str(),
        Some("before-hook-creation,hook-succeeded")
    );
    let container = &pod["spec"]["containers"][0];
    let args: Vec<&str> = seq(&container["args"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        args,
        vec![
            "check",
            "--url",
            "http://t-tpp-operator.tpp-system.svc:9999/readyz",
            "--crds"
        ]
    );
    let operator = pod_spec(&rendered);
    assert_eq!(container["image"], operator["containers"][0]["image"]);
    assert_eq!(
        container["securityContext"],
        operator["containers"][0]["securityContext"]
    );
    assert_eq!(pod["spec"]["securityContext"], operator["securityContext"]);
    assert_eq!(
        pod["spec"]["serviceAccountName"],
        operator["serviceAccountName"]
    );
    assert_eq!(pod["spec"]["restartPolicy"].as_str(), Some("Never"));
    // Not an operator pod: the Deployment's selector must not adopt it.
    let selector = &of_kind(&rendered, "Deployment")[0]["spec"]["selector"]["matchLabels"];
    let labels = &pod["metadata"]["labels"];
    assert!(selector
        .as_mapping()
        .expect("selector")
        .iter()
        .any(|(k, v)| &labels[k] != v));
}

#[test]
fn every_escape_hatch_renders() {
    let rendered = render(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set",
        "extraArgs={--consent-poll-seconds=30}",
        "--set-json",
        r#"extraEnv=[{"name":"SSL_CERT_FILE","value":"/etc/tpp-ca/ca.crt"}]"#,
        "--set-json",
        r#"envFrom=[{"configMapRef":{"name":"tpp-env"}}]"#,
        "--set-json",
        r#"extraVolumes=[{"name":"ca","configMap":{"name":"private-ca"}}]"#,
        "--set-json",
        r#"extraVolumeMounts=[{"name":"ca","mountPath":"/etc/tpp-ca","readOnly":true}]"#,
        "--set",
        "podLabels.team=payments",
        "--set",
        "podLabels.app\\.kubernetes\\.io/name=hijack",
        "--set",
        "priorityClassName=system-cluster-critical",
        "--set",
        "podSecurityContext.runAsUser=null",
        "--set",
        "podSecurityContext.runAsGroup=null",
        "--set",
        "securityContext.readOnlyRootFilesystem=true",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=existing",
        "--set-json",
        r#"providers=[{"name":"leatherback","profile":"leatherback","url":"https://api-openbanking.leatherback.co"},{"name":"sandbox","profile":"openbanking-uk","url":"https://sandbox.example.com","allowedNamespaces":{"selector":{}}}]"#,
        "--set",
        "returnUrls={https://app.example.com/openbanking,https://pay.example.com}",
        "--set",
        "ingress.enabled=true",
        "--set",
        "ingress.host=tpp.example.com",
        "--set",
        "serviceMonitor.enabled=true",
    ]);
    let pod = pod_spec(&rendered);
    let container = &pod["containers"][0];
    let args: Vec<&str> = seq(&container["args"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args, vec!["run", "--consent-poll-seconds=30"]);
    assert_eq!(
        env(container, "SSL_CERT_FILE").expect("extraEnv")["value"].as_str(),
        Some("/etc/tpp-ca/ca.crt")
    );
    assert!(
        env(container, "TPP_LEASE_NAME").is_some(),
        "extraEnv adds, replaces nothing"
    );
    assert_eq!(
        container["envFrom"][0]["configMapRef"]["name"].as_str(),
        Some("tpp-env")
    );
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"].as_str(),
        Some("private-ca")
    );
    assert_eq!(
        container["volumeMounts"][0]["mountPath"].as_str(),
        Some("/etc/tpp-ca")
    );
    let labels = &of_kind(&rendered, "Deployment")[0]["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["team"].as_str(), Some("payments"));
    assert_eq!(
        labels["app.kubernetes.io/name"].as_str(),
        Some("tpp-operator"),
        "podLabels cannot break the selector"
    );
    assert_eq!(
        pod["priorityClassName"].as_str(),
        Some("system-cluster-critical")
    );
    // OpenShift's restricted SCC picks the user; the rest stays.
    assert!(pod["securityContext"]["runAsUser"].is_null());
    assert!(pod["securityContext"]["runAsGroup"].is_null());
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(pod["serviceAccountName"].as_str(), Some("existing"));
    assert!(of_kind(&rendered, "ServiceAccount").is_empty());
    assert!(of_kind(&rendered, "RoleBinding")
        .iter()
        .all(|b| b["subjects"][0]["name"].as_str() == Some("existing")));
    let declared = providers(&rendered);
    let names: Vec<&str> = declared.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, vec!["leatherback", "sandbox"]);
    // An entry without allowedNamespaces allows the watched namespaces; one with keeps its own.
    assert_eq!(
        declared[0]["allowedNamespaces"],
        serde_json::json!({"names": ["team-a"]})
    );
    assert_eq!(
        declared[1]["allowedNamespaces"],
        serde_json::json!({"selector": {}})
    );
    assert_eq!(
        env(container, "TPP_ALLOWED_RETURN_URLS").expect("return URLs")["value"].as_str(),
        Some("https://app.example.com/openbanking,https://pay.example.com")
    );
    // The Ingress reaches the public port only; the ServiceMonitor scrapes the metrics port.
    let ingress = of_kind(&rendered, "Ingress")[0];
    let paths = seq(&ingress["spec"]["rules"][0]["http"]["paths"]);
    let routed: BTreeSet<(&str, &str)> = paths
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap_or_default(),
                p["backend"]["service"]["port"]["name"]
                    .as_str()
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        routed,
        BTreeSet::from([
            ("/callback", "public"),
            ("/callback.js", "public"),
            ("/jwks", "public")
        ])
    );
    let monitor = of_kind(&rendered, "ServiceMonitor")[0];
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"].as_str(),
        Some("metrics")
    );
    assert_eq!(
        monitor["spec"]["endpoints"][0]["honorLabels"].as_bool(),
        Some(true),
        "the registration's namespace label survives the scrape"
    );

    let err = refused(&template_args(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set",
        "serviceAccount.create=false",
    ]));
    assert!(err.contains("serviceAccount.name"), "{err}");
}

#[test]
fn the_default_provider_must_be_declared() {
    let err = refused(&template_args(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set",
        "defaultProvider=sandbox",
    ]));
    assert!(err.contains("defaultProvider"), "{err}");
    // Providers managed outside the chart: no list, any default name.
    let rendered = render(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set-json",
        "providers=[]",
        "--set",
        "defaultProvider=managed-elsewhere",
    ]);
    assert!(of_kind(&rendered, "ConfigMap").is_empty());
    let container = &pod_spec(&rendered)["containers"][0];
    assert!(env(container, "TPP_PROVIDERS_FILE").is_none());
    // With clusterWide, a provider allows every namespace.
    let wide = render(&["--set", "clusterWide=true"]);
    assert_eq!(
        providers(&wide)[0]["allowedNamespaces"],
        serde_json::json!({"selector": {}})
    );
}

#[test]
fn notes_warn_when_the_callback_is_unreachable() {
    // `helm install --dry-run=client` prints NOTES; it still asks the API server its version.
    let kubeconfig = kubeconfig_path();
    let notes = |extra: &[&str]| {
        let mut args = vec![
            "install",
            "t",
            "charts/tpp-operator",
            "--dry-run=client",
            "--namespace",
            "tpp-system",
            // The harness may have installed the CRDs outside Helm.
            "--set",
            "crds.install=false",
            "--set",
            "image.repository=registry.example.com/tpp-operator",
        ];
        args.extend_from_slice(extra);
        let out = ok(helm(&args, Some(&kubeconfig)));
        out.split_once("NOTES:")
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| panic!("no NOTES in {out}"))
    };
    let default = notes(&["--set", "watchNamespaces={team-a}"]);
    assert!(
        default.contains("WARNING: the callback and the JWKS are not reachable"),
        "{default}"
    );
    assert!(default.contains("only the namespaces team-a"), "{default}");
    assert!(
        default.contains("kubectl -n <namespace> get tpp"),
        "{default}"
    );
    let public = notes(&[
        "--set",
        "clusterWide=true",
        "--set",
        "publicUrl=https://tpp.example.com",
    ]);
    assert!(!public.contains("WARNING"), "{public}");
    assert!(public.contains("https://tpp.example.com/jwks"), "{public}");
    assert!(public.contains("ALL namespaces"), "{public}");
}

#[test]
fn invalid_values_are_refused() {
    for (set, key) in [
        ("logFormat=xml", "logFormat"),
        ("providers[0].url=ftp://x", "/providers/0/url"),
        ("providers[0].profile=ob", "/providers/0/profile"),
        ("image.digest=latest", "/image/digest"),
        ("returnUrls={http://app.example}", "/returnUrls/0"),
        ("unknownValue=1", "unknownValue"),
    ] {
        let err = refused(&template_args(&[
            "--set",
            "watchNamespaces={team-a}",
            "--set",
            set,
        ]));
        assert!(err.contains(key), "{set}: {err}");
    }
}

#[test]
fn readme_documents_every_value() {
    let values: Value = yaml_serde::from_str(
        &std::fs::read_to_string(Path::new(REPO).join("charts/tpp-operator/values.yaml"))
            .expect("values"),
    )
    .expect("YAML");
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).expect("README");
    // Kubernetes objects passed through as a whole are documented as one value.
    const WHOLE: [&str; 3] = ["resources", "podSecurityContext", "securityContext"];
    fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Mapping(m) if !m.is_empty() && !WHOLE.contains(&prefix) => {
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
    assert!(keys.len() > 40, "{keys:?}");
    let missing: Vec<_> = keys
        .iter()
        .filter(|k| !readme.contains(&format!("| `{k}` |")))
        .collect();
    assert!(missing.is_empty(), "README's chart table lacks {missing:?}");
}

/// The Prometheus Operator's kinds, schemaless, so that the API server accepts the chart's
/// ServiceMonitor and PrometheusRule.
fn monitoring_crds() -> String {
    [
        ("ServiceMonitor", "servicemonitors"),
        ("PrometheusRule", "prometheusrules"),
    ]
    .iter()
    .map(|(kind, plural)| {
        format!(
            "---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {{kind: {kind}, plural: {plural}}}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"
        )
    })
    .collect()
}

#[tokio::test]
async fn helm_install_and_uninstall_on_a_real_api_server() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
    use kube::api::{Api, ObjectMeta, PostParams};

    let client = client().await;
    let ns = namespace(&client, "helm").await;
    let team = namespace(&client, "helm-team").await;
    let other = namespace(&client, "helm-wide").await;
    let kubeconfig = kubeconfig_path();
    let dir = tempfile::tempdir().expect("temp dir");
    let crds = dir.path().join("monitoring.yaml");
    std::fs::write(&crds, monitoring_crds()).expect("write");
    let kubectl = Command::new(tool("kubectl"))
        .env("KUBECONFIG", &kubeconfig)
        .args(["apply", "--server-side", "-f"])
        .arg(&crds)
        .output()
        .expect("kubectl");
    ok(kubectl);
    let established = wait_for(std::time::Duration::from_secs(30), || async {
        let out = Command::new(tool("kubectl"))
            .env("KUBECONFIG", &kubeconfig)
            .args(["get", "prometheusrules,servicemonitors", "-A"])
            .output()
            .expect("kubectl");
        out.status.success().then_some(())
    })
    .await;
    assert!(established.is_some(), "monitoring CRDs not served");

    // Namespace-scoped, with every optional part and escape hatch on. The CRDs are already
    // installed by the test harness, outside Helm.
    let release = format!("h{}", std::process::id());
    let name = format!("{release}-tpp-operator");
    let digest = format!("image.digest=sha256:{}", "0f".repeat(32));
    let watch = format!("watchNamespaces={{{team}}}");
    ok(helm(
        &[
            "install",
            &release,
            "charts/tpp-operator",
            "--namespace",
            &ns,
            "--set",
            "crds.install=false",
            "--set",
            "image.repository=registry.example.com/tpp-operator",
            "--set",
            &digest,
            "--set",
            &watch,
            "--set",
            "publicUrl=https://tpp.example.com",
            "--set",
            "extraArgs={--consent-poll-seconds=30}",
            "--set-json",
            r#"extraEnv=[{"name":"SSL_CERT_FILE","value":"/etc/tpp-ca/ca.crt"}]"#,
            "--set-json",
            r#"envFrom=[{"configMapRef":{"name":"tpp-env","optional":true}}]"#,
            "--set-json",
            r#"extraVolumes=[{"name":"ca","configMap":{"name":"private-ca","optional":true}}]"#,
            "--set-json",
            r#"extraVolumeMounts=[{"name":"ca","mountPath":"/etc/tpp-ca","readOnly":true}]"#,
            "--set",
            "podLabels.team=payments",
            "--set",
            "priorityClassName=tpp-critical",
            "--set",
            "podSecurityContext.runAsUser=null",
            "--set",
            "securityContext.privileged=false",
            "--set",
            "service.publicPort=80",
            "--set",
            "service.metricsPort=9091",
            "--set",
            "ingress.enabled=true",
            "--set",
            "ingress.host=tpp.example.com",
            "--set-json",
            r#"networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]"#,
            "--set-json",
            r#"networkPolicy.publicFrom=[{"ipBlock":{"cidr":"10.0.0.0/8"}}]"#,
            "--set-json",
            r#"networkPolicy.egress=[{"to":[{"ipBlock":{"cidr":"0.0.0.0/0"}}]}]"#,
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "prometheusRule.labels.release=prom",
            "--set-json",
            r#"prometheusRule.rules=[{"alert":"Extra","expr":"vector(1)"}]"#,
            "--set-json",
            r#"topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"kubernetes.io/hostname","whenUnsatisfiable":"DoNotSchedule"}]"#,
        ],
        Some(&kubeconfig),
    ));
    let status = ok(helm(
        &["status", &release, "--namespace", &ns],
        Some(&kubeconfig),
    ));
    assert!(status.contains("STATUS: deployed"), "{status}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d = deployments.get(&name).await.expect("Deployment installed");
    let spec = d.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.priority_class_name.as_deref(), Some("tpp-critical"));
    assert_eq!(pod.topology_spread_constraints.map(|c| c.len()), Some(1));
    let roles: Api<Role> = Api::namespaced(client.clone(), &team);
    assert!(roles.get_opt(&name).await.expect("get").is_some());
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let check = format!("{ns}-{name}-crd-check");
    let view = format!("{ns}-{name}-aggregate-to-view");
    assert!(cluster_roles.get_opt(&check).await.expect("get").is_some());
    assert!(cluster_roles.get_opt(&view).await.expect("get").is_some());
    assert!(
        cluster_roles
            .get_opt(&format!("{ns}-{name}"))
            .await
            .expect("get")
            .is_none(),
        "no cluster-wide operator role"
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    assert!(policies.get_opt(&name).await.expect("get").is_some());
    // A tenant with no role of its own may read ClusterProviders (providerReaders), never
    // change them; the API server's RBAC answers.
    let can_i = |verb: &str| {
        let out = Command::new(tool("kubectl"))
            .env("KUBECONFIG", &kubeconfig)
            .args(["auth", "can-i", verb, "clusterproviders.tpp-operator.dev"])
            .args(["--as", "tenant-a", "--as-group", "system:authenticated"])
            .output()
            .expect("kubectl");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can_i("list"), "yes", "a tenant may list the providers");
    assert_eq!(can_i("patch"), "no", "a tenant may not change them");
    assert_eq!(can_i("create"), "no");
    let tests = ok(helm(
        &["get", "hooks", &release, "--namespace", &ns],
        Some(&kubeconfig),
    ));
    assert!(tests.contains("helm.sh/hook: test"), "{tests}");
    ok(helm(
        &["uninstall", &release, "--namespace", &ns],
        Some(&kubeconfig),
    ));
    assert!(
        cluster_roles.get_opt(&check).await.expect("get").is_none(),
        "uninstall removes the ClusterRoles"
    );

    // Cluster-wide, under an existing ServiceAccount, without the optional parts.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &other);
    accounts
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("existing".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("create ServiceAccount");
    ok(helm(
        &[
            "install",
            &release,
            "charts/tpp-operator",
            "--namespace",
            &other,
            "--set",
            "crds.install=false",
            "--set",
            "image.repository=registry.example.com/tpp-operator",
            "--set",
            "image.tag=v1",
            "--set",
            "clusterWide=true",
            "--set",
            "serviceAccount.create=false",
            "--set",
            "serviceAccount.name=existing",
            "--set",
            "aggregatedRoles.enabled=false",
            "--set",
            "networkPolicy.enabled=false",
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "replicaCount=1",
        ],
        Some(&kubeconfig),
    ));
    let wide = format!("{other}-{name}");
    let role = cluster_roles.get_opt(&wide).await.expect("get");
    assert!(role.is_some(), "clusterWide installs a ClusterRole");
    assert!(cluster_roles
        .get_opt(&format!("{other}-{name}-aggregate-to-view"))
        .await
        .expect("get")
        .is_none());
    ok(helm(
        &["uninstall", &release, "--namespace", &other],
        Some(&kubeconfig),
    ));
    assert!(cluster_roles.get_opt(&wide).await.expect("get").is_none());
    assert!(
        accounts.get_opt("existing").await.expect("get").is_some(),
        "an existing ServiceAccount is not the chart's to delete"
    );
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    assert!(crds.get_opt(CRD_NAMES[0]).await.expect("get").is_some());
}
