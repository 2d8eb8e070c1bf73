//! Commands to the conversation aggregate and the rules they can break.

use chrono::{DateTime, Utc};
use secureconnect_events::domain::{ConversationType, MessageType};
use uuid::Uuid;

use crate::input::{ConversationTitle, MessageContent, MessageMetadata};

#[derive(Debug, Clone)]
pub enum ConversationCommand {
    /// Opens the conversation. The participants are `participant_ids` plus the creator, who
    /// may also be listed (clients of the earlier backend list themselves); any other repeated
    /// id is rejected. The creator becomes admin, everyone else member. Accepted only on an
    /// empty stream.
    Create {
        conversation_id: Uuid,
        creator_id: Uuid,
        conversation_type: ConversationType,
        title: ConversationTitle,
        participant_ids: Vec<Uuid>,
        is_e2ee_enabled: bool,
        now: DateTime<Utc>,
    },
    /// Sends a message. Only participants may send.
    SendMessage {
        message_id: Uuid,
        sender_id: Uuid,
        content: MessageContent,
        is_encrypted: bool,
        message_type: MessageType,
        metadata: MessageMetadata,
        now: DateTime<Utc>,
    },
}

/// The API responds to both `NotFound` and `NotAMember` with 404, so that a non-member cannot
/// tell whether a conversation exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    #[error("the conversation already exists")]
    AlreadyExists,
    #[error("the conversation does not exist")]
    NotFound,
    #[error("the sender is not a participant of the conversation")]
    NotAMember,
    #[error("participant {user_id} is listed more than once")]
    DuplicateParticipant { user_id: Uuid },
    #[error(
        "a direct conversation needs exactly 2 participants including the creator, got {count}"
    )]
    DirectNeedsTwoParticipants { count: usize },
    #[error(
        "a group conversation needs 2 to {max} participants including the creator, got {count}",
        max = crate::conversation::Conversation::MAX_GROUP_PARTICIPANTS
    )]
    GroupSizeOutOfRange { count: usize },
}
