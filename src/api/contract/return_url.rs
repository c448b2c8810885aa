//! The contract with the app behind an AccountConsent's `spec.returnUrl`: which return URLs the
//! platform team allows, and what the operator adds to one when it sends the customer's browser
//! back (`consent` and `outcome`, nothing secret).

use url::{Host, Url};

/// Query parameter naming the consent the customer comes back from.
pub const CONSENT_PARAM: &str = "consent";
/// Query parameter saying how the authorisation ended (see [`ReturnOutcome`]).
pub const OUTCOME_PARAM: &str = "outcome";

/// How a customer's authorisation ended, as the app behind `spec.returnUrl` is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnOutcome {
    /// The code was handed over; the customer token follows once the operator exchanged it.
    Authorised,
    /// The redirect carried an error: the customer or the bank refused.
    Refused,
    /// The consent was found but the hand-off could not be recorded (a replayed redirect, or
    /// the API server failed): the app should offer to start again.
    Failed,
}

impl ReturnOutcome {
    /// The value of the `outcome` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            ReturnOutcome::Authorised => "authorised",
            ReturnOutcome::Refused => "refused",
            ReturnOutcome::Failed => "failed",
        }
    }
}

/// Why a return-URL prefix the platform team configured is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReturnUrlPrefixError {
    /// Not an absolute URL.
    #[error("{0:?} is not an absolute URL")]
    Unparsable(String),
    /// Not https: `spec.returnUrl` must be https, so it could never match.
    #[error("{0:?} is not an https URL")]
    NotHttps(String),
    /// Carries a user, a query or a fragment, which a prefix cannot meaningfully match.
    #[error(
        "{0:?} must be scheme, host, optional port and path only (no user, query or fragment)"
    )]
    NotAPrefix(String),
    /// A host name with characters no DNS name has (it also goes into a Content-Security-Policy).
    #[error("{0:?} does not name a DNS host or an IP address")]
    BadHost(String),
}

/// Parses one configured return-URL prefix (`--allowed-return-url`).
pub fn parse_return_url_prefix(raw: &str) -> Result<Url, ReturnUrlPrefixError> {
    let url = Url::parse(raw).map_err(|_| ReturnUrlPrefixError::Unparsable(raw.into()))?;
    if url.scheme() != "https" {
        return Err(ReturnUrlPrefixError::NotHttps(raw.into()));
    }
    if has_user(&url) || url.query().is_some() || url.fragment().is_some() {
        return Err(ReturnUrlPrefixError::NotAPrefix(raw.into()));
    }
    match url.host() {
        Some(Host::Domain(d)) if d.chars().all(is_dns_char) => Ok(url),
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => Ok(url),
        _ => Err(ReturnUrlPrefixError::BadHost(raw.into())),
    }
}

/// Parses the configured prefixes (`--allowed-return-url`), ignoring empty entries.
pub fn parse_return_url_prefixes(raw: &[String]) -> Result<Vec<Url>, ReturnUrlPrefixError> {
    raw.iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .map(parse_return_url_prefix)
        .collect()
}

fn is_dns_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
}

fn has_user(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// Whether `url` may receive customers: an https URL without user info whose scheme, host and
/// port equal those of an `allowed` prefix and whose path is that prefix's path or below it,
/// segment by segment (`/x` allows `/x` and `/x/y`, never `/xyz`). Dot segments were already
/// resolved when the URL was parsed, so `/x/../admin` is `/admin`.
pub fn allows_return_url(allowed: &[Url], url: &Url) -> bool {
    url.scheme() == "https"
        && !has_user(url)
        && url.host().is_some()
        && allowed.iter().any(|prefix| {
            prefix.scheme() == url.scheme()
                && prefix.host() == url.host()
                && prefix.port_or_known_default() == url.port_or_known_default()
                && path_within(prefix.path(), url.path())
        })
}

fn path_within(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `return_url` with `consent=<name>&outcome=<outcome>` added to its own query. Parameters of
/// those names already there are dropped, so the app reads only the operator's.
pub fn outcome_url(return_url: &Url, consent: &str, outcome: ReturnOutcome) -> Url {
    let mut url = return_url.clone();
    let ours = |k: &str| k == CONSENT_PARAM || k == OUTCOME_PARAM;
    if url.query_pairs().any(|(k, _)| ours(&k)) {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !ours(k))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
    }
    url.query_pairs_mut()
        .append_pair(CONSENT_PARAM, consent)
        .append_pair(OUTCOME_PARAM, outcome.as_str());
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<Url> {
        list.iter()
            .map(|u| parse_return_url_prefix(u).unwrap())
            .collect()
    }

    fn allows(list: &[Url], candidate: &str) -> bool {
        allows_return_url(list, &Url::parse(candidate).unwrap())
    }

    #[test]
    fn a_host_prefix_allows_that_host_only() {
        let list = urls(&["https://app.example"]);
        assert!(allows(&list, "https://app.example"));
        assert!(allows(&list, "https://app.example/any/page?x=1#top"));
        assert!(allows(&list, "https://APP.example:443/x"));
        assert!(!allows(&list, "https://app.example.evil.io/"));
        assert!(!allows(&list, "https://evil.io/app.example"));
        assert!(!allows(&list, "https://evilapp.example/"));
        assert!(!allows(&list, "https://sub.app.example/"));
        assert!(!allows(&list, "http://app.example/"));
        assert!(!allows(&list, "https://app.example:8443/"));
        assert!(!allows(&list, "https://app.example@evil.io/"));
        assert!(!allows(&list, "https://user@app.example/"));
        assert!(!allows(&list, "https://app.example./"));
    }

    #[test]
    fn a_path_prefix_matches_whole_segments() {
        let list = urls(&["https://app.example/x", "https://other.example:8443/a/b/"]);
        assert!(allows(&list, "https://app.example/x"));
        assert!(allows(&list, "https://app.example/x/"));
        assert!(allows(&list, "https://app.example/x/y?z=1"));
        assert!(!allows(&list, "https://app.example/xyz"));
        assert!(!allows(&list, "https://app.example/"));
        assert!(!allows(&list, "https://app.example/y/x"));
        assert!(!allows(&list, "https://app.example/x/../admin"));
        assert!(!allows(&list, "https://app.example/x/%2e%2e/admin"));
        assert!(!allows(&list, "https://app.example/x%2F..%2Fadmin"));
        assert!(!allows(&list, "https://app.example/X"));
        assert!(allows(&list, "https://other.example:8443/a/b"));
        assert!(allows(&list, "https://other.example:8443/a/b/c"));
        assert!(!allows(&list, "https://other.example/a/b/c"));
        assert!(!allows(&list, "https://other.example:8443/a/bc"));
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        assert!(!allows(&[], "https://app.example/"));
    }

    #[test]
    fn prefixes_are_plain_https_urls() {
        assert!(parse_return_url_prefix("https://app.example/done/").is_ok());
        assert!(parse_return_url_prefix("https://10.0.0.1:8443/").is_ok());
        use ReturnUrlPrefixError::*;
        type Made = fn(String) -> ReturnUrlPrefixError;
        let refused: [(&str, Made); 6] = [
            ("app.example", Unparsable),
            ("http://app.example", NotHttps),
            ("https://u@app.example", NotAPrefix),
            ("https://app.example/?a=b", NotAPrefix),
            ("https://app.example/#x", NotAPrefix),
            ("https://a;b.example/", BadHost),
        ];
        for (raw, error) in refused {
            assert_eq!(
                parse_return_url_prefix(raw),
                Err(error(raw.into())),
                "{raw}"
            );
        }
        let flag = [" https://a.example/x ".to_string(), String::new()];
        assert_eq!(
            parse_return_url_prefixes(&flag).map(|l| l.len()),
            Ok(1),
            "empty entries are ignored"
        );
    }

    #[test]
    fn the_outcome_is_added_to_the_apps_own_query() {
        let url = |u: &str| Url::parse(u).unwrap();
        assert_eq!(
            outcome_url(
                &url("https://app.example/done"),
                "acme",
                ReturnOutcome::Authorised
            )
            .as_str(),
            "https://app.example/done?consent=acme&outcome=authorised"
        );
        assert_eq!(
            outcome_url(
                &url("https://app.example/done?tab=2&q=a%20b"),
                "acme",
                ReturnOutcome::Refused
            )
            .as_str(),
            "https://app.example/done?tab=2&q=a%20b&consent=acme&outcome=refused"
        );
        // The app's own fragment stays where it was; the operator adds none.
        assert_eq!(
            outcome_url(
                &url("https://app.example/#/consents"),
                "acme",
                ReturnOutcome::Failed
            )
            .as_str(),
            "https://app.example/?consent=acme&outcome=failed#/consents"
        );
        // Parameters of the operator's names are the operator's alone.
        assert_eq!(
            outcome_url(
                &url("https://app.example/?outcome=authorised&tab=2&consent=x"),
                "acme",
                ReturnOutcome::Failed
            )
            .as_str(),
            "https://app.example/?tab=2&consent=acme&outcome=failed"
        );
    }
}
