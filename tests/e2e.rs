//! End-to-end: what a user does with kubectl against a real control plane, with the operator
//! binary running under its own ServiceAccount and exactly the RBAC rules of the Helm chart.

mod common;

use common::process::OperatorProcess;
use common::*;
use fake_provider::{Config as FakeConfig, FakeProvider};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run command")
}

/// The column names of a kubectl table.
fn table_header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Installs the chart's ServiceAccount and RBAC into `ns` and returns a kubeconfig holding a
/// TokenRequest token of that ServiceAccount.
fn operator_kubeconfig(
    dir: &Path,
    admin: &Path,
    ns: &str,
    release: &str,
    watched: &str,
) -> PathBuf {
    kubectl_ok(admin, &["create", "namespace", ns]);
    let rendered = run(Command::new(tool("helm")).current_dir(REPO).args([
        "template",
        release,
        "charts/tpp-operator",
        "--namespace",
        ns,
        // The namespace-scoped install the README recommends.
        "--set",
        "image.repository=unused",
        "--set",
        &format!("watchNamespaces={{{watched}}}"),
        "--show-only",
        "templates/serviceaccount.yaml",
        "--show-only",
        "templates/rbac.yaml",
    ]));
    assert!(
        rendered.status.success(),
        "helm template: {}",
        text(&rendered)
    );
    let manifest = dir.join("rbac.yaml");
    std::fs::write(&manifest, &rendered.stdout).expect("write rbac");
    kubectl_ok(admin, &["apply", "-f", manifest.to_str().expect("path")]);
    let sa = format!("{release}-tpp-operator");
    let token = kubectl_ok(
        admin,
        &["-n", ns, "create", "token", &sa, "--duration", "1h"],
    );
    let path = dir.join("operator-kubeconfig");
    std::fs::copy(admin, &path).expect("copy kubeconfig");
    kubectl_ok(
        &path,
        &[
            "config",
            "set-credentials",
            "operator",
            "--token",
            token.trim(),
        ],
    );
    kubectl_ok(
        &path,
        &["config", "set-context", "--current", "--user", "operator"],
    );
    let whoami = kubectl_ok(
        &path,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(whoami, format!("system:serviceaccount:{ns}:{sa}"));
    path
}

async fn wait_kubectl(kubeconfig: &Path, args: &[&str], expected: &str, secs: u64) -> bool {
    wait_for(Duration::from_secs(secs), || async {
        let out = kubectl(kubeconfig, args);
        (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == expected)
            .then_some(())
    })
    .await
    .is_some()
}

#[tokio::test]
async fn user_journey_with_kubectl_under_chart_rbac() {
    let client = client().await;
    let ns = namespace(&client, "e2e").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let admin = kubeconfig_path();
    let user = user_kubeconfig(dir.path(), &ns);
    let release = format!("e2e{}", std::process::id());
    let operator_ns = format!("{release}-system");
    let operator_kc = operator_kubeconfig(dir.path(), &admin, &operator_ns, &release, &ns);
    let fake = FakeProvider::start(FakeConfig {
        token_lifetime_secs: 120,
        ..FakeConfig::default()
    })
    .await
    .expect("fake");

    // As the README says: CRDs, then the example.
    kubectl_ok(
        &user,
        &["apply", "--server-side", "--force-conflicts", "-f", "crds/"],
    );
    let mut operator = OperatorProcess::start(
        dir.path(),
        &operator_kc,
        &ns,
        &operator_ns,
        &format!("{release}-tpp-operator"),
        &fake.base_url(),
    );
    kubectl_ok(&user, &["apply", "-f", "examples/tpp-registration.yaml"]);

    let ready = wait_kubectl(
        &user,
        &[
            "get",
            "tpp",
            "cway",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        "True",
        60,
    )
    .await;
    assert!(
        ready,
        "cway not Ready; status: {}\noperator logs:\n{}",
        text(&kubectl(&user, &["get", "tpp", "cway", "-o", "yaml"])),
        operator.logs()
    );

    let registrations = fake.registrations();
    assert_eq!(registrations.len(), 1);
    let client_id = registrations[0].client_id.clone();

    // The printer columns answer the first question.
    let table = kubectl_ok(&user, &["get", "tpp"]);
    let header = table_header(&table);
    assert_eq!(
        header,
        ["NAME", "READY", "CLIENT ID", "TOKEN EXPIRES", "AGE"],
        "{table}"
    );
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with("cway") && row.contains("True") && row.contains(&client_id),
        "{table}"
    );
    let wide = kubectl_ok(&user, &["get", "tpp", "-o", "wide"]);
    assert!(wide.contains("TokenRefreshed"), "{wide}");
    let all = kubectl_ok(&user, &["get", "openbanking"]);
    assert!(
        all.contains("tppregistration.tpp-operator.dev/cway"),
        "{all}"
    );

    // The Secrets apps mount.
    let creds = secret_data(&client, &ns, "cway-credentials")
        .await
        .expect("credentials Secret");
    assert_eq!(creds["client_id"], client_id);
    let token = secret_data(&client, &ns, "cway-token")
        .await
        .expect("token Secret");
    assert_eq!(
        token["authorization"],
        format!("Bearer {}", token["access_token"])
    );
    for key in ["access_token", "token_type", "expires_at", "authorization"] {
        assert!(token.contains_key(key), "token Secret lacks {key}");
    }

    // Events, written by the operator's ServiceAccount.
    let events = kubectl_ok(
        &user,
        &[
            "get",
            "events.events.k8s.io",
            "-o",
            "jsonpath={range .items[*]}{.reason}/{.reportingController}{\"\\n\"}{end}",
        ],
    );
    assert!(
        events.lines().any(|l| l == "Registered/tpp-operator"),
        "{events}"
    );
    assert!(
        events.lines().any(|l| l == "TokenRefreshed/tpp-operator"),
        "{events}"
    );

    // Health and metrics.
    let http = reqwest::Client::new();
    let readyz = http
        .get(format!("{}/readyz", operator.ops))
        .send()
        .await
        .expect("readyz");
    assert_eq!(readyz.status(), 200);
    let metrics = http
        .get(format!("{}/metrics", operator.ops))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let series =
        format!("tpp_operator_token_expiry_timestamp_seconds{{namespace=\"{ns}\",name=\"cway\"}}");
    assert!(
        metrics.contains(&series),
        "{series} missing from:\n{metrics}"
    );
    assert!(
        metrics.contains(
            "tpp_operator_provider_requests_total{endpoint=\"registration\",outcome=\"success\"} 1"
        ),
        "{metrics}"
    );

    // The JWKS the provider fetches, served by the operator: a request object signed with the
    // registration's key verifies against it with an independent RSA implementation.
    // The key is made right after Ready is reported.
    let registrations: kube::Api<tpp_operator::api::TppRegistration> =
        kube::Api::namespaced(client.clone(), &ns);
    let keyed = wait_for(Duration::from_secs(20), || async {
        let r = registrations.get("cway").await.ok()?;
        (!r.status?.signing_keys.is_empty()).then_some(())
    })
    .await;
    assert!(keyed.is_some(), "no signing key published");
    let jwks: serde_json::Value = http
        .get(format!("{}/jwks/{ns}/cway", operator.public))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks JSON");
    let signing = secret_data(&client, &ns, "cway-signing-key")
        .await
        .expect("signing key Secret");
    let key =
        tpp_operator::signing::SigningKey::from_pem(&signing["private_key"], None).expect("key");
    assert_eq!(jwks["keys"][0]["kid"], key.kid());
    assert_eq!(jwks["keys"][0]["use"], "sig");
    assert_eq!(jwks["keys"][0]["alg"], "PS256");
    let claims = tpp_operator::signing::RequestObjectClaims::new(
        &client_id,
        "https://bank",
        "https://tpp/cb",
        "c-1",
        "s",
        "n",
        1,
        600,
    );
    let jwt = key.sign(&claims).expect("sign");
    fake_provider::verify_request_object(&jwks, &jwt)
        .expect("request object verifies against the served JWKS");
    let all: serde_json::Value = http
        .get(format!("{}/jwks", operator.public))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert!(all["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .any(|k| k["kid"] == key.kid()));
    let missing = http
        .get(format!("{}/jwks/{ns}/nope", operator.public))
        .send()
        .await
        .expect("jwks");
    assert_eq!(missing.status(), 404);

    // The consent example, authorised through the operator's callback.
    fake.set_jwks_url(&format!("{}/jwks/{ns}/cway", operator.public));
    kubectl_ok(&user, &["apply", "-f", "examples/account-consent.yaml"]);
    let awaiting = wait_kubectl(
        &user,
        &[
            "get",
            "consent",
            "cway-accounts",
            "-o",
            "jsonpath={.status.consentStatus}",
        ],
        "AwaitingAuthorisation",
        60,
    )
    .await;
    assert!(
        awaiting,
        "consent not created: {}\noperator logs:\n{}",
        text(&kubectl(
            &user,
            &["get", "consent", "cway-accounts", "-o", "yaml"]
        )),
        operator.logs()
    );
    let url = kubectl_ok(
        &user,
        &[
            "get",
            "consent",
            "cway-accounts",
            "-o",
            "jsonpath={.status.authorisationUrl}",
        ],
    );
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let visit = browser.get(url.trim()).send().await.expect("authorise");
    let location = visit
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("provider refused: {}", visit.status()));
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let callback = http
        .get(format!("{}/callback?{query}", operator.public))
        .send()
        .await
        .expect("callback");
    assert_eq!(callback.status(), 200);
    let authorised = wait_kubectl(
        &user,
        &[
            "get",
            "consent",
            "cway-accounts",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}",
        ],
        "Authorised",
        60,
    )
    .await;
    assert!(
        authorised,
        "consent not authorised; operator logs:\n{}",
        operator.logs()
    );
    let table = kubectl_ok(&user, &["get", "consent"]);
    let header = table_header(&table);
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "CONSENT STATUS",
            "CONSENT ID",
            "EXPIRES",
            "AGE"
        ],
        "{table}"
    );
    assert!(table.contains("Authorised"), "{table}");
    let customer = secret_data(&client, &ns, "cway-accounts-token")
        .await
        .expect("customer token Secret");
    assert_eq!(customer["consent_id"], fake.consents()[0].consent_id);
    // Every secret value of the journey, for the leak check at the end; while the objects and
    // their events still exist, none may be in a status or an event.
    let code = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    let secrets: Vec<String> = vec![
        signing["private_key"].clone(),
        creds["certificate"].clone(),
        token["access_token"].clone(),
        customer["access_token"].clone(),
        code,
        "replace-with-your-signature-certificate".to_string(),
    ];
    let visible = [
        kubectl_ok(&user, &["get", "tpp,consent", "-o", "json"]),
        kubectl_ok(&user, &["get", "events.events.k8s.io", "-o", "json"]),
    ]
    .concat();
    for secret in &secrets {
        assert!(
            !visible.contains(secret.as_str()),
            "a secret value reached a status or an event"
        );
    }
    // The fake bank runs on this test's runtime: kubectl must not block it while it waits.
    kubectl_ok(
        &user,
        &["delete", "consent", "cway-accounts", "--wait=false"],
    );
    let consents: kube::Api<tpp_operator::api::AccountConsent> =
        kube::Api::namespaced(client.clone(), &ns);
    let gone = wait_for(Duration::from_secs(30), || async {
        consents
            .get_opt("cway-accounts")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "consent not deleted; operator logs:\n{}",
        operator.logs()
    );
    assert_eq!(fake.consents()[0].status, "Revoked");
    assert!(secret_data(&client, &ns, "cway-accounts-token")
        .await
        .is_none());

    // Deleting as a user would: the finalizer cleans up the Secrets.
    kubectl_ok(
        &user,
        &[
            "delete",
            "-f",
            "examples/tpp-registration.yaml",
            "--timeout=60s",
        ],
    );
    assert!(secret_data(&client, &ns, "cway-credentials")
        .await
        .is_none());
    assert!(secret_data(&client, &ns, "cway-token").await.is_none());
    assert!(secret_data(&client, &ns, "cway-signing-key")
        .await
        .is_none());

    let status = operator.terminate();
    let logs = std::fs::read_to_string(dir.path().join("operator.log")).unwrap_or_default();
    assert!(
        status.success(),
        "tpp-operator exited with {status}; logs:\n{logs}"
    );
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "the chart's RBAC is not enough:\n{logs}"
    );
    // --log-format json: every line is one JSON object with a level and a message.
    let lines: Vec<&str> = logs.lines().collect();
    assert!(lines.len() >= 3, "too few log lines:\n{logs}");
    for line in lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            entry["level"].is_string() && entry["message"].is_string(),
            "{line}"
        );
    }
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret value reached the logs"
        );
    }
}

#[tokio::test]
async fn owner_references_let_the_garbage_collector_remove_secrets() {
    let client = client().await;
    let ns = namespace(&client, "gc").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let user = user_kubeconfig(dir.path(), &ns);
    let fake = FakeProvider::start(FakeConfig::default())
        .await
        .expect("fake");
    let op = Operator::start(&client, &ns, &fake.base_url()).await;
    kubectl_ok(&user, &["apply", "-f", "examples/tpp-registration.yaml"]);
    assert!(
        wait_kubectl(
            &user,
            &[
                "get",
                "tpp",
                "cway",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"
            ],
            "True",
            60
        )
        .await
    );
    // The operator is gone (uninstalled) and its finalizer removed by hand: only the
    // owner references remain to clean up.
    op.stop().await;
    kubectl_ok(
        &user,
        &[
            "patch",
            "tpp",
            "cway",
            "--type=merge",
            "-p",
            "{\"metadata\":{\"finalizers\":null}}",
        ],
    );
    kubectl_ok(&user, &["delete", "tpp", "cway"]);
    let collected = wait_for(Duration::from_secs(60), || async {
        let creds = secret_data(&client, &ns, "cway-credentials").await;
        let token = secret_data(&client, &ns, "cway-token").await;
        (creds.is_none() && token.is_none()).then_some(())
    })
    .await;
    assert!(
        collected.is_some(),
        "garbage collector did not delete the owned Secrets"
    );
    // The user's own Secret (no owner reference) stays.
    assert!(secret_data(&client, &ns, "cway-signature").await.is_some());

    // The namespace controller empties and removes the namespace.
    let admin = kubeconfig_path();
    kubectl_ok(&admin, &["delete", "namespace", &ns, "--wait=false"]);
    let gone = wait_for(Duration::from_secs(60), || async {
        let out = kubectl(&admin, &["get", "namespace", &ns]);
        (!out.status.success()).then_some(())
    })
    .await;
    assert!(gone.is_some(), "namespace {ns} was not removed");
}

#[tokio::test]
async fn kubectl_refuses_invalid_manifests_with_a_clear_message() {
    let client = client().await;
    let ns = namespace(&client, "invalid").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let user = user_kubeconfig(dir.path(), &ns);
    let example = std::fs::read_to_string(Path::new(REPO).join("examples/tpp-registration.yaml"))
        .expect("example");
    let cases = [
        (
            example.replace(
                "https://payments.cway.example",
                "http://payments.cway.example",
            ),
            "callbackUrl must be an https URL",
        ),
        (
            example.replace("countryISO: GB", "countryISO: Great Britain"),
            "countryISO",
        ),
        (
            example.replace("organisation:", "organization:"),
            "organization",
        ),
        (
            example.replace("deletionPolicy: Delete", "deletionPolicy: Keep"),
            "deletionPolicy",
        ),
    ];
    for (i, (manifest, expected)) in cases.iter().enumerate() {
        assert_ne!(manifest, &example, "case {i} did not change the example");
        let file = dir.path().join(format!("bad-{i}.yaml"));
        std::fs::write(&file, manifest).expect("write manifest");
        let out = kubectl(&user, &["apply", "-f", file.to_str().expect("path")]);
        assert!(!out.status.success(), "case {i} was accepted");
        assert!(
            text(&out).contains(expected),
            "case {i}: expected {expected:?} in: {}",
            text(&out)
        );
    }
    let out = kubectl(&user, &["get", "tpp", "-o", "name"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "nothing was created"
    );
}

#[tokio::test]
async fn the_standard_bank_example_is_accepted_as_written() {
    // The example names namespace team-a; here it goes to a namespace of this run, and the
    // API server checks everything else (schemas, CEL rules) without storing anything.
    let client = client().await;
    let ns = namespace(&client, "stdbank").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let example = std::fs::read_to_string(Path::new(REPO).join("examples/standard-bank.yaml"))
        .expect("example");
    let manifest = example
        .replace("namespace: team-a", &format!("namespace: {ns}"))
        .replace("names: [team-a]", &format!("names: [{ns}]"));
    assert_ne!(manifest, example, "the example names its namespace");
    let file = dir.path().join("standard-bank.yaml");
    std::fs::write(&file, &manifest).expect("write manifest");
    let out = kubectl(
        &kubeconfig_path(),
        &[
            "apply",
            "--dry-run=server",
            "-f",
            file.to_str().expect("path"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let applied = text(&out);
    for object in [
        "clusterprovider.tpp-operator.dev/example-bank",
        "secret/cway-bank-credentials",
        "tppregistration.tpp-operator.dev/cway-bank",
        "accountconsent.tpp-operator.dev/cway-bank-accounts",
    ] {
        assert!(applied.contains(object), "{object} not applied: {applied}");
    }
}
