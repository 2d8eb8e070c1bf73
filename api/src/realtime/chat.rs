//! The handshake of the chat socket, `GET /v1/ws/chat?conversation_id=<uuid>`: every check
//! that can fail is made before the upgrade, so a client that may not connect gets an envelope
//! with a meaningful status instead of a socket that closes at once.

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, ORIGIN};
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use super::socket::{ChatSocket, RoomSubscription, SocketFeeds, SocketLimits};
use super::tickets::redeem_ticket;
use crate::app::AppState;
use crate::auth::extractor::{authenticate_access_token, bearer_token};
use crate::http::{ApiError, ValidQuery};
use crate::routes::messages::{ensure_member, parse_conversation_id};

#[derive(Debug, Deserialize)]
pub struct ChatSocketQuery {
    conversation_id: Option<String>,
    ticket: Option<String>,
    /// Read only to reject it: a long-lived token in a URL ends up in logs and histories.
    token: Option<String>,
    /// Read only to reject it, like `token`.
    access_token: Option<String>,
}

/// The user and session a socket acts for.
#[derive(Debug, Clone, Copy)]
pub struct SocketUser {
    pub user_id: Uuid,
    pub session_id: Uuid,
}

/// # `GET /v1/ws/chat?conversation_id=<uuid>`
///
/// Opens the chat socket of one conversation. Credentials are `Authorization: Bearer <access
/// token>` or `?ticket=` from `POST /v1/ws/tickets`. Before the upgrade: 403 for an `Origin`
/// outside `server.allowed_origins` (no `Origin` is a native client and is allowed), 400 for a
/// missing or invalid `conversation_id`, 401 for missing or bad credentials, 404 when the
/// caller is not a participant. Checks that have no side effect come first, so a ticket is
/// redeemed only by a request that can otherwise succeed.
pub async fn open_chat_socket(
    State(state): State<AppState>,
    headers: HeaderMap,
    ValidQuery(query): ValidQuery<ChatSocketQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    check_origin(&state, &headers)?;
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::validation(format!(
            "expected a WebSocket upgrade request: {}",
            rejection.body_text()
        ))
    })?;
    let conversation_id = query
        .conversation_id
        .as_deref()
        .ok_or_else(|| ApiError::validation("conversation_id is required"))
        .and_then(parse_conversation_id)?;
    let user = authenticate(&state, &headers, &query).await?;
    ensure_member(&state, conversation_id, user.user_id).await?;

    // Subscribe before returning 101, so a frame published once the client sees the socket
    // open is delivered to it.
    let room = RoomSubscription::new(state.hub.clone(), conversation_id);
    let ephemeral_frames = state
        .ephemeral
        .subscribe(&ChatSocket::topic(conversation_id))
        .await
        .map_err(|error| ApiError::BackendUnavailable(error.into()))?;
    let feeds = SocketFeeds {
        room,
        ephemeral_frames,
    };
    let limits = SocketLimits::from_settings(&state.settings.websocket);
    let socket = ChatSocket::new(state, user, conversation_id, limits);
    Ok(upgrade
        .max_frame_size(limits.max_frame_bytes)
        .max_message_size(limits.max_frame_bytes)
        .on_upgrade(move |websocket| socket.run(feeds, websocket)))
}

/// Rejects a browser page from an origin that is not allowed, so another site cannot open a
/// socket with the user's ticket (cross-site WebSocket hijacking). CORS does not apply to
/// WebSockets, so the browser does not check this itself.
fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let allowed = state
        .settings
        .server
        .allowed_origins
        .iter()
        .any(|allowed| allowed.as_bytes() == origin.as_bytes());
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "origin {:?} is not allowed to open sockets",
            String::from_utf8_lossy(origin.as_bytes())
        )))
    }
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    query: &ChatSocketQuery,
) -> Result<SocketUser, ApiError> {
    if query.token.is_some() || query.access_token.is_some() {
        return Err(ApiError::unauthorized(
            "access tokens are not accepted in the URL: send the Authorization header, or get \
             a ticket from POST /v1/ws/tickets and pass it as ?ticket=",
        ));
    }
    match (headers.get(AUTHORIZATION), query.ticket.as_deref()) {
        (Some(_), Some(_)) => Err(ApiError::validation(
            "send either the Authorization header or ?ticket=, not both",
        )),
        (Some(header), None) => {
            let token = bearer_token(header.as_bytes())?;
            let user = authenticate_access_token(state, token)?;
            Ok(SocketUser {
                user_id: user.user_id,
                session_id: user.session_id,
            })
        }
        (None, Some(ticket)) => {
            let holder = redeem_ticket(state, ticket).await?;
            Ok(SocketUser {
                user_id: holder.user_id,
                session_id: holder.session_id,
            })
        }
        (None, None) => Err(ApiError::unauthorized(
            "missing credentials: send Authorization: Bearer <access token>, or get a ticket \
             from POST /v1/ws/tickets and pass it as ?ticket=",
        )),
    }
}
