//! The customer's decision on a pending authorisation: approval issues a code and an id_token,
//! refusal `access_denied`; either way the answer is the URL the browser is sent to.

use super::consents::{set_status, settle};
use super::idtoken::{self, About};
use super::{now, opaque, options, CodeGrant, ObAuthoriseOptions, ObRedirect, ResponseMode};
use crate::server::uuid_v4;
use crate::Shared;
use axum::http::StatusCode;

/// Why a decision could not be made: the status an admin route answers and a description.
pub(crate) type DecisionError = (StatusCode, String);

/// Applies the customer's decision on the consent's pending authorisation.
pub(crate) fn decide(
    shared: &Shared,
    consent_id: &str,
    approve: bool,
    o: &ObAuthoriseOptions,
) -> Result<ObRedirect, DecisionError> {
    let conflict = |m: String| Err((StatusCode::CONFLICT, m));
    let bank = options(shared);
    let (pending, code, customer_id, auth_time) = {
        let mut state = shared.state();
        let Some(consent) = settle(&mut state, consent_id) else {
            return Err((StatusCode::NOT_FOUND, "no such consent".into()));
        };
        if consent.status != "AwaitingAuthorisation" {
            return conflict(format!(
                "consent is {}, not AwaitingAuthorisation",
                consent.status
            ));
        }
        let Some(pending) = state.ob.pending.remove(consent_id) else {
            return conflict(
                "no pending authorisation: the customer has not brought a valid request \
                 object to /authorize"
                    .into(),
            );
        };
        if !approve {
            set_status(&mut state, consent_id, "Rejected");
            drop(state);
            let mode = o.response_mode.or(pending.response_mode);
            let params = [
                ("error", "access_denied"),
                ("state", pending.state.as_str()),
            ];
            return Ok(ObRedirect {
                url: redirect_url(
                    &pending.redirect_uri,
                    mode,
                    bank.response_mode_query,
                    &params,
                ),
                code: None,
                id_token: None,
                state: Some(pending.state),
                error: Some("access_denied".into()),
            });
        }
        let now = now(&state);
        let customer_id = o
            .customer_id
            .clone()
            .or(consent.customer_id)
            .unwrap_or_else(uuid_v4);
        if let Some(c) = state
            .consents
            .iter_mut()
            .find(|c| c.consent_id == consent_id)
        {
            c.customer_id = Some(customer_id.clone());
        }
        set_status(&mut state, consent_id, "Authorised");
        let code = opaque(32);
        let lifetime = i64::try_from(bank.code_lifetime_secs).unwrap_or(300);
        state.ob.codes.insert(
            code.clone(),
            CodeGrant {
                client_id: pending.client_id.clone(),
                consent_id: consent_id.to_string(),
                customer_id: customer_id.clone(),
                redirect_uri: pending.redirect_uri.clone(),
                scope: pending.scope.clone(),
                nonce: pending.nonce.clone(),
                state: pending.state.clone(),
                auth_time: now.as_second(),
                expires_at: now
                    .checked_add(jiff::SignedDuration::from_secs(lifetime))
                    .unwrap_or(now),
                id_token_fault: o.exchange_id_token_fault,
            },
        );
        (pending, code, customer_id, now.as_second())
    };
    let about = About {
        client_id: &pending.client_id,
        customer_id: &customer_id,
        consent_id,
        auth_time,
        nonce: Some(&pending.nonce),
        code: &code,
        state: &pending.state,
        hashes: true,
        access_token: None,
    };
    let Some(id_token) = idtoken::issue(shared, &about, o.id_token_fault) else {
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not sign the id_token".into(),
        ));
    };
    let mode = o.response_mode.or(pending.response_mode);
    let params = [
        ("code", code.as_str()),
        ("id_token", id_token.as_str()),
        ("state", pending.state.as_str()),
    ];
    Ok(ObRedirect {
        url: redirect_url(
            &pending.redirect_uri,
            mode,
            bank.response_mode_query,
            &params,
        ),
        code: Some(code),
        id_token: Some(id_token),
        state: Some(pending.state),
        error: None,
    })
}

/// `redirect_uri` with the parameters in the fragment or the query.
fn redirect_url(
    redirect_uri: &str,
    mode: Option<ResponseMode>,
    bank_prefers_query: bool,
    params: &[(&str, &str)],
) -> String {
    let encoded = serde_urlencoded::to_string(params).unwrap_or_default();
    let query = match mode {
        Some(m) => m == ResponseMode::Query,
        None => bank_prefers_query,
    };
    if !query {
        format!("{redirect_uri}#{encoded}")
    } else if redirect_uri.contains('?') {
        format!("{redirect_uri}&{encoded}")
    } else {
        format!("{redirect_uri}?{encoded}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_go_to_the_fragment_unless_query_is_asked_for() {
        let p = [("code", "a b"), ("state", "s")];
        assert_eq!(
            redirect_url("https://t/cb", None, false, &p),
            "https://t/cb#code=a+b&state=s"
        );
        assert_eq!(
            redirect_url("https://t/cb", None, true, &p),
            "https://t/cb?code=a+b&state=s"
        );
        let fragment = Some(ResponseMode::Fragment);
        assert_eq!(
            redirect_url("https://t/cb", fragment, true, &p),
            "https://t/cb#code=a+b&state=s"
        );
        let query = Some(ResponseMode::Query);
        assert_eq!(
            redirect_url("https://t/cb?x=1", query, false, &p),
            "https://t/cb?x=1&code=a+b&state=s"
        );
    }
}
