//! The `Ready` condition and the reasons a user can search for.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Type of the condition that says whether the object does its job.
pub const READY: &str = "Ready";

/// Reasons used in the `Ready` condition and in events.
pub mod reason {
    /// Registration and a valid client token are in place.
    pub const TOKEN_REFRESHED: &str = "TokenRefreshed";
    /// Registration done (or adopted); no token yet.
    pub const REGISTERED: &str = "Registered";
    /// Work in progress on first reconcile.
    pub const PROGRESSING: &str = "Progressing";
    /// The provider failed transiently; the operator is retrying.
    pub const PROVIDER_UNAVAILABLE: &str = "ProviderUnavailable";
    /// The token is still valid but refreshing it failed; retrying.
    pub const REFRESH_FAILING: &str = "RefreshFailing";
    /// The referenced signature-certificate Secret or key is missing or empty.
    pub const INVALID_SIGNATURE_CERTIFICATE: &str = "InvalidSignatureCertificate";
    /// The provider refused the registration request.
    pub const REGISTRATION_REJECTED: &str = "RegistrationRejected";
    /// A registration call may have reached the provider but its result was not saved.
    pub const REGISTRATION_UNCONFIRMED: &str = "RegistrationUnconfirmed";
    /// The credentials Secret disappeared after registration.
    pub const CREDENTIALS_LOST: &str = "CredentialsLost";
    /// The credentials Secret exists but lacks `client_id` or `certificate`.
    pub const INVALID_CREDENTIALS_SECRET: &str = "InvalidCredentialsSecret";
    /// The provider rejected the client id or certificate at the token endpoint.
    pub const INVALID_CLIENT_CREDENTIALS: &str = "InvalidClientCredentials";
    /// A Secret the operator must write exists and belongs to someone else.
    pub const SECRET_CONFLICT: &str = "SecretConflict";
    /// The provider URL is not usable.
    pub const INVALID_PROVIDER_URL: &str = "InvalidProviderURL";
    /// The provider refused the token request for another reason than the credentials.
    pub const TOKEN_REQUEST_REJECTED: &str = "TokenRequestRejected";
    /// The token expired and no new one could be obtained yet.
    pub const TOKEN_EXPIRED: &str = "TokenExpired";

    /// The signing key Secret is missing, malformed or too weak.
    pub const INVALID_SIGNING_KEY: &str = "InvalidSigningKey";

    /// The consent's TppRegistration does not exist or is not Ready yet.
    pub const REGISTRATION_NOT_READY: &str = "RegistrationNotReady";
    /// The consent exists at the provider and waits for the customer.
    pub const AWAITING_AUTHORISATION: &str = "AwaitingAuthorisation";
    /// The customer authorised the consent; the customer token Secret is usable.
    pub const AUTHORISED: &str = "Authorised";
    /// The customer (or the provider) rejected the consent.
    pub const REJECTED: &str = "Rejected";
    /// The consent was revoked at the provider.
    pub const REVOKED: &str = "Revoked";
    /// The consent passed its ExpirationDateTime.
    pub const EXPIRED: &str = "Expired";
    /// The customer token expired; no refresh token exists, so the customer must authorise again.
    pub const REAUTHORISATION_REQUIRED: &str = "ReauthorisationRequired";
    /// A consent-creation call may have reached the provider but its result was not saved.
    pub const CONSENT_CREATION_UNCONFIRMED: &str = "ConsentCreationUnconfirmed";
    /// The provider refused to create the consent.
    pub const CONSENT_REJECTED_BY_PROVIDER: &str = "ConsentRequestRejected";
    /// The provider refused the client token even after a refresh.
    pub const CLIENT_TOKEN_REJECTED: &str = "ClientTokenRejected";
    /// The authorisation code could not be exchanged for a customer token.
    pub const AUTHORISATION_CODE_REJECTED: &str = "AuthorisationCodeRejected";
    /// The customer authorised at the provider but no authorisation code reached the operator.
    pub const AWAITING_AUTHORISATION_CODE: &str = "AwaitingAuthorisationCode";

    /// The provider issued a token that had expired on arrival (clock skew, nonsense lifetime).
    pub const TOKEN_EXPIRED_ON_ARRIVAL: &str = "TokenExpiredOnArrival";
    /// The provider answered with a redirect, which is never followed.
    pub const PROVIDER_REDIRECTED: &str = "ProviderRedirected";
    /// The provider URL is not among those the platform team allows.
    pub const PROVIDER_NOT_ALLOWED: &str = "ProviderNotAllowed";
    /// A Secret named in the spec belongs to another object of this operator.
    pub const SECRET_NOT_ALLOWED: &str = "SecretNotAllowed";
    /// `spec.secretTemplate` sets a label or annotation key the platform team does not allow on
    /// the operator's Secrets (a replicator's, say): no Secret is written until it is removed.
    pub const SECRET_TEMPLATE_NOT_ALLOWED: &str = "SecretTemplateNotAllowed";
    /// The customer's browser came back with a refusal the provider did not confirm: not
    /// final, a new authorisation URL is published.
    pub const AUTHORISATION_REFUSED: &str = "AuthorisationRefused";
    /// The provider registers clients in a way this operator does not (yet): adopt credentials.
    pub const REGISTRATION_NOT_SUPPORTED: &str = "RegistrationNotSupported";
    /// A ClusterProvider is ready to be used.
    pub const PROVIDER_READY: &str = "ProviderReady";
    /// A ClusterProvider's spec cannot be used as it is (a bad URL or CA bundle).
    pub const PROVIDER_MISCONFIGURED: &str = "ProviderMisconfigured";
    /// The ClusterProvider of a registration points elsewhere than where it registered.
    pub const PROVIDER_CHANGED: &str = "ProviderChanged";
    /// The authorisation that came back was issued for another consent, or its id token
    /// does not match this authorisation.
    pub const AUTHORISATION_MISMATCH: &str = "AuthorisationMismatch";
    /// The consent's `spec.returnUrl` is not among the return URLs the platform team allows:
    /// the consent is not created until it is.
    pub const RETURN_URL_NOT_ALLOWED: &str = "ReturnUrlNotAllowed";

    /// The operator failed unexpectedly on this object (a bug); it retries.
    pub const INTERNAL_ERROR: &str = "InternalError";

    /// Every reason above.
    pub const ALL: &[&str] = &[
        TOKEN_REFRESHED,
        REGISTERED,
        PROGRESSING,
        PROVIDER_UNAVAILABLE,
        REFRESH_FAILING,
        INVALID_SIGNATURE_CERTIFICATE,
        REGISTRATION_REJECTED,
        REGISTRATION_UNCONFIRMED,
        CREDENTIALS_LOST,
        INVALID_CREDENTIALS_SECRET,
        INVALID_CLIENT_CREDENTIALS,
        SECRET_CONFLICT,
        INVALID_PROVIDER_URL,
        TOKEN_REQUEST_REJECTED,
        TOKEN_EXPIRED,
        INVALID_SIGNING_KEY,
        REGISTRATION_NOT_READY,
        AWAITING_AUTHORISATION,
        AUTHORISED,
        REJECTED,
        REVOKED,
        EXPIRED,
        REAUTHORISATION_REQUIRED,
        CONSENT_CREATION_UNCONFIRMED,
        CONSENT_REJECTED_BY_PROVIDER,
        CLIENT_TOKEN_REJECTED,
        AUTHORISATION_CODE_REJECTED,
        AWAITING_AUTHORISATION_CODE,
        INTERNAL_ERROR,
        TOKEN_EXPIRED_ON_ARRIVAL,
        PROVIDER_NOT_ALLOWED,
        PROVIDER_REDIRECTED,
        SECRET_NOT_ALLOWED,
        SECRET_TEMPLATE_NOT_ALLOWED,
        AUTHORISATION_REFUSED,
        REGISTRATION_NOT_SUPPORTED,
        PROVIDER_READY,
        PROVIDER_MISCONFIGURED,
        PROVIDER_CHANGED,
        AUTHORISATION_MISMATCH,
        RETURN_URL_NOT_ALLOWED,
    ];
}

/// Builds a condition; `lastTransitionTime` is carried over when the status does not change so
/// that status writes stay rare and the time tells when the state really changed.
pub fn condition(
    previous: Option<&Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    observed_generation: Option<i64>,
    now: jiff::Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(now),
    };
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation,
        last_transition_time,
    }
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let t0 = jiff::Timestamp::from_second(1_000).unwrap();
        let t1 = jiff::Timestamp::from_second(2_000).unwrap();
        let first = condition(None, READY, true, "A", "m".into(), Some(1), t0);
        let same = condition(Some(&first), READY, true, "B", "n".into(), Some(2), t1);
        assert_eq!(same.last_transition_time, Time(t0));
        let flipped = condition(Some(&same), READY, false, "C", "o".into(), Some(2), t1);
        assert_eq!(flipped.last_transition_time, Time(t1));
    }
}
