//! Sending messages and paging through a conversation's history. Only participants may do
//! either; to anyone else the conversation does not exist (404).

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use secureconnect_commands::conversation::{Conversation, ConversationCommand, ConversationError};
use secureconnect_commands::input::{InputError, MessageContent, MessageMetadata};
use secureconnect_events::AggregateId;
use secureconnect_events::domain::{ConversationEvent, MessageSent, MessageType};
use secureconnect_projections::{MessageCursor, MessageView, ProjectionName};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::{bus_failure, command_failure, metadata};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::http::{ApiError, Created, Envelope, ValidJson, ValidQuery, WithPosition};

pub fn router() -> Router<AppState> {
    Router::new().route("/messages", get(list_messages).post(send_message))
}

#[derive(Debug, Deserialize)]
struct SendMessageRequest {
    conversation_id: String,
    content: String,
    #[serde(default)]
    is_encrypted: bool,
    message_type: String,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct MessageResponse {
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    pub sender_id: Uuid,
    pub content: String,
    pub is_encrypted: bool,
    pub message_type: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub sent_at: DateTime<Utc>,
}

impl From<&MessageSent> for MessageResponse {
    fn from(message: &MessageSent) -> Self {
        MessageResponse {
            message_id: message.message_id,
            conversation_id: message.conversation_id,
            sender_id: message.sender_id,
            content: message.content.clone(),
            is_encrypted: message.is_encrypted,
            message_type: message.message_type.as_str().to_owned(),
            metadata: message.metadata.clone(),
            sent_at: message.sent_at,
        }
    }
}

impl From<MessageView> for MessageResponse {
    fn from(view: MessageView) -> Self {
        MessageResponse {
            message_id: view.message_id,
            conversation_id: view.conversation_id,
            sender_id: view.sender_id,
            content: view.content,
            is_encrypted: view.is_encrypted,
            message_type: view.message_type,
            metadata: view.metadata,
            sent_at: view.sent_at,
        }
    }
}

pub fn parse_conversation_id(value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value.trim()).map_err(|_| {
        ApiError::validation(format!(
            "invalid conversation_id {value:?}: expected a UUID"
        ))
    })
}

fn parse_message_type(value: &str) -> Result<MessageType, ApiError> {
    match value {
        "text" => Ok(MessageType::Text),
        "image" => Ok(MessageType::Image),
        "video" => Ok(MessageType::Video),
        "file" => Ok(MessageType::File),
        other => Err(ApiError::validation(format!(
            "invalid message_type {other:?}: expected \"text\", \"image\", \"video\" or \"file\""
        ))),
    }
}

fn input_error(error: InputError) -> ApiError {
    if error.is_too_large() {
        ApiError::PayloadTooLarge(error.to_string())
    } else {
        ApiError::Validation(error.to_string())
    }
}

/// # `POST /v1/messages`
///
/// Sends a message. `content` is opaque (ciphertext is welcome), at most 64 KiB;
/// `message_type` is `text`, `image`, `video` or `file`; `metadata` is a small flat object.
/// 201 with the stored message; 404 when the caller is not a participant.
async fn send_message(
    State(state): State<AppState>,
    user: AuthUser,
    ValidJson(request): ValidJson<SendMessageRequest>,
) -> Result<WithPosition<Created<MessageResponse>>, ApiError> {
    let conversation_id = parse_conversation_id(&request.conversation_id)?;
    let message_type = parse_message_type(&request.message_type)?;
    let content = MessageContent::parse(request.content).map_err(input_error)?;
    let metadata_input = request.metadata.unwrap_or(serde_json::Value::Null);
    let message_metadata = MessageMetadata::parse(metadata_input).map_err(input_error)?;

    let command = ConversationCommand::SendMessage {
        message_id: Uuid::new_v4(),
        sender_id: user.user_id,
        content,
        is_encrypted: request.is_encrypted,
        message_type,
        metadata: message_metadata,
        now: Utc::now(),
    };
    let executed = state
        .bus
        .execute::<Conversation>(
            AggregateId::from_uuid(conversation_id),
            command,
            metadata(Some(user.user_id)),
        )
        .await
        .map_err(|error| {
            command_failure(error, |rejection| match rejection {
                ConversationError::NotFound | ConversationError::NotAMember => {
                    ApiError::not_found("conversation not found")
                }
                other => ApiError::validation(other.to_string()),
            })
        })?;
    if let Some(position) = executed.position {
        state.consistency.record_write(user.user_id, position);
    }
    let sent = executed
        .events
        .iter()
        .find_map(|event| match event {
            ConversationEvent::MessageSent(sent) => Some(MessageResponse::from(sent)),
            ConversationEvent::ConversationCreated(_) => None,
        })
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("sending appended no message")))?;
    Ok(WithPosition(executed.position, Created(sent)))
}

#[derive(Debug, Deserialize)]
struct ListMessagesQuery {
    conversation_id: Option<String>,
    limit: Option<String>,
    page_state: Option<String>,
}

#[derive(Debug, Serialize)]
struct MessagePageResponse {
    messages: Vec<MessageResponse>,
    /// Pass as `page_state` to get older messages; empty on the last page.
    next_page_state: String,
    has_more: bool,
}

/// The opaque cursor: base64url of `v1:<sequence>`.
fn encode_cursor(cursor: MessageCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{}", cursor.before_sequence))
}

fn decode_cursor(page_state: &str) -> Result<MessageCursor, ApiError> {
    let invalid =
        || ApiError::validation("invalid page_state: pass back next_page_state unchanged");
    let bytes = URL_SAFE_NO_PAD
        .decode(page_state.trim())
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let sequence = text
        .strip_prefix("v1:")
        .and_then(|number| number.parse::<u64>().ok())
        .ok_or_else(invalid)?;
    Ok(MessageCursor {
        before_sequence: sequence,
    })
}

/// # `GET /v1/messages?conversation_id=&limit=&page_state=`
///
/// One page of messages, newest first. `limit` is 1 to 100 (default 20). The cursor pages by
/// the message's sequence in its conversation, so no message is skipped or repeated, even
/// when several share a timestamp or new ones arrive between pages.
async fn list_messages(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ValidQuery(query): ValidQuery<ListMessagesQuery>,
) -> Result<Envelope<MessagePageResponse>, ApiError> {
    let conversation_id = query
        .conversation_id
        .as_deref()
        .ok_or_else(|| ApiError::validation("conversation_id is required"))
        .and_then(parse_conversation_id)?;
    let limit = match query.limit.as_deref() {
        None => 20,
        Some(text) => text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=100).contains(limit))
            .ok_or_else(|| {
                ApiError::validation(format!("invalid limit {text:?}: expected 1 to 100"))
            })?,
    };
    let cursor = match query.page_state.as_deref() {
        None | Some("") => None,
        Some(page_state) => Some(decode_cursor(page_state)?),
    };

    ensure_member(&state, conversation_id, user.user_id).await?;
    state
        .consistency
        .await_read(Some(user.user_id), &headers, &[ProjectionName::Messages])
        .await?;
    let page = state
        .read_models
        .messages_page(conversation_id, cursor, limit)
        .await
        .map_err(ApiError::BackendUnavailable)?;
    let response = MessagePageResponse {
        has_more: page.next.is_some(),
        next_page_state: page.next.map(encode_cursor).unwrap_or_default(),
        messages: page.messages.into_iter().map(Into::into).collect(),
    };
    Ok(Envelope(response))
}

/// Checks membership against the conversation aggregate in the log, not a read model, so a
/// caller who is not a participant learns nothing, not even after a lagging projection.
pub async fn ensure_member(
    state: &AppState,
    conversation_id: Uuid,
    user_id: Uuid,
) -> Result<(), ApiError> {
    let (conversation, _) = state
        .bus
        .load::<Conversation>(AggregateId::from_uuid(conversation_id))
        .await
        .map_err(bus_failure)?;
    if conversation.is_participant(user_id) {
        Ok(())
    } else {
        Err(ApiError::not_found("conversation not found"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let cursor = MessageCursor {
            before_sequence: 4_211,
        };
        assert_eq!(decode_cursor(&encode_cursor(cursor)).unwrap(), cursor);
    }

    #[test]
    fn malformed_cursor_is_rejected() {
        for page_state in ["%%%", "djE6", "djE6YWJj", "eDoxMg"] {
            assert!(decode_cursor(page_state).is_err(), "{page_state}");
        }
    }
}
