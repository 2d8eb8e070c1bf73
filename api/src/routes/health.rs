//! Liveness and readiness probes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{SecondsFormat, Utc};
use serde_json::json;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

/// # `GET /health`
///
/// 200 while the process runs. It checks nothing else, so an orchestrator restarts only a
/// process that stopped answering.
async fn health() -> Json<serde_json::Value> {
    Json(json!({
        "status": "healthy",
        "service": "secureconnect",
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    }))
}

/// # `GET /ready`
///
/// 200 when the event log and the read-model store answer, every projection is within
/// `consistency.ready_max_lag_events` of the log's head, and this node has read the recent
/// session revocations; 503 otherwise, with each check's result.
async fn ready(State(state): State<AppState>) -> Response {
    let report = state.readiness().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}
