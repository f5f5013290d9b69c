//! The agent's HTTP face: `GET /metrics` (Prometheus text format), `GET /healthz` (the
//! agent runs), `GET /api/v1/services` (the [`super::report::Report`] as JSON: every service, its
//! gauges, last values, limits and verdicts), `GET /api/v1/restarts` (the watchdog's audit,
//! `{"restarts": [...]}` newest first). Read-only; nothing here changes the agent.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::shared::Shared;

/// The routes, over the shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/api/v1/services", get(services))
        .route("/api/v1/restarts", get(restarts))
        .with_state(shared)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
        shared.metrics.encode(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn restarts(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    Json(serde_json::json!({ "restarts": shared.audit.newest_first() }))
}

async fn services(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    Json(shared.report())
}
