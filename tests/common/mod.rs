//! Test support: a real Kubernetes API server (tests/cluster), namespaces, and the operator
//! running in-process against the fake provider.
#![allow(dead_code)]

pub mod objects;
pub mod process;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tpp_operator::controller::{Context, Settings};
use tpp_operator::provider::{ProviderClient, ProviderConfig};
use tpp_operator::telemetry::Metrics;

/// A control plane shared by all tests of one test binary.
struct ControlPlane {
    kubeconfig: PathBuf,
    // Kept so the child's stdin stays open: the harness exits when it closes (test binary exit).
    _child: Option<(Child, ChildStdin)>,
}

static CONTROL_PLANE: OnceLock<ControlPlane> = OnceLock::new();
static CRDS: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
static NS_COUNTER: Mutex<u32> = Mutex::new(0);

fn cache_dir() -> PathBuf {
    std::env::var_os("TPP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
                .join(".cache/tpp-operator")
        })
}

/// A pinned tool installed by scripts/install-tools.sh (kubectl, helm).
pub fn tool(name: &str) -> PathBuf {
    let path = cache_dir().join("bin").join(name);
    assert!(
        path.exists(),
        "{} missing: run scripts/install-tools.sh",
        path.display()
    );
    path
}

/// kubectl with a kubeconfig, run from the repository root like a user following the README.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(tool("kubectl"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl")
}

/// kubectl that must succeed; its standard output.
pub fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let out = kubectl(kubeconfig, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of the admin kubeconfig whose current context's namespace is `ns`, as a user's would.
pub fn user_kubeconfig(dir: &Path, ns: &str) -> PathBuf {
    let path = dir.join("user-kubeconfig");
    std::fs::copy(kubeconfig_path(), &path).expect("copy kubeconfig");
    kubectl_ok(
        &path,
        &["config", "set-context", "--current", "--namespace", ns],
    );
    path
}

/// Path of the test-cluster binary built by scripts/build-testcluster.sh.
pub fn testcluster_binary() -> PathBuf {
    std::env::var_os("TPP_TESTCLUSTER")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("bin/tpp-testcluster"))
}

fn control_plane() -> &'static ControlPlane {
    CONTROL_PLANE.get_or_init(|| {
        if let Some(path) = std::env::var_os("TPP_TEST_KUBECONFIG") {
            return ControlPlane { kubeconfig: PathBuf::from(path), _child: None };
        }
        let binary = testcluster_binary();
        assert!(
            binary.exists(),
            "{} not found: run scripts/build-testcluster.sh (or scripts/test.sh) first, or set TPP_TEST_KUBECONFIG",
            binary.display()
        );
        let dir = tempfile::Builder::new().prefix("tpp-testcluster-").tempdir().expect("temp dir").keep();
        let mut child = Command::new(&binary)
            .arg("--dir")
            .arg(&dir)
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the test control plane");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let kubeconfig = loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("READY ") => break PathBuf::from(line.trim_start_matches("READY ").trim()),
                Some(Ok(_)) => continue,
                _ => panic!("test control plane exited before READY; see {}/controlplane.log", dir.display()),
            }
        };
        ControlPlane { kubeconfig, _child: Some((child, stdin)) }
    })
}

/// Path of the admin kubeconfig of the test control plane.
pub fn kubeconfig_path() -> PathBuf {
    control_plane().kubeconfig.clone()
}

/// An admin client of the test control plane, with the CRDs installed.
pub async fn client() -> Client {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    let client = Client::try_from(config).expect("client");
    CRDS.get_or_init(|| install_crds(client.clone())).await;
    client
}

/// Applies crds/ and waits until the API server serves them.
async fn install_crds(client: Client) {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/tpp-operator.crds.yaml"
    ))
    .expect("crds file");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in yaml_serde::Deserializer::from_str(&yaml) {
        let crd: CustomResourceDefinition = serde::Deserialize::deserialize(doc).expect("CRD YAML");
        let name = crd.metadata.name.clone().expect("name");
        api.patch(
            &name,
            &PatchParams::apply("tpp-operator-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply CRD");
        wait_for(Duration::from_secs(30), || async {
            let c = api.get(&name).await.ok()?;
            let established = c
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("CRD {name} not established"));
    }
}

/// Creates a fresh namespace for one test.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let n = {
        let mut c = NS_COUNTER.lock().unwrap();
        *c += 1;
        *c
    };
    let name = format!("{prefix}-{}-{n}", std::process::id());
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .expect("create namespace");
    name
}

/// Creates an Opaque Secret with string values.
pub async fn create_secret(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    create_labelled_secret(client, ns, name, &[], data).await;
}

/// Creates a Secret holding a signing key, marked so that the operator may sign with it.
pub async fn create_signing_key_secret(
    client: &Client,
    ns: &str,
    name: &str,
    data: &[(&str, &str)],
) {
    let marker = [(tpp_operator::api::LABEL_SIGNING_KEY, "true")];
    create_labelled_secret(client, ns, name, &marker, data).await;
}

/// Creates an Opaque Secret with labels and string values.
pub async fn create_labelled_secret(
    client: &Client,
    ns: &str,
    name: &str,
    labels: &[(&str, &str)],
    data: &[(&str, &str)],
) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        string_data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    };
    api.create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
}

/// Reads a Secret's data as strings.
pub async fn secret_data(
    client: &Client,
    ns: &str,
    name: &str,
) -> Option<BTreeMap<String, String>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = api.get_opt(name).await.expect("get secret")?;
    Some(
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect(),
    )
}

/// Polls `f` every 100 ms until it returns Some or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The return-URL prefix the in-process operator allows (`--allowed-return-url`).
pub const APP_RETURN_URL: &str = "https://app.example/openbanking";

/// The operator's controller running in-process, watching one namespace.
pub struct Operator {
    pub ctx: Arc<Context>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Name of the ClusterProvider `cluster_providers` makes for the `i`-th URL of `ns`.
pub fn provider_name(ns: &str, i: usize) -> String {
    format!("{ns}-{i}")
}

/// One Leatherback ClusterProvider per URL (`<ns>-<i>`), allowing namespace `ns`, as a platform
/// team would install them; applied, so that a restarted operator of the same test can call
/// this again.
pub async fn cluster_providers(client: &Client, ns: &str, urls: &[&str]) {
    let api: Api<tpp_operator::api::ClusterProvider> = Api::all(client.clone());
    for (i, url) in urls.iter().enumerate() {
        let name = provider_name(ns, i);
        let object = serde_json::json!({
            "apiVersion": "tpp-operator.dev/v1alpha1",
            "kind": "ClusterProvider",
            "metadata": {"name": name},
            "spec": {"profile": "leatherback", "url": url, "allowedNamespaces": {"names": [ns]}},
        });
        api.patch(
            &name,
            &PatchParams::apply("tpp-operator-tests").force(),
            &Patch::Apply(&object),
        )
        .await
        .expect("apply ClusterProvider");
    }
}

/// Applies ClusterProvider `name` with `spec` (JSON), as a platform team would.
pub async fn apply_cluster_provider(client: &Client, name: &str, spec: serde_json::Value) {
    let api: Api<tpp_operator::api::ClusterProvider> = Api::all(client.clone());
    let object = serde_json::json!({
        "apiVersion": "tpp-operator.dev/v1alpha1",
        "kind": "ClusterProvider",
        "metadata": {"name": name},
        "spec": spec,
    });
    api.patch(
        name,
        &PatchParams::apply("tpp-operator-tests").force(),
        &Patch::Apply(&object),
    )
    .await
    .expect("apply ClusterProvider");
}

/// A context for an operator watching `ns`, whose default provider is `<ns>-0`.
fn context(client: &Client, ns: &str) -> Arc<Context> {
    context_for(client, &[ns], &provider_name(ns, 0))
}

/// A context for an operator watching `namespaces`, with `default_provider`.
fn context_for(client: &Client, namespaces: &[&str], default_provider: &str) -> Arc<Context> {
    let metrics = Arc::new(Metrics::new());
    let provider = ProviderClient::new(
        &ProviderConfig {
            timeout: Duration::from_secs(2),
            rate_limit: 50.0,
            burst: 50,
            ..ProviderConfig::default()
        },
        metrics.clone(),
    )
    .expect("provider client");
    let settings = Settings {
        default_provider: default_provider.to_string(),
        namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        public_url: Some("https://tpp.example".parse().expect("url")),
        consent_poll_interval: Duration::from_secs(1),
        consent_poll_rate: 10.0,
        template_policy: Default::default(),
        allowed_return_urls: vec![APP_RETURN_URL.parse().expect("url")],
    };
    Arc::new(Context::new(client.clone(), provider, metrics, settings))
}

impl Operator {
    /// Starts a replica with leader election on `lease`; the task ends on shutdown or when the
    /// lease is lost.
    pub async fn start_elected(
        client: &Client,
        ns: &str,
        default_provider_url: &str,
        lease: tpp_operator::leader::LeaseConfig,
    ) -> (
        Arc<Context>,
        CancellationToken,
        tokio::task::JoinHandle<Result<(), tpp_operator::leader::LostLeadership>>,
    ) {
        cluster_providers(client, ns, &[default_provider_url]).await;
        let ctx = context(client, ns);
        let stop = CancellationToken::new();
        let task = tokio::spawn(tpp_operator::controller::run_elected(
            ctx.clone(),
            Some(lease),
            stop.clone(),
        ));
        (ctx, stop, task)
    }
}

impl Operator {
    /// Starts a controller for `ns` with a ClusterProvider for `default_provider_url` (its
    /// default) and a short provider timeout.
    pub async fn start(client: &Client, ns: &str, default_provider_url: &str) -> Operator {
        Self::start_allowing(client, ns, default_provider_url, &[]).await
    }

    /// Like `start`, with ClusterProviders for more provider URLs.
    pub async fn start_allowing(
        client: &Client,
        ns: &str,
        default_provider_url: &str,
        also_allowed: &[&str],
    ) -> Operator {
        let urls: Vec<&str> = std::iter::once(default_provider_url)
            .chain(also_allowed.iter().copied())
            .collect();
        cluster_providers(client, ns, &urls).await;
        let ctx = context(client, ns);
        let stop = CancellationToken::new();
        let task = tokio::spawn(tpp_operator::controller::run(ctx.clone(), stop.clone()));
        Operator { ctx, stop, task }
    }

    /// Starts a controller for `ns` whose default provider is the ClusterProvider `provider`,
    /// which the test applied itself.
    pub async fn start_with_default(client: &Client, ns: &str, provider: &str) -> Operator {
        Self::start_watching(client, &[ns], provider).await
    }

    /// Starts a controller watching `namespaces`, whose default provider is `provider`.
    pub async fn start_watching(client: &Client, namespaces: &[&str], provider: &str) -> Operator {
        let ctx = context_for(client, namespaces, provider);
        let stop = CancellationToken::new();
        let task = tokio::spawn(tpp_operator::controller::run(ctx.clone(), stop.clone()));
        Operator { ctx, stop, task }
    }

    /// Stops the controller and waits for it to finish (like a pod being terminated).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}

/// The operator's HTTP server (JWKS, callback) for `ctx`, on a free loopback port; it stops
/// when the returned handle is dropped.
pub async fn http_server(ctx: &Arc<Context>) -> (std::net::SocketAddr, HttpServer) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let limits = tpp_operator::http::PublicLimits::default();
    let state = tpp_operator::http::HttpState::new(ctx.clone(), &limits);
    let router = tpp_operator::http::public_router(state.clone(), &limits)
        .merge(tpp_operator::http::ops_router(state));
    let task = tokio::spawn(async move {
        tpp_operator::http::serve_on(listener, router, &limits, std::future::pending()).await
    });
    (addr, HttpServer(task))
}

/// A running HTTP server; aborted on drop.
pub struct HttpServer(tokio::task::JoinHandle<std::io::Result<()>>);

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits until the object's Ready condition has `ready` and `reason`; returns the object's
/// status (as JSON is generic over kinds) or panics with the last one seen.
pub async fn wait_ready<K>(api: &Api<K>, name: &str, ready: &str, reason: &str, secs: u64) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let matches = |obj: &K| {
        let value = serde_json::to_value(obj).unwrap_or_default();
        value["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == ready && c["reason"] == reason)
    };
    let found = wait_for(Duration::from_secs(secs), || async {
        let obj = api.get_status(name).await.ok()?;
        matches(&obj).then_some(obj)
    })
    .await;
    match found {
        Some(obj) => obj,
        None => panic!(
            "{name} never reached Ready={ready} ({reason}); now: {:#?}",
            api.get_status(name)
                .await
                .map(|o| serde_json::to_value(o).unwrap_or_default()["status"].clone())
        ),
    }
}
