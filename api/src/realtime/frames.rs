//! The chat socket's JSON frames, flat as clients of the earlier backend expect:
//! `{"type", "conversation_id", "sender_id", "message_id", "content", "is_encrypted",
//! "message_type", "metadata", "timestamp"}`.

use chrono::{DateTime, SecondsFormat, Utc};
use secureconnect_events::domain::MessageSent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatFrame {
    #[serde(rename = "type")]
    pub frame_type: String,
    pub conversation_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_encrypted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub timestamp: String,
}

impl ChatFrame {
    /// A `chat` frame for a stored message, with its real id and time.
    pub fn from_message(message: &MessageSent) -> ChatFrame {
        ChatFrame {
            frame_type: "chat".to_owned(),
            conversation_id: message.conversation_id,
            sender_id: Some(message.sender_id),
            message_id: Some(message.message_id),
            content: Some(message.content.clone()),
            is_encrypted: Some(message.is_encrypted),
            message_type: Some(message.message_type.as_str().to_owned()),
            metadata: Some(message.metadata.clone()),
            timestamp: format_time(message.sent_at),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("chat frames serialize to JSON")
    }
}

pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}
