//! Prometheus text scraped from the operator (`/metrics` on its metrics listener) and from the
//! test API server (`/metrics`, read with the admin kubeconfig).

use crate::{err, Res};
use kube::Client;
use std::collections::BTreeMap;
use std::time::Duration;

/// The resources the operator reads and writes: its two kinds, its Secrets and its Events.
/// Leases are counted apart (see [`ApiRequests::leases`]).
const OPERATOR_RESOURCES: [&str; 4] = ["tppregistrations", "accountconsents", "secrets", "events"];
const READ_VERBS: [&str; 4] = ["GET", "LIST", "WATCH", "WATCHLIST"];
const WRITE_VERBS: [&str; 6] = [
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

/// One sample of a metric: its labels and value.
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of the metric `name` (the full sample name, e.g. with `_total`) in a Prometheus
/// or OpenMetrics text exposition.
pub fn samples(text: &str, name: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(parse_line)
        .filter(|(n, _)| *n == name)
        .map(|(_, sample)| sample)
        .collect()
}

/// `name{label="value",...} value [timestamp]`, or `name value`.
fn parse_line(line: &str) -> Option<(&str, Sample)> {
    let line = line.trim();
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices();
        let mut key = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => break i,
                ',' | ' ' => {}
                '=' => {
                    // A quoted value with \" \\ \n escapes.
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        };
        rest = &after[end + 1..];
    }
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some((name, Sample { labels, value }))
}

/// The sum of all samples of `name`.
pub fn sum(text: &str, name: &str) -> f64 {
    samples(text, name).iter().map(|s| s.value).sum()
}

/// Counters read from the operator's own `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OperatorCounts {
    /// `tpp_operator_reconciles_total`, all kinds and results.
    pub reconciles: f64,
    /// Those whose result was not `success`.
    pub failed_reconciles: f64,
    /// `tpp_operator_token_refreshes_total`, all registrations.
    pub token_refreshes: f64,
}

impl OperatorCounts {
    /// Scrapes the operator's metrics listener.
    pub async fn scrape(metrics_url: &str) -> Res<OperatorCounts> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(err("metrics client"))?;
        let text = client
            .get(format!("{metrics_url}/metrics"))
            .send()
            .await
            .map_err(err("scrape operator metrics"))?
            .text()
            .await
            .map_err(err("scrape operator metrics"))?;
        let reconciles = samples(&text, "tpp_operator_reconciles_total");
        Ok(OperatorCounts {
            reconciles: reconciles.iter().map(|s| s.value).sum(),
            failed_reconciles: reconciles
                .iter()
                .filter(|s| s.labels.get("result").map(String::as_str) != Some("success"))
                .map(|s| s.value)
                .sum(),
            token_refreshes: sum(&text, "tpp_operator_token_refreshes_total"),
        })
    }

    /// What changed since `before`.
    pub fn since(&self, before: &OperatorCounts) -> OperatorCounts {
        OperatorCounts {
            reconciles: self.reconciles - before.reconciles,
            failed_reconciles: self.failed_reconciles - before.failed_reconciles,
            token_refreshes: self.token_refreshes - before.token_refreshes,
        }
    }
}

/// The API server's own request counts (`apiserver_request_total`) by resource and verb.
///
/// The metric has no label for the client, so these are the requests of everyone on those
/// resources. The bench attributes them to the operator by writing nothing during a measuring
/// window and taking the difference of two scrapes; what remains from others is small and
/// only reads: a WATCH is counted when it ends, and the watches of the bench's own write
/// counter (kube-rs asks for 290 s) and of the controller manager's garbage collector (5–10
/// minutes) end and are reopened during a long window: a few WATCH per watch per 10 minutes.
#[derive(Clone, Debug, Default)]
pub struct ApiRequests(BTreeMap<(String, String), f64>);

impl ApiRequests {
    /// Scrapes the API server's `/metrics` (the admin client may read it).
    pub async fn scrape(client: &Client) -> Res<ApiRequests> {
        // GET /metrics: a "get" of the object "metrics" under the root path.
        let request = kube::core::Request::new("")
            .get("metrics", &Default::default())
            .map_err(err("metrics request"))?;
        let text = tokio::time::timeout(Duration::from_secs(60), client.request_text(request))
            .await
            .map_err(|_| "API server /metrics did not answer in 60 s".to_string())?
            .map_err(err("scrape API server metrics"))?;
        let mut counts = BTreeMap::new();
        for s in samples(&text, "apiserver_request_total") {
            let label = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            *counts
                .entry((label("resource"), label("verb")))
                .or_default() += s.value;
        }
        Ok(ApiRequests(counts))
    }

    /// What changed since `before`.
    pub fn since(&self, before: &ApiRequests) -> ApiRequests {
        ApiRequests(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - before.0.get(k).copied().unwrap_or(0.0)))
                .collect(),
        )
    }

    fn count(&self, resources: &[&str], verbs: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|((r, v), _)| resources.contains(&r.as_str()) && verbs.contains(&v.as_str()))
            .map(|(_, n)| n)
            .sum::<f64>()
            // An empty sum is -0.0.
            + 0.0
    }

    /// Reads (GET, LIST, WATCH) of the operator's resources.
    pub fn reads(&self) -> f64 {
        self.count(&OPERATOR_RESOURCES, &READ_VERBS)
    }

    /// Writes (POST, PUT, PATCH, APPLY, DELETE) of the operator's resources.
    pub fn writes(&self) -> f64 {
        self.count(&OPERATOR_RESOURCES, &WRITE_VERBS)
    }

    /// `total (GET a, LIST b, WATCH c; registrations d, consents e, Secrets f, events g)`.
    pub fn reads_text(&self) -> String {
        let by = |v: &str| self.count(&OPERATOR_RESOURCES, &[v]);
        let of = |r: &str| self.count(&[r], &READ_VERBS);
        format!(
            "{:.0} (GET {:.0}, LIST {:.0}, WATCH {:.0}; registrations {:.0}, consents {:.0}, Secrets {:.0}, events {:.0})",
            self.reads(),
            by("GET"),
            by("LIST"),
            by("WATCH") + by("WATCHLIST"),
            of("tppregistrations"),
            of("accountconsents"),
            of("secrets"),
            of("events")
        )
    }

    /// `total (tppregistrations a, accountconsents b, secrets c, events d)`.
    pub fn writes_text(&self) -> String {
        let by = |r: &str| self.count(&[r], &WRITE_VERBS);
        format!(
            "{:.0} (registrations {:.0}, consents {:.0}, Secrets {:.0}, events {:.0})",
            self.writes(),
            by("tppregistrations"),
            by("accountconsents"),
            by("secrets"),
            by("events")
        )
    }

    /// Reads and writes of Leases. The operator runs with `--leader-elect false` here and holds
    /// none; the API server renews its own identity Lease (and reads it) every 10 s, so these are
    /// reported apart and not counted as the operator's.
    pub fn leases(&self) -> (f64, f64) {
        (
            self.count(&["leases"], &READ_VERBS),
            self.count(&["leases"], &WRITE_VERBS),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_and_openmetrics_lines() {
        let text = r#"# HELP apiserver_request_total [STABLE] Counter
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="tpp-operator.dev",resource="tppregistrations",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 1.234567e+06
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="POST",version="v1"} 3
apiserver_request_total{code="0",component="apiserver",dry_run="",group="",resource="secrets",scope="namespace",subresource="",verb="WATCH",version="v1"} 2
apiserver_request_totals{resource="secrets",verb="POST"} 100
tpp_operator_reconciles_total{kind="TppRegistration",result="success"} 5
tpp_operator_reconciles_total{kind="Account\"Consent",result="transient_error"} 2
tpp_operator_leader 1
# EOF"#;
        let s = samples(text, "apiserver_request_total");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].value, 1_234_567.0);
        assert_eq!(s[0].labels["subresource"], "status");
        assert_eq!(s[1].labels["verb"], "POST");
        assert_eq!(sum(text, "tpp_operator_reconciles_total"), 7.0);
        let r = samples(text, "tpp_operator_reconciles_total");
        assert_eq!(r[1].labels["kind"], "Account\"Consent");
        assert_eq!(sum(text, "tpp_operator_leader"), 1.0);
    }

    #[test]
    fn splits_reads_and_writes() {
        let mut m = BTreeMap::new();
        let mut put = |r: &str, v: &str, n: f64| {
            m.insert((r.to_string(), v.to_string()), n);
        };
        put("tppregistrations", "PATCH", 10.0);
        put("secrets", "APPLY", 5.0);
        put("secrets", "WATCH", 2.0);
        put("events", "POST", 1.0);
        put("leases", "PUT", 7.0);
        put("configmaps", "PUT", 9.0);
        put("", "GET", 100.0);
        let after = ApiRequests(m);
        assert_eq!(after.writes(), 16.0);
        assert_eq!(after.reads(), 2.0);
        assert_eq!(after.leases(), (0.0, 7.0));
        assert!(
            after.reads_text().contains("LIST 0,"),
            "{}",
            after.reads_text()
        );
        let d = after.since(&ApiRequests::default());
        assert_eq!(d.writes(), 16.0);
        assert!(d.writes_text().starts_with("16 (registrations 10,"));
    }
}
