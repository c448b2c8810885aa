//! `fake-provider`: run the fake Open Banking provider locally, e.g. to try the operator
//! without a bank. Faults and call records are under /__admin. `--profile openbanking-uk`
//! runs a bank of the UK Open Banking standard profile instead of Leatherback.

use clap::{Parser, ValueEnum};
use fake_provider::{Config, FakeProvider, ObOptions, Profile};
use std::net::SocketAddr;
use std::time::Duration;

/// Which bank to be.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProfileName {
    /// The Leatherback Open Banking API.
    Leatherback,
    /// A UK Open Banking standard-profile bank (FAPI 1 Advanced).
    OpenbankingUk,
}

#[derive(Parser)]
#[command(
    name = "fake-provider",
    about = "A fake of the Leatherback Open Banking API (or of a UK Open Banking \
             standard-profile bank) for local runs and tests"
)]
struct Args {
    /// Which bank to be.
    #[arg(
        long,
        env = "FAKE_PROVIDER_PROFILE",
        value_enum,
        default_value = "leatherback"
    )]
    profile: ProfileName,
    /// Address to listen on.
    #[arg(long, env = "FAKE_PROVIDER_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Real token lifetime (JWT exp - iat), seconds.
    #[arg(long, env = "FAKE_PROVIDER_TOKEN_LIFETIME", default_value_t = 300)]
    token_lifetime: u64,
    /// What expires_in says, if not the real lifetime (the provider's sample says 63919).
    #[arg(long, env = "FAKE_PROVIDER_EXPIRES_IN")]
    expires_in: Option<u64>,
    /// Delay added to every answer, milliseconds.
    #[arg(long, env = "FAKE_PROVIDER_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Requests per second above which the fake answers 429.
    #[arg(long, env = "FAKE_PROVIDER_RATE_LIMIT")]
    rate_limit: Option<u32>,
    /// Answer GET/DELETE of consents with 405, like a provider without them.
    #[arg(long, env = "FAKE_PROVIDER_NO_CONSENT_GET")]
    no_consent_get: bool,
    /// Answer registrations with statusMessage instead of Message (older docs).
    #[arg(long, env = "FAKE_PROVIDER_LEGACY_STATUS_MESSAGE")]
    legacy_status_message: bool,
    /// The TPP's JWKS URL, fetched to verify request objects at /authorize.
    #[arg(long, env = "FAKE_PROVIDER_JWKS_URL")]
    jwks_url: Option<String>,
    /// Issue opaque oa_stg_... id_tokens (like the provider's sample) instead of PS256 JWS.
    #[arg(long, env = "FAKE_PROVIDER_OPAQUE_ID_TOKEN")]
    opaque_id_token: bool,
    #[command(flatten)]
    ob: ObArgs,
}

/// Options of `--profile openbanking-uk`.
#[derive(clap::Args)]
struct ObArgs {
    /// API prefix of the consent routes.
    #[arg(long, env = "FAKE_PROVIDER_API_PREFIX", default_value = fake_provider::ob::DEFAULT_API_PREFIX)]
    api_prefix: String,
    /// Quirk: the discovery document lacks jwks_uri and token_endpoint.
    #[arg(long, env = "FAKE_PROVIDER_INCOMPLETE_DISCOVERY")]
    incomplete_discovery: bool,
    /// Quirk: the request object's aud must be this instead of the issuer.
    #[arg(long, env = "FAKE_PROVIDER_REQUEST_AUD")]
    request_aud: Option<String>,
    /// Quirk: answer the authorisation in the query instead of the fragment.
    #[arg(long, env = "FAKE_PROVIDER_RESPONSE_MODE_QUERY")]
    response_mode_query: bool,
    /// Quirk: token_type "bearer".
    #[arg(long, env = "FAKE_PROVIDER_TOKEN_TYPE_LOWERCASE")]
    token_type_lowercase: bool,
    /// Quirk: no refresh token from the code exchange.
    #[arg(long, env = "FAKE_PROVIDER_NO_REFRESH_TOKEN")]
    no_refresh_token: bool,
    /// Quirk: no id_token in refresh answers.
    #[arg(long, env = "FAKE_PROVIDER_NO_ID_TOKEN_ON_REFRESH")]
    no_id_token_on_refresh: bool,
    /// Quirk: no http://openbanking.org.uk/refresh_token_expires_at in token answers.
    #[arg(long, env = "FAKE_PROVIDER_NO_REFRESH_TOKEN_EXPIRES_AT")]
    no_refresh_token_expires_at: bool,
    /// Keep refresh tokens valid after use instead of rotating them.
    #[arg(long, env = "FAKE_PROVIDER_NO_ROTATE_REFRESH_TOKENS")]
    no_rotate_refresh_tokens: bool,
    /// Refresh token lifetime, seconds (default 90 days).
    #[arg(long, env = "FAKE_PROVIDER_REFRESH_TOKEN_LIFETIME", default_value_t = fake_provider::ob::DEFAULT_REFRESH_TOKEN_LIFETIME_SECS)]
    refresh_token_lifetime: u64,
    /// Quirk: the id_token's sub is the consent id.
    #[arg(long, env = "FAKE_PROVIDER_INTENT_IN_SUB")]
    intent_in_sub: bool,
    /// A client to provision at start (more with POST /__admin/clients).
    #[arg(long, env = "FAKE_PROVIDER_CLIENT_ID", requires_all = ["client_secret", "client_jwks_url", "client_redirect_uri"])]
    client_id: Option<String>,
    /// Its client_secret.
    #[arg(long, env = "FAKE_PROVIDER_CLIENT_SECRET")]
    client_secret: Option<String>,
    /// Its JWKS URL, fetched to verify its request objects.
    #[arg(long, env = "FAKE_PROVIDER_CLIENT_JWKS_URL")]
    client_jwks_url: Option<String>,
    /// Its redirect URIs (repeat the flag, or comma-separated in the variable).
    #[arg(long, env = "FAKE_PROVIDER_CLIENT_REDIRECT_URI", value_delimiter = ',')]
    client_redirect_uri: Vec<String>,
}

impl ObArgs {
    fn options(&self) -> ObOptions {
        ObOptions {
            api_prefix: self.api_prefix.clone(),
            incomplete_discovery: self.incomplete_discovery,
            request_aud: self.request_aud.clone(),
            response_mode_query: self.response_mode_query,
            token_type_lowercase: self.token_type_lowercase,
            no_refresh_token: self.no_refresh_token,
            no_id_token_on_refresh: self.no_id_token_on_refresh,
            no_refresh_token_expires_at: self.no_refresh_token_expires_at,
            rotate_refresh_tokens: !self.no_rotate_refresh_tokens,
            refresh_token_lifetime_secs: self.refresh_token_lifetime,
            intent_in_sub: self.intent_in_sub,
            ..ObOptions::default()
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let profile = match args.profile {
        ProfileName::Leatherback => Profile::Leatherback,
        ProfileName::OpenbankingUk => Profile::OpenBankingUk(args.ob.options()),
    };
    let fake = FakeProvider::start(Config {
        addr: Some(args.listen),
        token_lifetime_secs: args.token_lifetime,
        expires_in: args.expires_in,
        latency: Duration::from_millis(args.latency_ms),
        rate_limit: args.rate_limit,
        consent_get_delete: !args.no_consent_get,
        legacy_status_message: args.legacy_status_message,
        jwks_url: args.jwks_url,
        opaque_id_token: args.opaque_id_token,
        profile,
        ..Config::default()
    })
    .await?;
    if let (Some(id), Some(secret), Some(jwks_url)) = (
        &args.ob.client_id,
        &args.ob.client_secret,
        &args.ob.client_jwks_url,
    ) {
        let redirects: Vec<&str> = args
            .ob
            .client_redirect_uri
            .iter()
            .map(String::as_str)
            .collect();
        fake.add_client(id, secret, jwks_url, &redirects);
    }
    println!("listening on {}", fake.base_url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    fake.shutdown().await;
    Ok(())
}
