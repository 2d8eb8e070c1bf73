//! The router with its middleware, outermost first: request id, request span and outcome log,
//! panic catcher, CORS, security headers, timeout and body limit. Unknown routes and methods
//! get the envelope too.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tracing::Instrument;

use crate::app::AppState;
use crate::http::ApiError;
use crate::http::consistency::{EVENT_POSITION_HEADER, MIN_POSITION_HEADER};
use crate::http::error::ErrorCause;
use crate::http::request_id::{REQUEST_ID_HEADER, assign_request_id};

pub fn build(state: AppState) -> Router {
    let settings = state.settings.clone();
    let origins = settings
        .server
        .allowed_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect::<Vec<_>>();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static(REQUEST_ID_HEADER),
            HeaderName::from_static(MIN_POSITION_HEADER),
        ])
        .expose_headers([
            HeaderName::from_static(REQUEST_ID_HEADER),
            HeaderName::from_static(EVENT_POSITION_HEADER),
            header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(86_400));

    let middleware = ServiceBuilder::new()
        .layer(middleware::from_fn(assign_request_id))
        .layer(middleware::from_fn(trace_request))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(cors)
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(middleware::from_fn_with_state(
            settings.request_timeout(),
            time_limit,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            settings.server.max_body_bytes,
        ));

    crate::routes::router()
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware)
        .with_state(state)
}

/// Answers 503 in the envelope, with `Retry-After`, when a request takes longer than
/// `server.request_timeout_secs`, for example because its body stalls.
async fn time_limit(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(format!(
            "request timed out after {} seconds",
            limit.as_secs()
        ))
        .into_response(),
    }
}

/// Runs the request inside a span named after its matched route (never the raw path, which
/// carries ids) and logs its outcome once: `debug` normally, `warn` for 503, `error` with the
/// cause for 500.
async fn trace_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        request_id = %request_id,
    );
    async move {
        let started = Instant::now();
        let response = next.run(request).await;
        let status = response.status();
        let latency_ms = started.elapsed().as_secs_f64() * 1_000.0;
        let cause = response
            .extensions()
            .get::<ErrorCause>()
            .map(|cause| cause.0.as_str());
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(
                status = status.as_u16(),
                latency_ms,
                cause,
                "request failed"
            );
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(
                status = status.as_u16(),
                latency_ms,
                cause,
                "request unavailable"
            );
        } else {
            tracing::debug!(status = status.as_u16(), latency_ms, "request completed");
        }
        response
    }
    .instrument(span)
    .await
}
