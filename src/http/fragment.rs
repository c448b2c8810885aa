//! The fragment page. Banks answering `response_type=code id_token` (the UK standard's default)
//! send the browser to `/callback#code=..&id_token=..&state=..`, and a fragment never reaches a
//! server. So `GET /callback` with no redirect parameter answers a small page whose script
//! (`GET /callback.js`, never inline) reads the fragment and posts it to `POST /callback`,
//! which admits it exactly like a query. Both answers forbid everything the page does not need.

use super::HttpState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use url::Url;

const PAGE: &str = include_str!("fragment.html");
const SCRIPT: &str = include_str!("fragment.js");

/// The page's Content-Security-Policy: the operator's own script only (no inline script, no
/// other resource, no framing, no `<base>`). The form may post to the operator only, plus the
/// origins of the allowed return URLs: browsers apply `form-action` to the redirect that
/// answers the post too, and that redirect goes to the consent's return URL.
pub(super) fn content_security_policy(allowed_return_urls: &[Url]) -> String {
    let mut form_action = vec!["'self'".to_string()];
    for origin in allowed_return_urls.iter().filter_map(source_expression) {
        if !form_action.contains(&origin) {
            form_action.push(origin);
        }
    }
    format!(
        "default-src 'none'; script-src 'self'; form-action {}; base-uri 'none'; frame-ancestors 'none'",
        form_action.join(" ")
    )
}

/// `https://host[:port]` of a URL, if it is safe to write into the policy (the prefixes were
/// checked at start-up; this keeps a separator out of the header whatever happens).
fn source_expression(url: &Url) -> Option<String> {
    let origin = url.origin().ascii_serialization();
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '.' | '-' | '_');
    (url.origin().is_tuple() && origin.chars().all(safe)).then_some(origin)
}

/// The headers of both answers: the policy, nothing cached (the page's URL carried a code), no
/// referrer (the same), no content-type guessing.
fn hardened(content_type: &'static str, allowed_return_urls: &[Url]) -> HeaderMap {
    let policy = HeaderValue::from_str(&content_security_policy(allowed_return_urls))
        .unwrap_or_else(|_| HeaderValue::from_static(STRICT_POLICY));
    HeaderMap::from_iter([
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CONTENT_SECURITY_POLICY, policy),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ])
}

/// The policy without return origins, should the computed one not be a header value.
const STRICT_POLICY: &str = "default-src 'none'; script-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The page that passes a fragment on (`GET /callback` without redirect parameters).
pub(super) fn page(state: &HttpState) -> Response {
    let allowed = &state.ctx.settings.allowed_return_urls;
    (
        StatusCode::OK,
        hardened("text/html; charset=utf-8", allowed),
        PAGE,
    )
        .into_response()
}

/// The page's script (`GET /callback.js`).
pub(super) async fn script(State(state): State<HttpState>) -> Response {
    let allowed = &state.ctx.settings.allowed_return_urls;
    (StatusCode::OK, hardened("text/javascript", allowed), SCRIPT).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_lets_the_form_reach_the_operator_and_the_allowed_apps_only() {
        assert_eq!(content_security_policy(&[]), STRICT_POLICY);
        let allowed: Vec<Url> = [
            "https://app.example/done",
            "https://app.example/other",
            "https://pay.example:8443/",
        ]
        .iter()
        .map(|u| u.parse().unwrap())
        .collect();
        assert_eq!(
            content_security_policy(&allowed),
            "default-src 'none'; script-src 'self'; form-action 'self' https://app.example https://pay.example:8443; base-uri 'none'; frame-ancestors 'none'"
        );
    }

    #[test]
    fn the_page_runs_no_inline_script() {
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert!(PAGE.contains("<script src=\"callback.js\" defer></script>"));
        // Inside every tag: no event handler, no style attribute.
        for tag in PAGE.split('<').filter_map(|t| t.split('>').next()) {
            assert!(!tag.contains(" on") && !tag.contains("style"), "<{tag}>");
        }
        assert!(SCRIPT.contains("location.hash") && SCRIPT.contains("form.submit()"));
    }
}
