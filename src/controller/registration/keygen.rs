//! The signing-key generator: RSA keys take ~100 ms of CPU each, so they are made one at a time,
//! in request order, by one task off the reconcilers. A thousand new registrations then cost one
//! core for a while instead of starving token refreshes, and nobody polls for their turn: the
//! generator's write of the key Secret brings the registration back (its Secrets are watched).

use crate::api::contract::signing_key;
use crate::api::ANNOTATION_ROTATE_SIGNING_KEY;
use crate::secrets::{Owner, Secrets};
use crate::signing::SigningKey;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// A key to make and where to store it.
pub struct KeyRequest {
    /// Uid of the registration (requests are deduplicated by it).
    pub uid: String,
    /// Secrets of the registration's namespace.
    pub secrets: Secrets,
    /// The signing-key Secret to write.
    pub secret_name: String,
    /// Its owner.
    pub owner: Owner,
}

/// Queue of key requests served by one background task.
pub struct KeyGenerator {
    tx: Option<mpsc::UnboundedSender<KeyRequest>>,
    pending: Arc<Mutex<HashSet<String>>>,
}

impl KeyGenerator {
    /// Starts the generator task on the current runtime (none outside a runtime).
    pub fn start() -> Self {
        let pending: Arc<Mutex<HashSet<String>>> = Arc::default();
        let tx = tokio::runtime::Handle::try_current().ok().map(|handle| {
            let (tx, rx) = mpsc::unbounded_channel();
            handle.spawn(serve(rx, pending.clone()));
            tx
        });
        KeyGenerator { tx, pending }
    }

    /// Asks for a new key for a registration; a request already waiting is not repeated.
    pub fn request(&self, request: KeyRequest) {
        let new = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request.uid.clone());
        if let (true, Some(tx)) = (new, &self.tx) {
            if tx.send(request).is_err() {
                tracing::error!("the signing-key generator has stopped");
            }
        }
    }
}

async fn serve(mut rx: mpsc::UnboundedReceiver<KeyRequest>, pending: Arc<Mutex<HashSet<String>>>) {
    while let Some(request) = rx.recv().await {
        if let Err(e) = make(&request).await {
            // The registration asks again at its next reconcile.
            tracing::warn!(
                name = %request.owner.name,
                secret = %request.secret_name,
                error = %e,
                "could not make a signing key (rotate with the {ANNOTATION_ROTATE_SIGNING_KEY} annotation or wait for the next reconcile)"
            );
        }
        pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&request.uid);
    }
}

async fn make(request: &KeyRequest) -> Result<(), String> {
    let key = tokio::task::spawn_blocking(SigningKey::generate)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let pem = key.to_pkcs8_pem().map_err(|e| e.to_string())?;
    let jwk = serde_json::to_string(&key.jwk()).map_err(|e| e.to_string())?;
    let data = BTreeMap::from([
        (signing_key::PRIVATE_KEY.to_string(), pem),
        (signing_key::JWK.to_string(), jwk),
        (signing_key::KID.to_string(), key.kid().to_string()),
    ]);
    // Not recorded as an own write: its watch event is what brings the registration back.
    request
        .secrets
        .apply(&request.secret_name, &request.owner, data)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
