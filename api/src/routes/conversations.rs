//! Opening conversations and reading the caller's conversations. A conversation the caller
//! does not participate in does not exist for them: every route answers 404.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use chrono::{DateTime, Utc};
use secureconnect_commands::conversation_process::{
    OpenConversation, OpenConversationError, open_conversation,
};
use secureconnect_commands::input::ConversationTitle;
use secureconnect_events::domain::{ConversationEvent, ConversationType};
use secureconnect_projections::{ConversationView, ProjectionName};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::{bus_failure, metadata, validation};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::http::{ApiError, Created, Envelope, ValidJson, ValidPath, ValidQuery, WithPosition};

/// Most participants a group may start with, the creator included.
pub const MAX_PARTICIPANTS: usize = 256;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/conversations",
            get(list_conversations).post(create_conversation),
        )
        .route("/conversations/{conversation_id}", get(get_conversation))
}

#[derive(Debug, Deserialize)]
struct CreateConversationRequest {
    title: String,
    #[serde(rename = "type")]
    conversation_type: String,
    participant_ids: Vec<String>,
    is_e2ee_enabled: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct ConversationResponse {
    pub conversation_id: Uuid,
    #[serde(rename = "type")]
    pub conversation_type: String,
    pub title: String,
    pub created_by: Uuid,
    pub is_e2ee_enabled: bool,
    pub participants: Vec<ParticipantResponse>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct ParticipantResponse {
    pub user_id: Uuid,
    pub role: String,
    pub joined_at: DateTime<Utc>,
}

impl From<ConversationView> for ConversationResponse {
    fn from(view: ConversationView) -> Self {
        ConversationResponse {
            conversation_id: view.conversation_id,
            conversation_type: view.conversation_type,
            title: view.title,
            created_by: view.created_by,
            is_e2ee_enabled: view.is_e2ee_enabled,
            participants: view
                .participants
                .into_iter()
                .map(|participant| ParticipantResponse {
                    user_id: participant.user_id,
                    role: participant.role,
                    joined_at: participant.joined_at,
                })
                .collect(),
            created_at: view.created_at,
            updated_at: view.updated_at,
        }
    }
}

/// # `POST /v1/conversations`
///
/// Opens a conversation. `type` is `direct` (exactly two participants, the creator included)
/// or `group` (at least two); the creator joins as admin whether or not listed;
/// `is_e2ee_enabled` defaults to true. 400 names an invalid or unknown participant.
async fn create_conversation(
    State(state): State<AppState>,
    user: AuthUser,
    ValidJson(request): ValidJson<CreateConversationRequest>,
) -> Result<WithPosition<Created<ConversationResponse>>, ApiError> {
    let title = ConversationTitle::parse(&request.title).map_err(validation)?;
    let conversation_type = match request.conversation_type.as_str() {
        "direct" => ConversationType::Direct,
        "group" => ConversationType::Group,
        other => {
            return Err(ApiError::validation(format!(
                "invalid type {other:?}: expected \"direct\" or \"group\""
            )));
        }
    };
    if request.participant_ids.len() > MAX_PARTICIPANTS {
        return Err(ApiError::validation(format!(
            "participant_ids has {} entries; at most {MAX_PARTICIPANTS} are allowed",
            request.participant_ids.len()
        )));
    }
    let participant_ids = request
        .participant_ids
        .iter()
        .map(|id| {
            Uuid::parse_str(id).map_err(|_| {
                ApiError::validation(format!("invalid participant id {id:?}: expected a UUID"))
            })
        })
        .collect::<Result<Vec<Uuid>, ApiError>>()?;

    let command = OpenConversation {
        conversation_id: Uuid::new_v4(),
        creator_id: user.user_id,
        conversation_type,
        title,
        participant_ids,
        is_e2ee_enabled: request.is_e2ee_enabled.unwrap_or(true),
        now: Utc::now(),
    };
    let executed = open_conversation(&state.bus, command, metadata(Some(user.user_id)))
        .await
        .map_err(|error| match error {
            OpenConversationError::UnknownParticipant(id) => {
                ApiError::validation(format!("participant {id} does not exist"))
            }
            OpenConversationError::Rejected(rule) => ApiError::validation(rule.to_string()),
            OpenConversationError::Command(failure) => bus_failure(failure),
        })?;
    let position = executed.position;
    if let Some(position) = position {
        state.consistency.record_write(user.user_id, position);
    }
    let created = executed
        .events
        .iter()
        .find_map(|event| match event {
            ConversationEvent::ConversationCreated(created) => Some(created.clone()),
            ConversationEvent::MessageSent(_) => None,
        })
        .ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("conversation creation appended no event"))
        })?;
    let response = ConversationResponse {
        conversation_id: created.conversation_id,
        conversation_type: created.conversation_type.as_str().to_owned(),
        title: created.title.clone(),
        created_by: created.created_by,
        is_e2ee_enabled: created.is_e2ee_enabled,
        participants: created
            .participants
            .iter()
            .map(|participant| ParticipantResponse {
                user_id: participant.user_id,
                role: participant.role.as_str().to_owned(),
                joined_at: created.created_at,
            })
            .collect(),
        created_at: created.created_at,
        updated_at: created.created_at,
    };
    Ok(WithPosition(position, Created(response)))
}

#[derive(Debug, Deserialize)]
struct ListConversationsQuery {
    limit: Option<u32>,
    offset: Option<u32>,
}

#[derive(Debug, Serialize)]
struct ConversationList {
    conversations: Vec<ConversationResponse>,
    limit: u32,
    offset: u32,
}

/// # `GET /v1/conversations?limit=&offset=`
///
/// The caller's conversations, most recently active first. `limit` is 1 to 100 (default 20).
async fn list_conversations(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ValidQuery(query): ValidQuery<ListConversationsQuery>,
) -> Result<Envelope<ConversationList>, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation(format!(
            "invalid limit {limit}: expected 1 to 100"
        )));
    }
    let offset = query.offset.unwrap_or(0);
    state
        .consistency
        .await_read(
            Some(user.user_id),
            &headers,
            &[ProjectionName::Conversations],
        )
        .await?;
    let conversations = state
        .read_models
        .conversations_of(user.user_id, limit, offset)
        .await
        .map_err(ApiError::BackendUnavailable)?;
    Ok(Envelope(ConversationList {
        conversations: conversations.into_iter().map(Into::into).collect(),
        limit,
        offset,
    }))
}

/// # `GET /v1/conversations/{conversation_id}`
///
/// One conversation with its participants; 404 when it does not exist or the caller is not a
/// participant.
async fn get_conversation(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ValidPath(conversation_id): ValidPath<Uuid>,
) -> Result<Envelope<ConversationResponse>, ApiError> {
    state
        .consistency
        .await_read(
            Some(user.user_id),
            &headers,
            &[ProjectionName::Conversations],
        )
        .await?;
    let view = state
        .read_models
        .conversation_for_member(conversation_id, user.user_id)
        .await
        .map_err(ApiError::BackendUnavailable)?
        .ok_or_else(|| ApiError::not_found("conversation not found"))?;
    Ok(Envelope(view.into()))
}
