//! The deletion phase: revoke a live consent at the provider (`deletionPolicy: Delete`), then
//! delete or release the Secrets written for it.

use super::registration_view::RegistrationGate;
use super::ConsentRun;
use crate::api::{reason, ConsentStatus, DeletionPolicy};
use crate::controller::error::{Error, Result};
use kube::runtime::events::EventType;

/// Revokes (policy Delete) and then deletes or releases the consent's Secrets.
pub(super) async fn cleanup(run: &mut ConsentRun<'_>) -> Result<()> {
    run.ctx.consent_polls.forget(&run.uid);
    let delete = run.obj.spec.deletion_policy == DeletionPolicy::Delete;
    let live = run
        .status
        .consent_status
        .as_ref()
        .is_some_and(|s| !s.is_final());
    if let (true, true, Some(consent_id)) = (delete, live, run.status.consent_id.clone()) {
        revoke(run, &consent_id).await?;
    }
    let handoff = run.obj.authorisation_secret_name();
    run.secrets.delete_owned(&handoff, &run.owner).await?;
    let token = run.obj.token_secret_name();
    let refresh = run.obj.refresh_token_secret_name();
    let done = if delete {
        run.secrets.delete_owned(&refresh, &run.owner).await?;
        run.secrets.delete_owned(&token, &run.owner).await?
    } else {
        run.secrets.release(&refresh, &run.owner).await?;
        run.secrets.release(&token, &run.owner).await?
    };
    run.ctx.metrics.consent.forget(&run.labels());
    if done {
        let verb = if delete { "Deleted" } else { "Retained" };
        run.event(
            EventType::Normal,
            verb,
            "Cleanup",
            format!("{verb} Secret {token} on deletion."),
        )
        .await;
    }
    Ok(())
}

/// Revokes a live consent. Transient failures fail the clean-up so it is retried (the consent
/// must not outlive its object at the provider); a provider without DELETE, or without a
/// usable registration, is reported and the deletion goes on.
async fn revoke(run: &mut ConsentRun<'_>, consent_id: &str) -> Result<()> {
    let gate = RegistrationGate::check(
        run.ctx,
        &run.namespace,
        &run.obj.spec.registration_ref.name,
        run.now,
    )
    .await?;
    let registration = match gate {
        RegistrationGate::Open(r) => r,
        RegistrationGate::Closed(outcome) => {
            skipped(run, format!("Consent {consent_id} was not revoked at the provider: {} Revoke it in the provider's portal if it matters.", outcome.message)).await;
            return Ok(());
        }
    };
    let Some(token) = registration.client_token(run.ctx).await? else {
        skipped(
            run,
            format!("Consent {consent_id} was not revoked: the registration has no client token."),
        )
        .await;
        return Ok(());
    };
    match run
        .ctx
        .provider
        .delete_consent(registration.target(), &token, consent_id)
        .await
    {
        Ok(()) => {
            // Recorded at once, so a clean-up that has to run again does not revoke twice.
            run.status.consent_status = Some(ConsentStatus::Revoked);
            run.end_authorisation();
            run.persist().await?;
            run.event(
                EventType::Normal,
                reason::REVOKED,
                "Revoke",
                format!("Revoked consent {consent_id} at the provider."),
            )
            .await;
            Ok(())
        }
        Err(e) if matches!(e.status(), Some(404 | 405)) => {
            run.event(
                EventType::Warning,
                "RevocationUnsupported",
                "Revoke",
                format!("The provider does not offer DELETE on consents ({e}); consent {consent_id} stays until it expires or the customer revokes it."),
            )
            .await;
            Ok(())
        }
        Err(e) if e.is_transient() => Err(Error::Revocation {
            consent_id: consent_id.to_string(),
            source: e,
        }),
        Err(e) => {
            run.event(
                EventType::Warning,
                "RevocationFailed",
                "Revoke",
                format!("The provider refused to revoke consent {consent_id}: {e}."),
            )
            .await;
            Ok(())
        }
    }
}

async fn skipped(run: &ConsentRun<'_>, note: String) {
    run.event(EventType::Warning, "RevocationSkipped", "Revoke", note)
        .await;
}
