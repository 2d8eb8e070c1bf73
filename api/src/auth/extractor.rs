//! The `AuthUser` extractor: a valid, unexpired, unrevoked access token from the
//! `Authorization: Bearer` header, or 401.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::tokens::TokenError;
use crate::http::ApiError;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub username: String,
    pub role: String,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?;
        let token = bearer_token(header.as_bytes())?;
        authenticate_access_token(state, token)
    }
}

/// Extracts the token of an `Authorization: Bearer <token>` header; the scheme is
/// case-insensitive, as RFC 7235 specifies.
pub fn bearer_token(header: &[u8]) -> Result<&str, ApiError> {
    let header = std::str::from_utf8(header)
        .map_err(|_| ApiError::unauthorized("invalid Authorization header"))?;
    let (scheme, token) = header.split_once(' ').ok_or_else(|| {
        ApiError::unauthorized("invalid Authorization header: expected 'Bearer <token>'")
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "invalid Authorization header: expected 'Bearer <token>'",
        ));
    }
    Ok(token.trim())
}

pub fn authenticate_access_token(state: &AppState, token: &str) -> Result<AuthUser, ApiError> {
    let claims = state
        .tokens
        .verify_access(token)
        .map_err(|error| match error {
            TokenError::Expired => ApiError::unauthorized("access token has expired"),
            TokenError::WrongType { .. } => {
                ApiError::unauthorized("invalid token: expected an access token")
            }
            TokenError::Invalid => ApiError::unauthorized("invalid access token"),
        })?;
    if state.revoked_sessions.is_revoked(claims.sid) {
        return Err(ApiError::unauthorized(
            "session has been revoked; log in again",
        ));
    }
    Ok(AuthUser {
        user_id: claims.sub,
        session_id: claims.sid,
        username: claims.username,
        role: claims.role,
    })
}
