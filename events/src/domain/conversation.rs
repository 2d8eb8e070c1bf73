//! Events of the conversation aggregate: one stream per conversation, carrying its creation
//! and every message sent in it. Membership and sending live in one aggregate because "only
//! members may send" is that aggregate's invariant.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DecodeError, RecordedEvent, from_payload, to_payload, unknown_type};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConversationEvent {
    ConversationCreated(ConversationCreated),
    MessageSent(MessageSent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationType {
    /// Exactly two participants.
    Direct,
    /// Two or more participants.
    Group,
}

impl ConversationType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationType::Direct => "direct",
            ConversationType::Group => "group",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantRole {
    Admin,
    Member,
}

impl ParticipantRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantRole::Admin => "admin",
            ParticipantRole::Member => "member",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub user_id: Uuid,
    pub role: ParticipantRole,
}

/// A conversation was opened. The creator is always a participant with the admin role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationCreated {
    pub conversation_id: Uuid,
    pub conversation_type: ConversationType,
    pub title: String,
    pub created_by: Uuid,
    pub participants: Vec<Participant>,
    pub is_e2ee_enabled: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    Text,
    Image,
    Video,
    File,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Text => "text",
            MessageType::Image => "image",
            MessageType::Video => "video",
            MessageType::File => "file",
        }
    }
}

/// A participant sent a message. `content` is opaque to the server and may be ciphertext.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageSent {
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    pub sender_id: Uuid,
    pub content: String,
    pub is_encrypted: bool,
    pub message_type: MessageType,
    /// A flat JSON object of string, number and boolean values.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub sent_at: DateTime<Utc>,
}

impl cqrs_es::DomainEvent for ConversationEvent {
    fn event_type(&self) -> String {
        RecordedEvent::event_type(self).to_owned()
    }

    fn event_version(&self) -> String {
        self.schema_version().to_string()
    }
}

impl RecordedEvent for ConversationEvent {
    fn event_type(&self) -> &'static str {
        match self {
            ConversationEvent::ConversationCreated(_) => "ConversationCreated",
            ConversationEvent::MessageSent(_) => "MessageSent",
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn payload(&self) -> serde_json::Value {
        match self {
            ConversationEvent::ConversationCreated(payload) => to_payload(payload),
            ConversationEvent::MessageSent(payload) => to_payload(payload),
        }
    }

    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<Self, DecodeError> {
        match (event_type, schema_version) {
            ("ConversationCreated", 1) => Ok(ConversationEvent::ConversationCreated(from_payload(
                event_type,
                schema_version,
                payload,
            )?)),
            ("MessageSent", 1) => Ok(ConversationEvent::MessageSent(from_payload(
                event_type,
                schema_version,
                payload,
            )?)),
            _ => Err(unknown_type(event_type, schema_version)),
        }
    }
}
