//! The reconcile frame both kinds run in: a fresh read, the finalizer, the phases of the kind,
//! the failure bookkeeping, the status written only when it changed, events and metrics, and a
//! panic turned into a failed reconcile instead of a dead process.

use super::error::{Error, Halt, Result, Step};
use super::report::{set_ready, truncate, unchanged, Outcome};
use super::schedule::{backoff, ceil_second, FailureKind};
use super::time::{add, wait_until};
use super::Context;
use crate::api::{contract::rfc3339, reason, SecretTemplate, FINALIZER};
use crate::secrets::{Owner, Secrets, FIELD_MANAGER};
use crate::telemetry::ObjectLabels;
use futures::FutureExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{finalizer, Error as FinalizerError, Event as FinalizerEvent};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

/// The kind under which Secret writes are recorded in `OwnWrites`.
pub(crate) const SECRET: &str = "Secret";

/// The failure bookkeeping fields of a kind's status.
pub(crate) struct FailureFields<'a> {
    /// Failures in a row.
    pub count: &'a mut u32,
    /// When the next attempt is due.
    pub next_at: &'a mut Option<Time>,
    /// The last failure, for humans.
    pub last: &'a mut Option<String>,
}

/// A kind the frame can reconcile: where its status parts are and what its phases are.
pub(crate) trait Reconciled:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The status type.
    type Status: Serialize + PartialEq + Clone + Default + Debug + Send + Sync;
    /// The kind's name in metrics and logs.
    const KIND: &'static str;
    /// The label naming the owner on the Secrets written for it.
    const OWNER_LABEL: &'static str;
    /// Longest wait between two looks at an object.
    const MAX_REQUEUE: Duration = Duration::from_secs(3600);

    /// The stored status.
    fn status(&self) -> Option<&Self::Status>;
    /// Labels and annotations for the Secrets written for it.
    fn secret_template(&self) -> Option<&SecretTemplate>;
    /// The Secrets the operator may have written for it, for metadata updates.
    fn secret_names(&self) -> Vec<String>;
    /// The generation its status describes.
    fn observed_generation(status: &Self::Status) -> Option<i64>;
    /// Its conditions.
    fn conditions(status: &Self::Status) -> &[Condition];
    /// Its conditions, to change them.
    fn conditions_mut(status: &mut Self::Status) -> &mut Vec<Condition>;
    /// Records the generation the status describes.
    fn observe_generation(status: &mut Self::Status, generation: Option<i64>);
    /// Its failure bookkeeping.
    fn failure_fields(status: &mut Self::Status) -> FailureFields<'_>;
    /// The kind's phases; the outcome is what the Ready condition will say.
    fn apply(run: &mut Run<'_, Self>) -> impl Future<Output = Step<Outcome>> + Send;
    /// Clean-up before deletion; an error keeps the finalizer and is retried.
    fn cleanup(run: &mut Run<'_, Self>) -> impl Future<Output = Result<()>> + Send;
    /// Whether an outcome's event is published, given whether Ready changed.
    fn publish(outcome: &Outcome, changed: bool) -> bool;
    /// Sets the kind's per-object metrics after a reconcile.
    fn record(run: &Run<'_, Self>, outcome: &Outcome);
}

/// Reconciles one object of kind `K`. Never lets a panic out: it becomes `Error::Panicked`, a
/// Ready=False condition and a metric, and the controller retries the object later.
#[tracing::instrument(skip_all, fields(
    kind = K::KIND,
    namespace = obj.meta().namespace.as_deref().unwrap_or_default(),
    name = obj.meta().name.as_deref().unwrap_or_default(),
))]
pub(crate) async fn reconcile<K: Reconciled>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let measure = ctx.metrics.reconcile.measure(K::KIND);
    let result = unwind_safe(with_finalizer(obj.clone(), &ctx)).await;
    if let Err(Error::Panicked) = &result {
        tracing::error!("reconcile panicked; reported in the object's Ready condition");
        report_panic(&*obj, &ctx).await;
    }
    measure.finish(match &result {
        Ok(_) => "success",
        Err(e) => e.metric_label(),
    });
    result
}

/// Runs a reconcile future, turning a panic into `Error::Panicked`.
async fn unwind_safe(reconcile: impl Future<Output = Result<Action>>) -> Result<Action> {
    AssertUnwindSafe(reconcile)
        .catch_unwind()
        .await
        .unwrap_or(Err(Error::Panicked))
}

async fn with_finalizer<K: Reconciled>(obj: Arc<K>, ctx: &Context) -> Result<Action> {
    let namespace = obj.namespace().ok_or(Error::Incomplete("namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            FinalizerEvent::Apply(cached) => apply(&api, &cached, ctx).await,
            FinalizerEvent::Cleanup(cached) => cleanup(&api, &cached, ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    })
}

/// The watch cache can lag behind this operator's own status writes; acting on a stale status
/// would call the provider twice (a second registration, consent or revocation). A fresh read
/// sees every write made so far; it is skipped when the cached object is exactly what this
/// process wrote last (then nothing can be newer but someone else's write, which changes the
/// version).
async fn fresh<K: Reconciled>(api: &Api<K>, cached: &K, ctx: &Context) -> Result<Option<K>> {
    if ctx.own_writes.is_own(K::KIND, cached) {
        return Ok(Some(cached.clone()));
    }
    Ok(api.get_opt(&cached.name_any()).await?)
}

async fn apply<K: Reconciled>(api: &Api<K>, cached: &K, ctx: &Context) -> Result<Action> {
    let Some(obj) = fresh(api, cached, ctx).await? else {
        return Ok(Action::await_change());
    };
    let mut run = Run::new(&obj, ctx, api.clone())?;
    if let Some(refused) = template_refused(&obj, ctx) {
        // Nothing is written while the template asks for a key the platform does not allow:
        // every Secret the operator writes carries the template.
        return run.finish(refused).await;
    }
    let observed = K::observed_generation(&run.written);
    if observed.is_some() && obj.meta().generation != observed {
        // The spec changed; its secretTemplate may have: the Secrets follow at once.
        for name in obj.secret_names() {
            run.secrets.refresh_metadata(&name, &run.owner).await?;
        }
    }
    let outcome = match K::apply(&mut run).await {
        Ok(outcome) | Err(Halt::Report(outcome)) => outcome,
        Err(Halt::Fail(e)) => return Err(e),
    };
    run.finish(outcome).await
}

/// The outcome of an object whose `spec.secretTemplate` sets a key the platform team does
/// not allow, if it does.
fn template_refused<K: Reconciled>(obj: &K, ctx: &Context) -> Option<Outcome> {
    let policy = &ctx.settings.template_policy;
    let (what, key) = policy.refused(obj.secret_template()?)?;
    Some(Outcome::failed(
        reason::SECRET_TEMPLATE_NOT_ALLOWED,
        format!(
            "spec.secretTemplate sets the {what} {key:?}, which this operator does not put on the Secrets it writes (the platform team decides which keys are allowed: replicators' keys such as Reflector's or kubed's would copy these Secrets into other namespaces). Remove it; no Secret is written until then."
        ),
        None,
    ))
}

async fn cleanup<K: Reconciled>(api: &Api<K>, cached: &K, ctx: &Context) -> Result<Action> {
    if let Some(obj) = fresh(api, cached, ctx).await? {
        let mut run = Run::new(&obj, ctx, api.clone())?;
        K::cleanup(&mut run).await?;
        let writes = &ctx.own_writes;
        writes.forget(K::KIND, &run.namespace, &run.name);
        for name in obj.secret_names() {
            writes.forget(SECRET, &run.namespace, &name);
        }
    }
    Ok(Action::await_change())
}

/// Best effort: a Ready=False condition saying the operator failed on this object.
async fn report_panic<K: Reconciled>(obj: &K, ctx: &Context) {
    let Some(namespace) = obj.namespace() else {
        return;
    };
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let Ok(Some(obj)) = api.get_opt(&obj.name_any()).await else {
        return;
    };
    let Ok(run) = Run::new(&obj, ctx, api) else {
        return;
    };
    let outcome = Outcome::failed(
        reason::INTERNAL_ERROR,
        "The operator failed unexpectedly while reconciling this object (a bug: its log names where). It tries again in a few seconds; other objects are not affected.".into(),
        None,
    );
    if let Err(e) = run.finish(outcome).await {
        tracing::warn!(error = %e, "could not report the failure in status");
    }
}

/// One reconcile of one object: what it reads, what it has written, and what it is building.
pub(crate) struct Run<'a, K: Reconciled> {
    /// The object, freshly read.
    pub obj: &'a K,
    /// The shared context.
    pub ctx: &'a Context,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its uid.
    pub uid: String,
    /// Secrets of its namespace.
    pub secrets: Secrets,
    /// The owner of the Secrets written for it.
    pub owner: Owner,
    /// Status as last written (or as read).
    pub written: K::Status,
    /// Status being built.
    pub status: K::Status,
    /// The time this reconcile acts at.
    pub now: Timestamp,
    api: Api<K>,
}

impl<'a, K: Reconciled> Run<'a, K> {
    fn new(obj: &'a K, ctx: &'a Context, api: Api<K>) -> Result<Self> {
        let namespace = obj.namespace().ok_or(Error::Incomplete("namespace"))?;
        let uid = obj.uid().ok_or(Error::Incomplete("uid"))?;
        let reference = obj
            .controller_owner_ref(&())
            .ok_or(Error::Incomplete("uid"))?;
        let name = obj.name_any();
        let written = obj.status().cloned().unwrap_or_default();
        Ok(Run {
            obj,
            ctx,
            secrets: ctx.secrets(&namespace),
            owner: Owner {
                label: K::OWNER_LABEL,
                name: name.clone(),
                reference,
                template: obj.secret_template().cloned().unwrap_or_default(),
            },
            status: written.clone(),
            written,
            name,
            namespace,
            uid,
            now: ctx.clock.now(),
            api,
        })
    }

    /// The value of one of the object's annotations.
    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.obj
            .meta()
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    /// Labels of the object's metrics.
    pub fn labels(&self) -> ObjectLabels {
        ObjectLabels {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// The stored Ready condition as an outcome without an event (nothing changed).
    pub fn unchanged(&self, next: Option<Timestamp>) -> Outcome {
        unchanged(K::conditions(&self.written), next)
    }

    /// A provider call this operator held back for `wait` (a 429 pause, a full queue: see
    /// `ProviderError::Throttled`): nothing failed and nothing is reported; the object is looked
    /// at again once the call may go.
    pub fn deferred(&self, wait: Duration) -> Outcome {
        let next = ceil_second(add(self.ctx.clock.now(), wait));
        self.unchanged(Some(next))
    }

    /// Records a failure: the count, the backoff, the message; returns the Ready=False outcome.
    pub fn failure(
        &mut self,
        reason: &'static str,
        message: String,
        kind: FailureKind,
        retry_after: Option<Duration>,
    ) -> Outcome {
        self.failure_after(reason, message, |failures| {
            backoff(failures, kind, retry_after, rand::random_range(0.0..=1.0))
        })
    }

    /// Records a failure whose retry delay (given the failure count) the caller decides.
    pub fn failure_after(
        &mut self,
        reason: &'static str,
        message: String,
        delay: impl FnOnce(u32) -> Duration,
    ) -> Outcome {
        // Counted from now, not from the start of the reconcile: a Retry-After is relative to
        // the answer, which came after the call's latency.
        let now = self.ctx.clock.now();
        let fields = K::failure_fields(&mut self.status);
        *fields.count = fields.count.saturating_add(1);
        let next = ceil_second(add(now, delay(*fields.count)));
        *fields.next_at = Some(Time(next));
        *fields.last = Some(message.clone());
        let message = format!(
            "{message} Attempt {} failed; next attempt at {}.",
            fields.count,
            rfc3339(next)
        );
        Outcome::failed(reason, message, Some(next))
    }

    /// Clears the failure bookkeeping after a success.
    pub fn succeeded(&mut self) {
        let fields = K::failure_fields(&mut self.status);
        *fields.count = 0;
        *fields.last = None;
    }

    /// Writes the status with server-side apply, only when it differs from what is stored, so
    /// that status writes stay rare.
    pub async fn persist(&mut self) -> Result<()> {
        if self.status == self.written {
            return Ok(());
        }
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": self.status,
        });
        let written = self
            .api
            .patch_status(
                &self.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(patch),
            )
            .await?;
        self.ctx.own_writes.record(
            K::KIND,
            &self.namespace,
            &self.name,
            written.meta().resource_version.clone().unwrap_or_default(),
        );
        self.written = self.status.clone();
        Ok(())
    }

    /// Notes a Secret this reconcile wrote, so that its watch event wakes nothing.
    pub fn wrote_secret(&self, name: &str, version: String) {
        self.ctx
            .own_writes
            .record(SECRET, &self.namespace, name, version);
    }

    /// Publishes an event about the object; a failure is logged, never fatal.
    pub async fn event(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(truncate(note, 1000)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self
            .ctx
            .recorder
            .publish(&event, &self.obj.object_ref(&()))
            .await
        {
            tracing::warn!(error = %e, "could not publish event");
        }
    }

    /// Writes the Ready condition and the status (if changed), publishes the event, sets the
    /// metrics and says when to look again.
    async fn finish(mut self, outcome: Outcome) -> Result<Action> {
        let written = K::conditions(&self.written).to_vec();
        let changed = set_ready(
            K::conditions_mut(&mut self.status),
            &written,
            &outcome,
            self.obj.meta().generation,
            self.now,
        );
        K::observe_generation(&mut self.status, self.obj.meta().generation);
        self.persist().await?;
        if let Some(kind) = outcome.event {
            if K::publish(&outcome, changed) {
                self.event(kind, outcome.reason, "Reconcile", outcome.message.clone())
                    .await;
            }
        }
        K::record(&self, &outcome);
        Ok(Action::requeue(wait_until(
            outcome.next,
            self.ctx.clock.now(),
            K::MAX_REQUEUE,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_reconcile_is_a_failed_reconcile() {
        let panics = async {
            let v: Vec<u8> = Vec::new();
            // An out-of-bounds index, as a slicing bug would do.
            let _ = v[v.len() + 1];
            Ok(Action::await_change())
        };
        assert!(matches!(unwind_safe(panics).await, Err(Error::Panicked)));
        let fine = async { Ok(Action::await_change()) };
        assert!(unwind_safe(fine).await.is_ok());
    }
}
