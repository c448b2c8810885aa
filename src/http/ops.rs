//! Probes and metrics, for the cluster only.

use super::HttpState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

/// 200 once the watch caches have listed everything (always on a standby).
pub(super) async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.ctx.readiness.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

/// The OpenMetrics exposition.
pub(super) async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.ctx.metrics.encode(),
    )
}
