//! The queries the API runs against the read models, shared by both backends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// A registered account as the users projection stores it. The password hash is not here:
/// login reads it from the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserView {
    pub user_id: Uuid,
    pub email: String,
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantView {
    pub user_id: Uuid,
    pub role: String,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationView {
    pub conversation_id: Uuid,
    /// `direct` or `group`.
    pub conversation_type: String,
    pub title: String,
    pub created_by: Uuid,
    pub is_e2ee_enabled: bool,
    pub participants: Vec<ParticipantView>,
    pub created_at: DateTime<Utc>,
    /// The time of the last change, including the last message sent.
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageView {
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    pub sender_id: Uuid,
    pub content: String,
    pub is_encrypted: bool,
    /// `text`, `image`, `video` or `file`.
    pub message_type: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub sent_at: DateTime<Utc>,
    /// The message's sequence in its conversation's stream: unique within the conversation
    /// and growing with send order, so it orders and pages messages even when several share
    /// a timestamp.
    pub sequence: u64,
}

/// Where a page of messages continues: strictly older than the message with this sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageCursor {
    pub before_sequence: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessagePage {
    /// Newest first.
    pub messages: Vec<MessageView>,
    /// Set when older messages exist.
    pub next: Option<MessageCursor>,
}

/// Read access to the read models. Every method reads committed rows only.
#[async_trait]
pub trait ReadModels: Send + Sync + 'static {
    async fn user(&self, user_id: Uuid) -> anyhow::Result<Option<UserView>>;

    /// The conversations `member_id` participates in, most recently updated first.
    async fn conversations_of(
        &self,
        member_id: Uuid,
        limit: u32,
        offset: u32,
    ) -> anyhow::Result<Vec<ConversationView>>;

    /// The conversation, or `None` when it does not exist or `member_id` is not a participant.
    async fn conversation_for_member(
        &self,
        conversation_id: Uuid,
        member_id: Uuid,
    ) -> anyhow::Result<Option<ConversationView>>;

    /// One page of a conversation's messages, newest first. The caller checks membership.
    async fn messages_page(
        &self,
        conversation_id: Uuid,
        cursor: Option<MessageCursor>,
        limit: u32,
    ) -> anyhow::Result<MessagePage>;
}
