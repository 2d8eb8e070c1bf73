//! The response envelope: `{"success": true, "data": …, "meta": {"timestamp", "request_id"}}`
//! on success and `{"success": false, "error": {"code", "message"}, "meta": …}` on failure.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::json;

use super::request_id::current_request_id;

pub fn meta() -> serde_json::Value {
    let timestamp = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    match current_request_id() {
        Some(request_id) => json!({ "timestamp": timestamp, "request_id": request_id }),
        None => json!({ "timestamp": timestamp }),
    }
}

/// A 200 response with `data` in the envelope.
pub struct Envelope<T>(pub T);

impl<T: Serialize> IntoResponse for Envelope<T> {
    fn into_response(self) -> Response {
        let body = json!({ "success": true, "data": self.0, "meta": meta() });
        (StatusCode::OK, Json(body)).into_response()
    }
}

/// A 201 response with `data` in the envelope.
pub struct Created<T>(pub T);

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        let body = json!({ "success": true, "data": self.0, "meta": meta() });
        (StatusCode::CREATED, Json(body)).into_response()
    }
}

pub fn error_body(code: &str, message: &str) -> serde_json::Value {
    json!({
        "success": false,
        "error": { "code": code, "message": message },
        "meta": meta(),
    })
}
