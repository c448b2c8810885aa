//! `kubectl tpp`, the kubectl plugin mode of the binary, against a real API server: run as
//! `tpp-operator kubectl`, through a `kubectl-tpp` symlink, and by kubectl itself finding that
//! symlink on PATH. Objects and their status are written by the test (no operator runs).

mod common;

use common::*;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tpp_operator::api::{AccountConsent, TppRegistration};

const BINARY: &str = env!("CARGO_BIN_EXE_tpp-operator");

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `dir/bin` holding `kubectl-tpp`, a symlink to the binary, as the README installs it.
fn plugin_dir(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let link = bin.join("kubectl-tpp");
    if !link.exists() {
        std::os::unix::fs::symlink(BINARY, &link).expect("symlink");
    }
    bin
}

/// `tpp-operator kubectl ARGS` with `kubeconfig`.
fn tpp(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(BINARY)
        .arg("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run tpp-operator kubectl")
}

fn tpp_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let out = tpp(kubeconfig, args);
    assert!(
        out.status.success(),
        "kubectl tpp {args:?} failed ({}): {}{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    stdout(&out)
}

/// A failed run: exit code 1 and exactly one line, starting `error: `, on stderr.
fn tpp_error(kubeconfig: &Path, args: &[&str]) -> String {
    let out = tpp(kubeconfig, args);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "kubectl tpp {args:?}: {}{err}",
        stdout(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

async fn create_registration(client: &Client, ns: &str, name: &str) -> TppRegistration {
    let api: Api<TppRegistration> = Api::namespaced(client.clone(), ns);
    let object = objects::registration(name)
        .signature_secret("sig")
        .meta("annotations", json!({"team": "payments"}));
    let object: TppRegistration = serde_json::from_value(object.json()).expect("registration");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create registration")
}

async fn create_consent(client: &Client, ns: &str, name: &str) -> AccountConsent {
    let api: Api<AccountConsent> = Api::namespaced(client.clone(), ns);
    let object: AccountConsent =
        serde_json::from_value(objects::consent(name, "cway").json()).expect("consent");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create consent")
}

async fn set_status<K>(api: &Api<K>, name: &str, status: serde_json::Value)
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .expect("patch status");
}

/// An event about `object` (its kind and name), `age` seconds ago.
async fn create_event<K>(client: &Client, ns: &str, object: &K, reason: &str, age: i64)
where
    K: Resource<DynamicType = ()>,
{
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(age);
    let regarding = ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: object.meta().name.clone(),
        namespace: Some(ns.to_string()),
        uid: object.meta().uid.clone(),
        ..Default::default()
    };
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some("plugin-test-".into()),
            ..Default::default()
        },
        event_time: Some(MicroTime(at)),
        action: Some("Test".into()),
        reason: Some(reason.into()),
        note: Some(format!("note {reason}")),
        type_: Some("Normal".into()),
        reporting_controller: Some("tpp-operator".into()),
        reporting_instance: Some("plugin-test".into()),
        regarding: Some(regarding),
        ..Default::default()
    };
    api.create(&PostParams::default(), &event)
        .await
        .expect("create event");
}

fn annotations<K: Resource>(object: &K) -> BTreeMap<String, String> {
    object.meta().annotations.clone().unwrap_or_default()
}

/// A value the plugin sets: unix time with nanoseconds.
fn assert_fresh_value(value: &str) {
    let (secs, nanos) = value.split_once('.').unwrap_or_else(|| panic!("{value}"));
    let secs: i64 = secs.parse().unwrap_or_else(|_| panic!("{value}"));
    assert_eq!(nanos.len(), 9, "{value}");
    assert!(nanos.bytes().all(|b| b.is_ascii_digit()), "{value}");
    let now = jiff::Timestamp::now().as_second();
    assert!((now - 60..=now).contains(&secs), "{value} is not now");
}

#[tokio::test]
async fn status_through_kubectl_and_the_symlink() {
    let client = client().await;
    let ns = namespace(&client, "plugin-status").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let user = user_kubeconfig(dir.path(), &ns);
    let bin = plugin_dir(dir.path());

    let registration = create_registration(&client, &ns, "cway").await;
    let registrations: Api<TppRegistration> = Api::namespaced(client.clone(), &ns);
    let now = jiff::Timestamp::now();
    let expires = now + jiff::SignedDuration::from_secs(2 * 3600 + 600);
    let next = now + jiff::SignedDuration::from_secs(3600 + 600);
    set_status(
        &registrations,
        "cway",
        json!({
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "RefreshFailing",
                "message": "Refreshing failed; the token stays valid.",
                "lastTransitionTime": format!("{now:.0}")
            }],
            "clientId": "client-abc",
            "tokenExpiresAt": format!("{expires:.0}"),
            "nextRefreshAt": format!("{next:.0}"),
            "consecutiveFailures": 3,
            "lastFailure": "token endpoint answered 503",
            "signingKeys": [{"kid": "kid-current", "modulus": "AQAB", "exponent": "AQAB"}]
        }),
    )
    .await;
    // Seven events about the registration (ages 10..70 s), one about a consent of the same
    // name and one about another registration: status shows the newest five of the first.
    for i in 1..=7 {
        create_event(&client, &ns, &registration, &format!("Step{i}"), 10 * i).await;
    }
    let same_name = create_consent(&client, &ns, "cway").await;
    create_event(&client, &ns, &same_name, "ConsentEvent", 1).await;
    let other = create_registration(&client, &ns, "other").await;
    create_event(&client, &ns, &other, "OtherEvent", 1).await;

    // `kubectl tpp status cway`: kubectl finds kubectl-tpp on PATH.
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(tool("kubectl"))
        .args(["tpp", "status", "cway"])
        .env("KUBECONFIG", &user)
        .env("PATH", &path)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl tpp status: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("TppRegistration cway (namespace {ns})"),
        "{text}"
    );
    assert_eq!(
        lines[1],
        "Ready:              True, RefreshFailing: Refreshing failed; the token stays valid.",
        "{text}"
    );
    assert_eq!(lines[2], "Client ID:          client-abc", "{text}");
    assert!(
        lines[3].starts_with(&format!("Token expires:      {expires:.0} (in 2h9m)"))
            || lines[3].starts_with(&format!("Token expires:      {expires:.0} (in 2h10m)")),
        "{text}"
    );
    assert!(
        lines[4].starts_with(&format!("Next refresh:       {next:.0} (in 1h9m)"))
            || lines[4].starts_with(&format!("Next refresh:       {next:.0} (in 1h10m)")),
        "{text}"
    );
    assert_eq!(lines[5], "Failures:           3 in a row", "{text}");
    assert_eq!(
        lines[6], "Last failure:       token endpoint answered 503",
        "{text}"
    );
    assert_eq!(
        lines[7], "Signing keys:       kid-current (current)",
        "{text}"
    );
    assert_eq!(lines[8], "Events (last 5, newest first):", "{text}");
    let reasons: Vec<&str> = lines[9..]
        .iter()
        .map(|l| l.split_whitespace().nth(3).unwrap_or_default())
        .collect();
    assert_eq!(
        reasons,
        ["Step1", "Step2", "Step3", "Step4", "Step5"],
        "{text}"
    );
    // Ten seconds old when created: some seconds more now, never minutes.
    let age: Vec<&str> = lines[9].split_whitespace().take(2).collect();
    assert!(
        age[0].ends_with('s')
            && age[0][..age[0].len() - 1]
                .parse::<u32>()
                .is_ok_and(|s| (10..60).contains(&s))
            && age[1] == "ago",
        "{text}"
    );
    assert!(lines[9].ends_with("note Step1"), "{text}");

    // The symlink alone, and the same name as a consent with `consent/`.
    let link = bin.join("kubectl-tpp");
    let out = Command::new(&link)
        .args(["status", "consent/cway"])
        .env("KUBECONFIG", &user)
        .output()
        .expect("run kubectl-tpp");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("AccountConsent cway (namespace {ns})\n")),
        "{text}"
    );
    assert!(text.contains("ConsentEvent"), "{text}");
    assert!(!text.contains("Step1"), "{text}");

    // -n overrides the context's namespace.
    let ns2 = namespace(&client, "plugin-status-other").await;
    create_registration(&client, &ns2, "cway").await;
    let other_api: Api<TppRegistration> = Api::namespaced(client.clone(), &ns2);
    set_status(&other_api, "cway", json!({"clientId": "client-elsewhere"})).await;
    let text = tpp_ok(&user, &["status", "-n", &ns2, "cway"]);
    assert!(
        text.starts_with(&format!("TppRegistration cway (namespace {ns2})\n"))
            && text.contains("Client ID:          client-elsewhere\n"),
        "{text}"
    );
    let text = tpp_ok(&user, &["--namespace", &ns, "status", "cway"]);
    assert!(text.contains("Client ID:          client-abc\n"), "{text}");
}

#[tokio::test]
async fn consent_status_and_url() {
    let client = client().await;
    let ns = namespace(&client, "plugin-consent").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let user = user_kubeconfig(dir.path(), &ns);
    let consents: Api<AccountConsent> = Api::namespaced(client.clone(), &ns);

    create_consent(&client, &ns, "waiting").await;
    let url = "https://bank.example/authorize?client_id=c1&request=eyJ.x.y&state=s";
    set_status(
        &consents,
        "waiting",
        json!({
            "conditions": [{
                "type": "Ready", "status": "False", "reason": "AwaitingAuthorisation",
                "message": "Send the customer to status.authorisationUrl.",
                "lastTransitionTime": format!("{:.0}", jiff::Timestamp::now())
            }],
            "consentId": "urn-consent-1",
            "consentStatus": "AwaitingAuthorisation",
            "authorisationUrl": url
        }),
    )
    .await;
    // Only the URL, for scripts.
    assert_eq!(tpp_ok(&user, &["url", "waiting"]), format!("{url}\n"));
    assert_eq!(
        tpp_ok(&user, &["url", "consent/waiting"]),
        format!("{url}\n")
    );

    let text = tpp_ok(&user, &["status", "waiting"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            format!("AccountConsent waiting (namespace {ns})").as_str(),
            "Ready:              False, AwaitingAuthorisation: Send the customer to status.authorisationUrl.",
            "Registration:       cway",
            "Consent ID:         urn-consent-1",
            "Consent status:     AwaitingAuthorisation",
            "Authorisation URL:  present (kubectl tpp url waiting)",
            "Customer token:     none",
            "Events:             none",
        ],
        "{text}"
    );

    create_consent(&client, &ns, "new").await;
    set_status(
        &consents,
        "new",
        json!({"conditions": [{
            "type": "Ready", "status": "False", "reason": "RegistrationNotReady",
            "message": "Waiting for TppRegistration cway.",
            "lastTransitionTime": format!("{:.0}", jiff::Timestamp::now())
        }]}),
    )
    .await;
    let err = tpp_error(&user, &["url", "new"]);
    assert!(
        err.contains("consent/new has no authorisation URL")
            && err.contains("RegistrationNotReady"),
        "{err}"
    );
    let text = tpp_ok(&user, &["status", "new"]);
    assert!(text.contains("Authorisation URL:  absent\n"), "{text}");
    // url is for consents only.
    create_registration(&client, &ns, "cway").await;
    let err = tpp_error(&user, &["url", "cway"]);
    assert!(err.contains("no AccountConsent named \"cway\""), "{err}");
}

#[tokio::test]
async fn actions_set_exactly_their_annotation_with_a_new_value_each_time() {
    let client = client().await;
    let ns = namespace(&client, "plugin-actions").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let user = user_kubeconfig(dir.path(), &ns);
    let registrations: Api<TppRegistration> = Api::namespaced(client.clone(), &ns);
    let consents: Api<AccountConsent> = Api::namespaced(client.clone(), &ns);
    let before = create_registration(&client, &ns, "cway").await;
    create_consent(&client, &ns, "cway-accounts").await;

    let mut expected = annotations(&before);
    let mut seen = Vec::new();
    for (args, key) in [
        (&["refresh", "cway"][..], "tpp-operator.dev/force-refresh"),
        (&["refresh", "tpp/cway"], "tpp-operator.dev/force-refresh"),
        (
            &["rotate-key", "cway"],
            "tpp-operator.dev/rotate-signing-key",
        ),
        (
            &["rotate-key", "cway"],
            "tpp-operator.dev/rotate-signing-key",
        ),
        (&["retry", "cway"], "tpp-operator.dev/retry-registration"),
    ] {
        let text = tpp_ok(&user, args);
        let after = registrations.get("cway").await.expect("get");
        let value = annotations(&after).get(key).cloned().unwrap_or_default();
        assert_fresh_value(&value);
        assert!(!seen.contains(&value), "{args:?} reused {value}");
        seen.push(value.clone());
        assert!(
            text.starts_with(&format!("tpp/cway annotated: {key}={value}\n")),
            "{text}"
        );
        expected.insert(key.to_string(), value);
        // Exactly that annotation changed; the spec and the user's annotation are untouched.
        assert_eq!(annotations(&after), expected, "{args:?}");
        assert_eq!(after.spec, before.spec);
    }
    let refresh = tpp_ok(&user, &["refresh", "cway"]);
    assert!(refresh.contains("Secret cway-token"), "{refresh}");

    let consent_before = consents.get("cway-accounts").await.expect("get");
    let text = tpp_ok(&user, &["retry", "cway-accounts"]);
    let after = consents.get("cway-accounts").await.expect("get");
    let value = annotations(&after)
        .get("tpp-operator.dev/retry-creation")
        .cloned()
        .unwrap_or_default();
    assert_fresh_value(&value);
    assert_eq!(
        annotations(&after).len(),
        annotations(&consent_before).len() + 1,
        "{:?}",
        annotations(&after)
    );
    assert!(
        text.starts_with(&format!(
            "consent/cway-accounts annotated: tpp-operator.dev/retry-creation={value}\n"
        )),
        "{text}"
    );
    assert_eq!(after.spec, consent_before.spec);

    // Registration-only actions refuse a consent, and set nothing on it.
    let err = tpp_error(&user, &["refresh", "consent/cway-accounts"]);
    assert!(err.contains("TppRegistrations only"), "{err}");
    let err = tpp_error(&user, &["rotate-key", "cway-accounts"]);
    assert!(
        err.contains("no TppRegistration named \"cway-accounts\""),
        "{err}"
    );
    assert_eq!(
        annotations(&consents.get("cway-accounts").await.expect("get")),
        annotations(&after)
    );

    // Once registered, retry would only leave a loaded annotation behind: refused.
    set_status(
        &registrations,
        "cway",
        json!({"registration": "Registered", "clientId": "client-1"}),
    )
    .await;
    let current = annotations(&registrations.get("cway").await.expect("get"));
    let err = tpp_error(&user, &["retry", "cway"]);
    assert!(err.contains("nothing to retry"), "{err}");
    assert_eq!(
        annotations(&registrations.get("cway").await.expect("get")),
        current
    );
}

#[tokio::test]
async fn missing_objects_and_forbidden_users_get_one_clear_line() {
    let client = client().await;
    let ns = namespace(&client, "plugin-errors").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let user = user_kubeconfig(dir.path(), &ns);
    create_registration(&client, &ns, "cway").await;

    for args in [
        &["status", "nope"][..],
        &["refresh", "nope"],
        &["retry", "nope"],
        &["rotate-key", "nope"],
        &["url", "nope"],
    ] {
        let err = tpp_error(&user, args);
        assert!(err.contains("named \"nope\""), "{err}");
        assert!(err.contains(&format!("in namespace \"{ns}\"")), "{err}");
    }
    let err = tpp_error(&user, &["status", "nope"]);
    assert!(
        err.contains("no TppRegistration or AccountConsent named \"nope\""),
        "{err}"
    );
    // A usage error is clap's, exit code 2.
    let out = tpp(&user, &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // A ServiceAccount that may only read the two kinds.
    let admin = kubeconfig_path();
    kubectl_ok(&admin, &["-n", &ns, "create", "serviceaccount", "reader"]);
    kubectl_ok(
        &admin,
        &[
            "-n",
            &ns,
            "create",
            "role",
            "tpp-reader",
            "--verb=get,list",
            "--resource=tppregistrations.tpp-operator.dev,accountconsents.tpp-operator.dev",
        ],
    );
    kubectl_ok(
        &admin,
        &[
            "-n",
            &ns,
            "create",
            "rolebinding",
            "tpp-reader",
            "--role=tpp-reader",
            &format!("--serviceaccount={ns}:reader"),
        ],
    );
    let token = kubectl_ok(
        &admin,
        &["-n", &ns, "create", "token", "reader", "--duration", "1h"],
    );
    let reader = dir.path().join("reader-kubeconfig");
    std::fs::copy(&user, &reader).expect("copy kubeconfig");
    kubectl_ok(
        &reader,
        &[
            "config",
            "set-credentials",
            "reader",
            "--token",
            token.trim(),
        ],
    );
    kubectl_ok(
        &reader,
        &["config", "set-context", "--current", "--user", "reader"],
    );

    // Reading works; the events it may not list are named, not fatal.
    let text = tpp_ok(&reader, &["status", "cway"]);
    assert!(text.starts_with("TppRegistration cway"), "{text}");
    assert!(
        text.contains("Events:             cannot list events: forbidden"),
        "{text}"
    );
    let registrations: Api<TppRegistration> = Api::namespaced(client.clone(), &ns);
    let before = annotations(&registrations.get("cway").await.expect("get"));
    for args in [
        &["refresh", "cway"][..],
        &["rotate-key", "cway"],
        &["retry", "cway"],
    ] {
        let err = tpp_error(&reader, args);
        assert!(
            err.starts_with("error: cannot annotate tpp/cway: forbidden: ")
                && err.contains("cannot patch resource \"tppregistrations\""),
            "{err}"
        );
    }
    assert_eq!(
        annotations(&registrations.get("cway").await.expect("get")),
        before
    );
    // In a namespace where it may read nothing, the refusal says so.
    let err = tpp_error(&reader, &["status", "-n", "default", "cway"]);
    assert!(
        err.contains("forbidden") && err.contains("cannot get resource"),
        "{err}"
    );
}
