//! `fake-provider`: run the fake Open Banking provider locally, e.g. to try the operator
//! without a bank. Faults and call records are under /__admin.

use clap::Parser;
use fake_provider::{Config, FakeProvider};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "fake-provider",
    about = "A fake of the Leatherback Open Banking API for local runs and tests"
)]
struct Args {
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
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
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
        ..Config::default()
    })
    .await?;
    println!("listening on {}", fake.base_url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    fake.shutdown().await;
    Ok(())
}
