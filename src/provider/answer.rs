//! Reading the provider's answers as a hostile provider could send them: bounded sizes, tokens
//! that must be usable bearer tokens, JSON errors that never quote values, Retry-After in both
//! forms, and error details with the secrets that were sent redacted.

use super::{Endpoint, ProviderError, Sensitive};
use std::time::Duration;

/// Largest answer read from the provider: its answers are a few hundred bytes; a token of a few
/// KiB. Anything larger is a broken or hostile provider.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Largest access token accepted: it is written into Secrets and sent as a header.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Checks that a token can be sent verbatim as `Authorization: Bearer <token>`: RFC 6750's
/// b64token characters (so no space, CR or LF can split the header), and a sane length.
pub(super) fn check_bearer_token(
    endpoint: Endpoint,
    token: &Sensitive,
) -> Result<(), ProviderError> {
    let t = token.expose();
    let detail = if t.is_empty() {
        "access_token is empty"
    } else if t.len() > MAX_TOKEN_BYTES {
        "access_token is longer than 16 KiB"
    } else if !is_b64token(t) {
        "access_token has characters a bearer token cannot have (RFC 6750)"
    } else {
        return Ok(());
    };
    Err(ProviderError::InvalidToken { endpoint, detail })
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(
    endpoint: Endpoint,
    body: &[u8],
) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|e| ProviderError::Malformed {
        endpoint,
        // serde's messages name fields and positions, never values of strings.
        detail: format!(
            "{} at line {} column {}",
            classify_json_error(&e),
            e.line(),
            e.column()
        ),
    })
}

fn classify_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            // "missing field `ClientId`" names a field only; "invalid type: string \"...\"" would
            // quote a value, which may be a secret, so it is not repeated.
            let msg = e.to_string();
            let msg = msg.split(" at line").next().unwrap_or_default();
            if msg.starts_with("missing field") {
                msg.to_string()
            } else {
                "a field has an unexpected type or value".into()
            }
        }
        Category::Syntax => "not valid JSON".into(),
        Category::Eof => "truncated JSON".into(),
        Category::Io => "I/O error".into(),
    }
}

/// Retry-After as delta-seconds or as an HTTP date (then counted from now).
pub(super) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = at.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// The OAuth error code of a JSON error body (RFC 6749 5.2): a short token of the codes'
/// alphabet, never free text, so it may be compared and shown as is.
pub(super) fn oauth_error(body: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = json.get("error")?.as_str()?;
    let plain = !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    plain.then(|| code.to_string())
}

/// The provider's error message from a JSON body, short, with any secret we sent redacted.
pub(super) fn error_detail(body: &[u8], secrets: &[&str]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = [
        "error_description",
        "message",
        "Message",
        "error",
        "title",
        "statusMessage",
    ]
    .iter()
    .find_map(|k| {
        json.get(*k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.trim().is_empty())
    })?;
    // Redacted whole, then shortened: a secret straddling the cut would otherwise leave its
    // start behind. Control characters go first, so none can hide a secret from the redaction.
    let mut text: String = text.chars().filter(|c| !c.is_control()).collect();
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        text = text.replace(secret, "[redacted]");
    }
    Some(text.chars().take(200).collect())
}

pub(super) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{RegistrationResponse, TokenResponse};

    #[test]
    fn bearer_tokens_are_checked() {
        let ok = |t: &str| check_bearer_token(Endpoint::ClientToken, &Sensitive::new(t)).is_ok();
        assert!(ok(crate::provider::token::SAMPLE));
        assert!(ok("abc+/~_-.=="));
        assert!(!ok(""));
        assert!(!ok("abc\r\nX-Injected: 1"));
        assert!(!ok("a b"));
        assert!(!ok("=="));
        assert!(!ok(&"a".repeat(MAX_TOKEN_BYTES + 1)));
    }

    #[test]
    fn error_detail_redacts_sent_secrets_and_ignores_non_json() {
        let body = br#"{"message":"certificate Adaobi@ is not valid"}"#;
        assert_eq!(
            error_detail(body, &["Adaobi@"]).as_deref(),
            Some("certificate [redacted] is not valid")
        );
        assert_eq!(
            error_detail(b"<html>password=Adaobi@</html>", &["Adaobi@"]),
            None
        );
    }

    #[test]
    fn a_secret_straddling_the_cut_leaves_nothing_behind() {
        // The secret starts at character 195 of the message: cut first, its first five
        // characters would have stayed in status.
        let secret = "s3cr3t-password-value";
        let message = format!("{}{secret} rejected", "x".repeat(195));
        let body = serde_json::json!({ "message": message }).to_string();
        let detail = error_detail(body.as_bytes(), &[secret]).expect("detail");
        assert!(!detail.contains("s3cr3"), "{detail}");
        assert!(
            detail.chars().count() == 200 && detail.ends_with("[reda"),
            "{detail}"
        );
        // A control character inside the echoed secret does not hide it from the redaction.
        let body = serde_json::json!({ "message": "bad s3cr3t-\u{1}password-value" }).to_string();
        let detail = error_detail(body.as_bytes(), &[secret]).expect("detail");
        assert!(!detail.contains("password-value"), "{detail}");
    }

    #[test]
    fn oauth_error_codes_are_read_and_nothing_else() {
        assert_eq!(
            oauth_error(br#"{"error": "invalid_grant", "error_description": "expired"}"#)
                .as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(
            oauth_error(br#"{"error": "Refresh token abc123 expired"}"#),
            None
        );
        assert_eq!(oauth_error(br#"{"error": {"code": 1}}"#), None);
        assert_eq!(oauth_error(b"invalid_grant"), None);
    }

    #[test]
    fn classification() {
        let status = |s| ProviderError::Status {
            endpoint: Endpoint::ClientToken,
            status: s,
            retry_after: None,
            detail: None,
            oauth_error: None,
        };
        assert!(status(503).is_transient());
        assert!(status(429).is_transient());
        assert!(!status(401).is_transient());
        assert!(!status(400).is_transient());
        assert!(!status(500).outcome_unknown());
        let timeout = ProviderError::Timeout {
            endpoint: Endpoint::Registration,
            timeout: Duration::from_secs(1),
        };
        assert!(timeout.is_transient() && timeout.outcome_unknown());
        let connect = ProviderError::Connect {
            endpoint: Endpoint::Registration,
            detail: "refused".into(),
        };
        assert!(connect.is_transient() && !connect.outcome_unknown());
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        // A date in the past means now; a future one, the time until then.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120);
        let header =
            jiff::fmt::rfc2822::to_string(&later.to_zoned(jiff::tz::TimeZone::UTC)).unwrap();
        let wait = parse_retry_after(&header).unwrap();
        assert!(
            wait > Duration::from_secs(110) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn malformed_messages_carry_no_values() {
        let err = parse::<RegistrationResponse>(
            Endpoint::Registration,
            br#"{"Certificate":"s3cret-value","Message":"OK"}"#,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("ClientId"), "{text}");
        assert!(!text.contains("s3cret-value"), "{text}");
        let err = parse::<TokenResponse>(
            Endpoint::ClientToken,
            br#"{"access_token":"tok","expires_in":"s3cret-value"}"#,
        )
        .unwrap_err();
        assert!(!err.to_string().contains("s3cret-value"), "{err}");
    }
}
