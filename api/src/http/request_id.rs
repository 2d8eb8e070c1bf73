//! Request ids: taken from a well-formed incoming `X-Request-ID` or generated, echoed in the
//! response header, put in the envelope's `meta.request_id` and on the request span.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use uuid::Uuid;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static CURRENT_REQUEST_ID: String;
}

/// The id of the request being handled on this task, or `None` outside a request.
pub fn current_request_id() -> Option<String> {
    CURRENT_REQUEST_ID.try_with(Clone::clone).ok()
}

/// Accepts a client's id only if it is short and plain, so it cannot inject into logs.
fn accepted_client_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let plain = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    plain.then(|| text.to_owned())
}

pub async fn assign_request_id(mut request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(accepted_client_id)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let header = HeaderValue::from_str(&request_id).expect("request ids are plain ASCII");
    request
        .headers_mut()
        .insert(REQUEST_ID_HEADER, header.clone());

    let mut response = CURRENT_REQUEST_ID
        .scope(request_id, next.run(request))
        .await;
    response.headers_mut().insert(REQUEST_ID_HEADER, header);
    response
}
