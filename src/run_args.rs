//! The flags of `tpp-operator run` and what they mean for the operator: its settings and the
//! public listener's limits (a flag that cannot be used stops the start with a message).

use std::net::SocketAddr;
use std::time::Duration;
use tpp_operator::api::contract::parse_return_url_prefixes;
use tpp_operator::controller::Settings;
use tpp_operator::http::{ConnectionLimits, PublicLimits};
use tpp_operator::provider::parse_base_url;
use tpp_operator::secrets::TemplatePolicy;
use tpp_operator::telemetry::LogFormat;

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// The ClusterProvider of TppRegistrations that name none (spec.providerRef).
    #[arg(long, env = "TPP_DEFAULT_PROVIDER", default_value = tpp_operator::api::DEFAULT_PROVIDER)]
    pub(crate) default_provider: String,
    /// A JSON list of ClusterProviders to apply at start (each a name and a ClusterProvider
    /// spec): the chart's `providers` value.
    #[arg(long, env = "TPP_PROVIDERS_FILE")]
    pub(crate) providers_file: Option<String>,
    /// Removed: providers are ClusterProviders now (see README, "Migrating from
    /// --allowed-provider-url"). Refused with that message when set.
    #[arg(
        long = "allowed-provider-url",
        env = "TPP_ALLOWED_PROVIDER_URLS",
        hide = true
    )]
    pub(crate) removed_allowed_provider_urls: Option<String>,
    /// Removed, like --allowed-provider-url.
    #[arg(
        long = "default-provider-url",
        env = "TPP_DEFAULT_PROVIDER_URL",
        hide = true
    )]
    pub(crate) removed_default_provider_url: Option<String>,
    /// Label and annotation keys spec.secretTemplate may set, comma-separated (`*` matches any
    /// characters); default: any key not denied.
    #[arg(
        long = "secret-template-allowed-key",
        env = "TPP_SECRET_TEMPLATE_ALLOWED_KEYS",
        value_delimiter = ','
    )]
    pub(crate) secret_template_allowed_keys: Vec<String>,
    /// Label and annotation keys spec.secretTemplate may never set, comma-separated (`*`
    /// matches any characters); default: the well-known replicators' keys (Reflector, kubed,
    /// kubernetes-replicator, Kyverno) and anything under kubernetes.io/ and k8s.io/. The
    /// operator's own tpp-operator.dev/ keys are always refused.
    #[arg(
        long = "secret-template-denied-key",
        env = "TPP_SECRET_TEMPLATE_DENIED_KEYS",
        value_delimiter = ','
    )]
    pub(crate) secret_template_denied_keys: Option<Vec<String>>,
    /// Watch only these namespaces, comma-separated (default: all namespaces).
    #[arg(
        long = "namespace",
        env = "TPP_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    pub(crate) namespaces: Vec<String>,
    /// External base URL of this operator's HTTP server (as the provider reaches it, e.g. through
    /// the chart's Ingress); used for the JWKS URL shown in status.
    #[arg(long, env = "TPP_PUBLIC_URL")]
    pub(crate) public_url: Option<String>,
    /// Address of the public HTTP server: /callback and /jwks (expose it through an Ingress).
    #[arg(long, env = "TPP_PUBLIC_ADDR", default_value = "0.0.0.0:8080")]
    pub(crate) public_addr: SocketAddr,
    /// Address of the cluster-internal HTTP server: /healthz, /readyz and /metrics.
    #[arg(long, env = "TPP_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub(crate) metrics_addr: SocketAddr,
    /// Requests per second one client may send to /callback (then 429); bursts of twice that.
    #[arg(long, env = "TPP_PUBLIC_CALLBACK_RATE", default_value_t = 5.0)]
    pub(crate) public_callback_rate: f64,
    /// Requests per second one client may send to /jwks (then 429); bursts of twice that.
    #[arg(long, env = "TPP_PUBLIC_JWKS_RATE", default_value_t = 10.0)]
    pub(crate) public_jwks_rate: f64,
    /// The platform's proxies in front of the public listener (Ingress controller, load
    /// balancer), as addresses or CIDR ranges, comma-separated: behind them a client is known
    /// by the first X-Forwarded-For hop they did not write. Default: none (the direct peer).
    #[arg(
        long = "public-trusted-proxy",
        env = "TPP_PUBLIC_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub(crate) public_trusted_proxies: Vec<String>,
    /// Requests the public server handles at once (more get 503 at once).
    #[arg(long, env = "TPP_PUBLIC_CONCURRENCY", default_value_t = 32)]
    pub(crate) public_concurrency: usize,
    /// Connections the public server keeps open at once (more are closed at accept).
    #[arg(long, env = "TPP_PUBLIC_MAX_CONNECTIONS", default_value_t = 1024)]
    pub(crate) public_max_connections: usize,
    /// Timeout of one provider call, in seconds.
    #[arg(long, env = "TPP_PROVIDER_TIMEOUT_SECONDS", default_value_t = 30)]
    pub(crate) provider_timeout_seconds: u64,
    /// Requests per second allowed to each provider host.
    #[arg(long, env = "TPP_PROVIDER_RATE_LIMIT", default_value_t = 10.0)]
    pub(crate) provider_rate_limit: f64,
    /// Longest Retry-After honoured, in seconds: a provider asking for longer is waited for
    /// this long, so a hostile or broken answer cannot pause its objects for good.
    #[arg(
        long,
        env = "TPP_PROVIDER_MAX_RETRY_AFTER_SECONDS",
        default_value_t = 3600
    )]
    pub(crate) provider_max_retry_after_seconds: u64,
    /// Requests allowed in a burst above the rate.
    #[arg(long, env = "TPP_PROVIDER_BURST", default_value_t = 10)]
    pub(crate) provider_burst: u32,
    /// First interval, in seconds, between two status polls of a consent awaiting
    /// authorisation; it doubles while nothing changes, up to five minutes.
    #[arg(long, env = "TPP_CONSENT_POLL_SECONDS", default_value_t = 10)]
    pub(crate) consent_poll_seconds: u64,
    /// Log format.
    #[arg(long, env = "TPP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Elect a leader with a Lease so that several replicas can run; only the holder reconciles.
    #[arg(long, env = "TPP_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) leader_elect: bool,
    /// Namespace of the Lease (default: the pod's namespace, else "default").
    #[arg(long, env = "TPP_LEASE_NAMESPACE")]
    pub(crate) lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, env = "TPP_LEASE_NAME", default_value = "tpp-operator")]
    pub(crate) lease_name: String,
    /// Seconds a Lease stays valid without renewal; a standby takes over after that.
    #[arg(long, env = "TPP_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub(crate) lease_duration_seconds: u64,
    /// URL prefixes an AccountConsent's spec.returnUrl may start with, comma-separated
    /// (https; same scheme, host and port, path below the prefix's). Default: none, so no
    /// consent may send its customers back to an app.
    #[arg(
        long = "allowed-return-url",
        env = "TPP_ALLOWED_RETURN_URLS",
        value_delimiter = ','
    )]
    pub(crate) allowed_return_urls: Vec<String>,
}

impl RunArgs {
    /// The operator-wide settings from the flags.
    pub(crate) fn settings(&self) -> Result<Settings, String> {
        let args = self;
        let removed = [
            &args.removed_allowed_provider_urls,
            &args.removed_default_provider_url,
        ];
        if removed
            .iter()
            .any(|v| v.as_deref().is_some_and(|v| !v.trim().is_empty()))
        {
            // Silently ignoring them could send a registration's credentials to another host.
            return Err("--allowed-provider-url and --default-provider-url (TPP_ALLOWED_PROVIDER_URLS, TPP_DEFAULT_PROVIDER_URL) were removed: providers are ClusterProviders now. Create one ClusterProvider per provider URL, allowing the namespaces that use it, and name the default one with --default-provider (the chart does both from its `providers` value); see README, \"Migrating from --allowed-provider-url\".".into());
        }
        let public_url = match &args.public_url {
            Some(raw) => Some(parse_base_url(raw).map_err(|e| format!("--public-url: {e}"))?),
            None => None,
        };
        Ok(Settings {
            public_url,
            default_provider: args.default_provider.clone(),
            namespaces: args
                .namespaces
                .iter()
                .filter(|n| !n.trim().is_empty())
                .cloned()
                .collect(),
            consent_poll_interval: Duration::from_secs(args.consent_poll_seconds.max(1)),
            // A quarter of the provider budget: registrations, tokens and consents come first.
            consent_poll_rate: (args.provider_rate_limit / 4.0).max(0.1),
            template_policy: args.template_policy(),
            allowed_return_urls: parse_return_url_prefixes(&args.allowed_return_urls)
                .map_err(|e| format!("--allowed-return-url: {e}"))?,
        })
    }

    /// The rule for `spec.secretTemplate` keys: the flags' lists (empty entries ignored), the
    /// default denied keys when none are given.
    fn template_policy(&self) -> TemplatePolicy {
        let args = self;
        let list = |keys: &[String]| -> Vec<String> {
            keys.iter()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect()
        };
        let mut policy = TemplatePolicy {
            allowed: list(&args.secret_template_allowed_keys),
            ..TemplatePolicy::default()
        };
        if let Some(denied) = &args.secret_template_denied_keys {
            policy.denied = list(denied);
        }
        policy
    }

    /// The public listener's limits from the flags.
    pub(crate) fn public_limits(&self) -> Result<PublicLimits, String> {
        let args = self;
        let trusted_proxies = args
            .public_trusted_proxies
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                p.parse()
                    .map_err(|e| format!("--public-trusted-proxy: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PublicLimits {
            callback_rate: args.public_callback_rate.max(0.1),
            jwks_rate: args.public_jwks_rate.max(0.1),
            trusted_proxies,
            concurrency: args.public_concurrency.max(1),
            connections: ConnectionLimits {
                max_connections: args.public_max_connections.max(1),
                ..ConnectionLimits::default()
            },
            ..PublicLimits::default()
        })
    }
}
