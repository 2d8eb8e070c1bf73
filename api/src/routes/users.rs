//! The caller's own account.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use secureconnect_projections::{ProjectionName, UserView};

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::http::{ApiError, Envelope};

pub fn router() -> Router<AppState> {
    Router::new().route("/users/me", get(get_me))
}

/// # `GET /v1/users/me`
///
/// The caller's account from the users read model, after it has applied the caller's writes.
async fn get_me(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
) -> Result<Envelope<UserView>, ApiError> {
    state
        .consistency
        .await_read(Some(user.user_id), &headers, &[ProjectionName::Users])
        .await?;
    let view = state
        .read_models
        .user(user.user_id)
        .await
        .map_err(ApiError::BackendUnavailable)?
        .ok_or_else(|| ApiError::not_found("user not found"))?;
    Ok(Envelope(view))
}
