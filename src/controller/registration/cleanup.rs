//! The deletion phase: delete (or, with `deletionPolicy: Retain`, release) the Secrets the
//! operator wrote. The provider has no de-registration call.

use super::RegistrationRun;
use crate::api::DeletionPolicy;
use crate::controller::error::Result;
use kube::runtime::events::EventType;

/// Deletes or releases the registration's Secrets.
pub(super) async fn cleanup(run: &mut RegistrationRun<'_>) -> Result<()> {
    let obj = run.obj;
    let names = [
        obj.credentials_secret_name(),
        obj.token_secret_name(),
        obj.signing_key_secret_name(),
    ];
    let mut touched = Vec::new();
    for name in names {
        let done = match obj.spec.deletion_policy {
            DeletionPolicy::Delete => run.secrets.delete_owned(&name, &run.owner).await?,
            DeletionPolicy::Retain => run.secrets.release(&name, &run.owner).await?,
        };
        if done {
            touched.push(name);
        }
    }
    run.ctx.metrics.registration.forget(&run.labels());
    run.ctx
        .keys
        .forget(&run.namespace, &obj.signing_key_secret_name());
    if !touched.is_empty() {
        let verb = match obj.spec.deletion_policy {
            DeletionPolicy::Delete => "Deleted",
            DeletionPolicy::Retain => "Retained",
        };
        run.event(
            EventType::Normal,
            verb,
            "Cleanup",
            format!("{verb} Secrets {} on deletion.", touched.join(", ")),
        )
        .await;
    }
    Ok(())
}
