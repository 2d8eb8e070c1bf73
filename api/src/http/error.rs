//! The one error type of the API. Each variant names its status; internal details are kept in
//! a response extension for the request log and never reach the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::envelope::error_body;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `VALIDATION_ERROR`: the request is malformed or breaks a rule.
    #[error("{0}")]
    Validation(String),
    /// 401 `UNAUTHORIZED`: missing, invalid, expired or revoked credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `FORBIDDEN`: authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404 `NOT_FOUND`: absent, or hidden from this caller.
    #[error("{0}")]
    NotFound(String),
    /// 405 `METHOD_NOT_ALLOWED`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 `CONFLICT`: a uniqueness rule or a concurrent change.
    #[error("{0}")]
    Conflict(String),
    /// 413 `PAYLOAD_TOO_LARGE`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415 `UNSUPPORTED_MEDIA_TYPE`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 503 `SERVICE_UNAVAILABLE` with `Retry-After`: a backend is down or the read models have
    /// not reached the caller's writes in time.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    /// 503 `SERVICE_UNAVAILABLE` with `Retry-After`: the event log or the database failed.
    /// The client sees a generic message; the cause goes to the request log.
    #[error("a backend is unavailable; retry shortly")]
    BackendUnavailable(anyhow::Error),
    /// 500 `INTERNAL_ERROR`: a bug. The cause is logged, the client sees a generic message.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The cause of a 500 or 503, for the request log; set as a response extension.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable { .. } | ApiError::BackendUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "VALIDATION_ERROR",
            ApiError::Unauthorized(_) => "UNAUTHORIZED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            ApiError::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::Unavailable { .. } | ApiError::BackendUnavailable(_) => "SERVICE_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::Unavailable {
            message: message.into(),
            retry_after_secs: 1,
        }
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::Validation(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::NotFound(message.into())
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::Unauthorized(message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(_) => "internal server error".to_owned(),
            other => other.to_string(),
        };
        let mut response = (status, Json(error_body(self.code(), &message))).into_response();
        match &self {
            ApiError::Internal(cause) => {
                response
                    .extensions_mut()
                    .insert(ErrorCause(format!("{cause:#}")));
            }
            ApiError::Unavailable {
                message,
                retry_after_secs,
            } => {
                response
                    .extensions_mut()
                    .insert(ErrorCause(message.clone()));
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::BackendUnavailable(cause) => {
                response
                    .extensions_mut()
                    .insert(ErrorCause(format!("{cause:#}")));
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            }
            _ => {}
        }
        response
    }
}
