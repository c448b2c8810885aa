//! Token refreshes over a window: N registrations whose tokens live T seconds, measured for W
//! seconds once all are Ready and have their signing keys (so that key generation, which
//! finishes after Ready, falls outside the window).
//!
//! Two scenarios share it: short-lived tokens (does any token expire before its successor?) and
//! steady refresh cost (what one refresh costs the operator and the API server).

use crate::metrics::{ApiRequests, OperatorCounts};
use crate::{
    create_registrations, prepare_secrets, ready, registration_keyed, secs, setup, wait_all,
    writes, Args, Res, NAMESPACE,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tpp_operator::api::TppRegistration;

/// The operator's default `refresh.safetyMarginSeconds`.
const DEFAULT_MARGIN: u64 = 90;

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `--lifetime-*`: 30 s tokens, misses are the question.
    ShortLived,
    /// `--steady-*`: realistic lifetimes, the cost per refresh is the question.
    Steady,
}

/// One window scenario.
pub struct Scenario {
    kind: Kind,
    n: usize,
    token_seconds: u64,
    window_seconds: u64,
    /// `refresh.safetyMarginSeconds` set on every registration; `None` keeps the default.
    margin: Option<u64>,
}

impl Scenario {
    pub fn new(args: &Args, kind: Kind, n: usize) -> Scenario {
        let (token_seconds, window_seconds) = match kind {
            Kind::ShortLived => (args.lifetime_token_seconds, args.lifetime_seconds),
            Kind::Steady => (args.steady_token_seconds, args.steady_window_seconds),
        };
        // The default margin moves the refresh point (two thirds of the lifetime) only for
        // short tokens (under 270 s), where it would pull every refresh far forward; there the
        // bench sets what a user would: a sixth of the lifetime.
        let margin = (token_seconds * 2 / 3 + DEFAULT_MARGIN > token_seconds)
            .then(|| (token_seconds / 6).max(1));
        Scenario {
            kind,
            n,
            token_seconds,
            window_seconds,
            margin,
        }
    }

    /// The heading of its table.
    pub fn title(&self) -> String {
        let what = match self.kind {
            Kind::ShortLived => "Short-lived tokens",
            Kind::Steady => "Steady refresh cost",
        };
        format!(
            "{what}: {} registrations, {} s tokens, {} s window",
            self.n, self.token_seconds, self.window_seconds
        )
    }

    fn tag(&self) -> &'static str {
        match self.kind {
            Kind::ShortLived => "[lifetime]",
            Kind::Steady => "[steady]",
        }
    }
}

/// Figures of one window.
pub struct RefreshReport {
    title: String,
    margin: Option<u64>,
    ready: Duration,
    keyed_from_first: Duration,
    keyed_from_last: Duration,
    /// Client tokens issued in the window.
    refreshes: usize,
    expected: f64,
    /// Client-token calls the fake received in the window (failed ones too).
    token_calls: u64,
    operator: OperatorCounts,
    min_per_client: usize,
    max_per_client: usize,
    late: usize,
    early_duplicates: usize,
    cpu_seconds: f64,
    api: ApiRequests,
    writes: writes::Counts,
    peak_per_second: u64,
    rate_limited: u64,
    rate_limit: u32,
    rss_mib: f64,
}

pub async fn run(args: &Args, sc: &Scenario) -> Res<RefreshReport> {
    let (n, lifetime, tag) = (sc.n, sc.token_seconds, sc.tag());
    eprintln!("{tag} {n} registrations with {lifetime} s tokens");
    let setup = setup(args, lifetime).await?;
    let timeout = Duration::from_secs(args.timeout_seconds);
    prepare_secrets(&setup, args.shared_signing_key).await?;
    let refresh = match sc.margin {
        Some(m) => serde_json::json!({"safetyMarginSeconds": m}),
        None => serde_json::json!({}),
    };
    let started = Instant::now();
    create_registrations(&setup, n, refresh, args.shared_signing_key).await?;
    let last_create = Instant::now();
    wait_all::<TppRegistration, _>(&setup, n, timeout, "registrations Ready", |r| {
        r.status.as_ref().is_some_and(|s| ready(&s.conditions))
    })
    .await?;
    let ready_after = started.elapsed();
    eprintln!("{tag} all Ready after {ready_after:?}; waiting for signing keys");
    // Key generation (a Secret, a status write and an event per registration) would otherwise
    // fall into the window and count as refresh cost.
    wait_all::<TppRegistration, _>(
        &setup,
        n,
        timeout,
        "registrations Ready with a signing key",
        registration_keyed,
    )
    .await?;
    let (keyed_from_first, keyed_from_last) = (started.elapsed(), last_create.elapsed());
    eprintln!(
        "{tag} all keys after {keyed_from_first:?}; measuring {} s",
        sc.window_seconds
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The bench writes nothing in the window, so the API server's request counts on the
    // operator's resources are the operator's (see ApiRequests for the few reads that are not).
    let counter = writes::Counter::start(&setup.client, NAMESPACE).await?;
    let api_before = ApiRequests::scrape(&setup.client).await?;
    let operator_before = OperatorCounts::scrape(&setup.operator.metrics_url).await?;
    let calls_before = setup.fake.calls();
    let cpu_before = setup.operator.cpu_seconds();
    let window_start = jiff::Timestamp::now();
    tokio::time::sleep(Duration::from_secs(sc.window_seconds)).await;
    let window_end = jiff::Timestamp::now();
    let cpu_seconds = setup.operator.cpu_seconds() - cpu_before;
    let calls = setup.fake.calls();
    let operator = OperatorCounts::scrape(&setup.operator.metrics_url)
        .await?
        .since(&operator_before);
    let api = ApiRequests::scrape(&setup.client).await?.since(&api_before);
    let writes = counter.stop();

    let history = token_history(&setup.fake, lifetime, window_start, window_end);
    let (rss_mib, _) = setup.operator.memory();
    // Refreshes happen at two thirds of the lifetime.
    let expected = n as f64 * sc.window_seconds as f64 / (lifetime as f64 * 2.0 / 3.0);
    let report = RefreshReport {
        title: sc.title(),
        margin: sc.margin,
        ready: ready_after,
        keyed_from_first,
        keyed_from_last,
        refreshes: history.in_window.iter().sum(),
        expected,
        token_calls: calls.client_token - calls_before.client_token,
        operator,
        min_per_client: history.in_window.iter().copied().min().unwrap_or(0),
        max_per_client: history.in_window.iter().copied().max().unwrap_or(0),
        late: history.late,
        early_duplicates: history.early_duplicates,
        cpu_seconds,
        api,
        writes,
        peak_per_second: calls.peak_per_second,
        rate_limited: calls.rate_limited,
        rate_limit: args.provider_rate,
        rss_mib,
    };
    setup.stop().await;
    Ok(report)
}

/// What the fake's token records say about a window.
struct TokenHistory {
    /// Tokens that expired before their successor was issued (or, for the last one, before the
    /// window ended), within the window.
    late: usize,
    /// New tokens issued within a third of the lifetime of the previous one.
    early_duplicates: usize,
    /// Client tokens issued in the window, per client.
    in_window: Vec<usize>,
}

fn token_history(
    fake: &fake_provider::FakeProvider,
    lifetime: u64,
    window_start: jiff::Timestamp,
    window_end: jiff::Timestamp,
) -> TokenHistory {
    let mut per_client: HashMap<String, Vec<fake_provider::TokenRecord>> = HashMap::new();
    for t in fake
        .tokens()
        .into_iter()
        .filter(|t| t.grant_type == "client_credentials")
    {
        per_client.entry(t.client_id.clone()).or_default().push(t);
    }
    let mut history = TokenHistory {
        late: 0,
        early_duplicates: 0,
        in_window: Vec::new(),
    };
    for tokens in per_client.values_mut() {
        tokens.sort_by_key(|t| t.issued_at);
        history.in_window.push(
            tokens
                .iter()
                .filter(|t| t.issued_at >= window_start && t.issued_at < window_end)
                .count(),
        );
        for pair in tokens.windows(2) {
            // Within the window, a token that expired before the next was issued is a miss.
            if pair[0].expires_at < pair[1].issued_at.min(window_end)
                && pair[0].expires_at >= window_start
            {
                history.late += 1;
            }
            // A new token while the previous had most of its life left is a duplicate.
            let age = pair[1].issued_at.duration_since(pair[0].issued_at);
            if age.as_secs_f64() < lifetime as f64 / 3.0 {
                history.early_duplicates += 1;
            }
        }
        if let Some(last) = tokens.last() {
            if last.expires_at < window_end {
                history.late += 1;
            }
        }
    }
    history
}

impl std::fmt::Display for RefreshReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = self.refreshes.max(1) as f64;
        writeln!(f, "## {}\n", self.title)?;
        writeln!(f, "| Measure | Value |")?;
        writeln!(f, "|---|---|")?;
        let mut row = |k: &str, v: String| writeln!(f, "| {k} | {v} |");
        row(
            "Refresh policy",
            match self.margin {
                Some(m) => format!("defaults, safetyMarginSeconds {m}"),
                None => "defaults".into(),
            },
        )?;
        row("All Ready (from first create)", secs(self.ready))?;
        row(
            "All with a signing key, from first / last create",
            format!(
                "{} / {}",
                secs(self.keyed_from_first),
                secs(self.keyed_from_last)
            ),
        )?;
        row(
            "Tokens that expired before their successor was issued (misses)",
            self.late.to_string(),
        )?;
        row(
            "Token refreshes in the window (tokens issued) / expected at 2/3 of the lifetime",
            format!("{} / {:.0}", self.refreshes, self.expected),
        )?;
        row(
            "Client-token calls at the fake / refreshes the operator counted (tpp_operator_token_refreshes_total)",
            format!("{} / {:.0}", self.token_calls, self.operator.token_refreshes),
        )?;
        row(
            "Refreshes per registration, min / max",
            format!("{} / {}", self.min_per_client, self.max_per_client),
        )?;
        row(
            "Duplicate calls (a new token within a third of the lifetime)",
            self.early_duplicates.to_string(),
        )?;
        row(
            "Operator CPU in the window; per refresh",
            format!(
                "{:.1} s; **{:.1} ms**",
                self.cpu_seconds,
                self.cpu_seconds * 1000.0 / per
            ),
        )?;
        row(
            "Reconciles in the window (not success); per refresh",
            format!(
                "{:.0} ({:.0}); **{:.2}**",
                self.operator.reconciles,
                self.operator.failed_reconciles,
                self.operator.reconciles / per
            ),
        )?;
        row(
            "API-server reads of the operator's resources (apiserver_request_total); per refresh",
            format!(
                "{}; **{:.2}**",
                self.api.reads_text(),
                self.api.reads() / per
            ),
        )?;
        row(
            "API-server writes of the operator's resources (apiserver_request_total); per refresh",
            format!(
                "{}; **{:.2}**",
                self.api.writes_text(),
                self.api.writes() / per
            ),
        )?;
        let (lease_reads, lease_writes) = self.api.leases();
        row(
            "Lease reads / writes (the API server's own; the operator runs without election here)",
            format!("{lease_reads:.0} / {lease_writes:.0}"),
        )?;
        let w = &self.writes;
        row(
            "Writes seen by watches (registrations, consents, Secrets, events); per refresh",
            format!(
                "{} ({}, {}, {}, {}); **{:.2}**",
                w.total(),
                w.registrations,
                w.consents,
                w.secrets,
                w.events,
                w.total() as f64 / per
            ),
        )?;
        row(
            &format!(
                "Peak provider requests in one second, whole run (limit {})",
                self.rate_limit
            ),
            format!(
                "{} ({} answered 429)",
                self.peak_per_second, self.rate_limited
            ),
        )?;
        row(
            "Operator RSS at the end",
            format!("{:.1} MiB", self.rss_mib),
        )?;
        Ok(())
    }
}
