//! The consent's return URL (`spec.returnUrl`), checked against the platform team's list before
//! the consent is created at the provider: a tenant cannot make the operator's callback send
//! customers to a page the platform did not approve, and a consent that would is never created.

use super::ConsentRun;
use crate::api::contract::allows_return_url;
use crate::api::reason;
use crate::controller::report::Outcome;
use url::Url;

impl ConsentRun<'_> {
    /// Ready=False, reason `ReturnUrlNotAllowed`, when `spec.returnUrl` is set and not allowed.
    /// Nothing to wait for: the list changes only with the operator's flags (a restart
    /// reconciles everything), and the spec field cannot change.
    pub(super) fn return_url_refused(&self) -> Option<Outcome> {
        let raw = self.obj.spec.return_url.as_deref()?;
        let allowed = &self.ctx.settings.allowed_return_urls;
        if Url::parse(raw).is_ok_and(|url| allows_return_url(allowed, &url)) {
            return None;
        }
        let list = if allowed.is_empty() {
            "none is allowed".to_string()
        } else {
            let prefixes: Vec<&str> = allowed.iter().map(Url::as_str).collect();
            format!("allowed: {}", prefixes.join(", "))
        };
        Some(Outcome::failed(
            reason::RETURN_URL_NOT_ALLOWED,
            format!(
                "spec.returnUrl {raw} does not start with a return URL the platform team allows ({list}), so the consent is not created at the provider. Ask the platform team to allow it (Helm value returnUrls, flag --allowed-return-url), or remove spec.returnUrl: it cannot change after creation, so delete this AccountConsent and create it again without it."
            ),
            None,
        ))
    }
}
