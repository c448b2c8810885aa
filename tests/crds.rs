//! crds/ must hold exactly what `tpp-operator crds` prints, so installs never drift from the code.

use std::path::Path;

const CRDS_FILES: [&str; 2] = [
    "crds/tpp-operator.crds.yaml",
    // The Helm chart cannot read outside its directory, so it carries a copy.
    "charts/tpp-operator/files/tpp-operator.crds.yaml",
];

#[test]
fn crds_directory_and_chart_match_generated_crds() {
    let generated = tpp_operator::api::crds_yaml().expect("CRDs render");
    for file in CRDS_FILES {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{file} is out of date with the Rust types; regenerate it with:\n  cargo run -- crds > {file}"
        );
    }
}

#[test]
fn crds_carry_the_contract() {
    let yaml = tpp_operator::api::crds_yaml().expect("CRDs render");
    let docs: Vec<yaml_serde::Value> = yaml_serde::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .collect();
    assert_eq!(docs.len(), 3);
    let by_kind = |kind: &str| {
        docs.iter()
            .find(|d| d["spec"]["names"]["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("{kind} CRD present"))
            .clone()
    };
    for (kind, short, columns) in [
        (
            "TppRegistration",
            "tpp",
            vec!["Ready", "Client ID", "Token Expires", "Age"],
        ),
        (
            "AccountConsent",
            "consent",
            vec!["Ready", "Consent Status", "Consent ID", "Expires", "Age"],
        ),
    ] {
        let crd = by_kind(kind);
        assert_eq!(crd["spec"]["group"].as_str(), Some("tpp-operator.dev"));
        assert_eq!(crd["spec"]["scope"].as_str(), Some("Namespaced"));
        assert_eq!(crd["spec"]["names"]["shortNames"][0].as_str(), Some(short));
        assert_eq!(
            crd["spec"]["names"]["categories"][0].as_str(),
            Some("openbanking")
        );
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"].as_str(), Some("v1alpha1"));
        assert!(
            version["subresources"]["status"].is_mapping(),
            "{kind} has the status subresource"
        );
        let names: Vec<&str> = version["additionalPrinterColumns"]
            .as_sequence()
            .expect("printer columns")
            .iter()
            .filter(|c| c["priority"].as_i64().unwrap_or(0) == 0)
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, columns, "{kind} default printer columns");
    }
}

#[test]
fn schemas_use_only_formats_the_api_server_knows_and_conditions_merge_by_type() {
    let yaml = tpp_operator::api::crds_yaml().expect("CRDs render");
    let docs: Vec<yaml_serde::Value> = yaml_serde::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .collect();
    // What kube-apiserver validates without "unrecognized format" warnings.
    let known = [
        "int32",
        "int64",
        "float",
        "double",
        "byte",
        "date",
        "date-time",
        "password",
    ];
    fn formats<'a>(v: &'a yaml_serde::Value, out: &mut Vec<&'a str>) {
        match v {
            yaml_serde::Value::Mapping(m) => {
                for (k, v) in m {
                    match (k.as_str(), v.as_str()) {
                        (Some("format"), Some(f)) => out.push(f),
                        _ => formats(v, out),
                    }
                }
            }
            yaml_serde::Value::Sequence(s) => s.iter().for_each(|v| formats(v, out)),
            _ => {}
        }
    }
    for crd in &docs {
        let mut found = Vec::new();
        formats(crd, &mut found);
        for f in found {
            assert!(known.contains(&f), "unrecognized format {f:?}");
        }
        let conditions = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
            ["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"].as_str(), Some("map"));
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"][0].as_str(),
            Some("type")
        );
    }
}
