//! Single-use tickets for opening a socket from a browser, which cannot set the
//! `Authorization` header on a WebSocket. A client with an access token requests a ticket over
//! REST and passes it as `?ticket=`; the ticket store shared by all API nodes hands it out once.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::http::{ApiError, Created};

/// The user and session a ticket was issued to, stored as its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketHolder {
    pub user_id: Uuid,
    pub session_id: Uuid,
}

#[derive(Debug, Serialize)]
pub struct TicketResponse {
    pub ticket: String,
    /// Seconds until the ticket expires.
    pub expires_in: u64,
}

/// # `POST /v1/ws/tickets`
///
/// Issues a ticket that opens one socket as the caller, within `websocket.ticket_ttl_secs`.
/// 201 `{ticket, expires_in}`; 401 without a valid access token.
pub async fn issue_ticket(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Created<TicketResponse>, ApiError> {
    let ticket = new_ticket_id();
    let holder = TicketHolder {
        user_id: user.user_id,
        session_id: user.session_id,
    };
    let value = serde_json::to_vec(&holder).expect("a ticket holder serializes to JSON");
    let ttl_secs = state.settings.websocket.ticket_ttl_secs;
    state
        .tickets
        .issue(&ticket, Bytes::from(value), Duration::from_secs(ttl_secs))
        .await
        .map_err(|error| ApiError::BackendUnavailable(error.into()))?;
    Ok(Created(TicketResponse {
        ticket,
        expires_in: ttl_secs,
    }))
}

/// Redeems a ticket and returns its holder, or 401 when the ticket is unknown, expired or
/// already used, or when its session has been revoked since it was issued.
pub async fn redeem_ticket(state: &AppState, ticket: &str) -> Result<TicketHolder, ApiError> {
    let rejected = || ApiError::unauthorized("invalid, expired or already used ticket");
    let value = state
        .tickets
        .redeem(ticket)
        .await
        .map_err(|error| ApiError::BackendUnavailable(error.into()))?
        .ok_or_else(rejected)?;
    let holder: TicketHolder = serde_json::from_slice(&value).map_err(|error| {
        tracing::warn!(error = %error, "stored ticket value is not a ticket holder");
        rejected()
    })?;
    if state.revoked_sessions.is_revoked(holder.session_id) {
        return Err(ApiError::unauthorized(
            "session has been revoked; log in again",
        ));
    }
    Ok(holder)
}

/// Returns 256 random bits as base64url without padding (43 characters), so the ticket can go
/// in a URL unescaped. `rand::random` uses the thread-local generator, a CSPRNG seeded from
/// the operating system.
fn new_ticket_id() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_ids_are_url_safe_and_distinct() {
        let first = new_ticket_id();
        let second = new_ticket_id();
        assert_eq!(first.len(), 43);
        assert!(
            first
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'),
            "{first}"
        );
        assert_ne!(first, second);
    }
}
