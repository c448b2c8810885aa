//! Client authentication at the token endpoint: `client_secret_basic` and
//! `client_secret_post`. `private_key_jwt` and `tls_client_auth` are advertised by discovery
//! but not served yet.

use super::{OAuthError, ObClient};
use crate::Shared;
use axum::http::{header, HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::collections::HashMap;

/// Adds or replaces a client.
pub(crate) fn add(shared: &Shared, client: ObClient) {
    shared
        .state()
        .ob
        .clients
        .insert(client.client_id.clone(), client);
}

/// `(id, secret)` of an `Authorization: Basic` header; `Err` when the header is there but
/// unreadable. RFC 6749 (2.3.1) form-encodes both before base64: accept them either way.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ()> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| ())?;
    let decoded = String::from_utf8(decoded).map_err(|_| ())?;
    let (id, secret) = decoded.split_once(':').ok_or(())?;
    Ok(Some((id.to_string(), secret.to_string())))
}

/// Undoes `application/x-www-form-urlencoded` encoding of one value.
fn form_decoded(s: &str) -> String {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
        .ok()
        .and_then(|mut v| v.pop())
        .map(|(_, v)| v)
        .unwrap_or_else(|| s.to_string())
}

/// The authenticated client, or the 401/400 to answer.
pub(crate) fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<ObClient, OAuthError> {
    let invalid = OAuthError::invalid_client;
    if form.contains_key("client_assertion") || form.contains_key("client_assertion_type") {
        return Err(invalid(
            false,
            "private_key_jwt is not supported by this fake yet",
        ));
    }
    let basic = basic_credentials(headers)
        .map_err(|_| invalid(true, "unreadable Authorization: Basic header"))?;
    let (id, secrets) = match basic {
        Some((id, secret)) => {
            if form.contains_key("client_secret") {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "more than one client authentication method",
                ));
            }
            if form
                .get("client_id")
                .is_some_and(|f| *f != form_decoded(&id))
            {
                return Err(invalid(
                    true,
                    "client_id differs from the Basic credentials",
                ));
            }
            let decoded = (form_decoded(&id), form_decoded(&secret));
            let candidates = vec![(id, secret), decoded];
            let known = {
                let state = shared.state();
                candidates.into_iter().find_map(|(id, secret)| {
                    state
                        .ob
                        .clients
                        .get(&id)
                        .filter(|c| c.client_secret == secret)
                        .cloned()
                })
            };
            return known.ok_or_else(|| invalid(true, "unknown client or wrong secret"));
        }
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned(),
        ),
    };
    let Some(secret) = secrets else {
        return Err(invalid(false, "no client authentication"));
    };
    shared
        .state()
        .ob
        .clients
        .get(&id)
        .filter(|c| c.client_secret == secret)
        .cloned()
        .ok_or_else(|| invalid(false, "unknown client or wrong secret"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read_and_form_decoded() {
        let mut headers = HeaderMap::new();
        let encoded = STANDARD.encode("my%20client:s%3Acret");
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {encoded}").parse().unwrap(),
        );
        let (id, secret) = basic_credentials(&headers).unwrap().unwrap();
        assert_eq!(
            (form_decoded(&id), form_decoded(&secret)),
            ("my client".into(), "s:cret".into())
        );
        headers.insert(header::AUTHORIZATION, "Basic !!".parse().unwrap());
        assert!(basic_credentials(&headers).is_err());
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert!(basic_credentials(&headers).is_err());
        assert_eq!(basic_credentials(&HeaderMap::new()), Ok(None));
    }
}
