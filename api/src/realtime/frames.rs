//! The chat socket's JSON frames, flat as clients of the earlier backend expect:
//! `{"type", "conversation_id", "sender_id", "message_id", "content", "is_encrypted",
//! "message_type", "metadata", "timestamp"}` plus the message's log `position`, the `error` frame the server sends back for a
//! frame it rejects, and the parsing of client frames.

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
    /// The log position of a `chat` frame's message. A client passes it as `X-Min-Position`
    /// to read the message over REST from any node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
}

impl ChatFrame {
    /// Builds the `chat` frame of a stored message, with its real id, time and log position.
    pub fn from_message(message: &MessageSent, position: u64) -> ChatFrame {
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
            position: Some(position),
        }
    }

    /// Builds an ephemeral frame (`user_joined`, `user_left`, `typing`, `read`) from `sender_id`.
    /// `message_id` is set only on `read`.
    pub fn ephemeral(
        kind: EphemeralKind,
        conversation_id: Uuid,
        sender_id: Uuid,
        message_id: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> ChatFrame {
        ChatFrame {
            frame_type: kind.as_str().to_owned(),
            conversation_id,
            sender_id: Some(sender_id),
            message_id,
            content: None,
            is_encrypted: None,
            message_type: None,
            metadata: None,
            timestamp: format_time(now),
            position: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("chat frames serialize to JSON")
    }
}

/// The frame types that cross API nodes on the ephemeral bus and are never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EphemeralKind {
    UserJoined,
    UserLeft,
    Typing,
    Read,
}

impl EphemeralKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EphemeralKind::UserJoined => "user_joined",
            EphemeralKind::UserLeft => "user_left",
            EphemeralKind::Typing => "typing",
            EphemeralKind::Read => "read",
        }
    }
}

/// A frame on the ephemeral bus, tagged with the socket connection that published it so that
/// the connection can skip its own frame. The tag is stripped before delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaggedFrame {
    pub connection_id: Uuid,
    pub frame: ChatFrame,
}

/// A frame a client may send. The server fills in the sender, the conversation and the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFrame {
    Typing,
    Read { message_id: Uuid },
}

impl ClientFrame {
    /// Parses a client text frame: a JSON object whose `type` is `typing`, or `read` with a
    /// `message_id`. Other fields are ignored, so a client cannot forge the sender or the time.
    pub fn parse(text: &str) -> Result<ClientFrame, ErrorFrame> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|error| ErrorFrame::invalid(format!("frame is not valid JSON: {error}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| ErrorFrame::invalid("frame must be a JSON object"))?;
        let frame_type = match object.get("type") {
            Some(serde_json::Value::String(frame_type)) => frame_type.as_str(),
            Some(_) => return Err(ErrorFrame::invalid("frame field \"type\" must be a string")),
            None => return Err(ErrorFrame::invalid("frame is missing the field \"type\"")),
        };
        match frame_type {
            "typing" => Ok(ClientFrame::Typing),
            "read" => {
                let message_id = object
                    .get("message_id")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|text| Uuid::parse_str(text).ok())
                    .ok_or_else(|| {
                        ErrorFrame::invalid("a \"read\" frame needs \"message_id\" as a UUID")
                    })?;
                Ok(ClientFrame::Read { message_id })
            }
            "chat" => Err(ErrorFrame::unsupported(
                "send messages with POST /v1/messages, so each one is stored and ordered; \
                 this socket delivers them as \"chat\" frames",
            )),
            other => Err(ErrorFrame::unsupported(format!(
                "unsupported frame type {other:?}: clients may send \"typing\" and \"read\""
            ))),
        }
    }

    pub fn kind(self) -> EphemeralKind {
        match self {
            ClientFrame::Typing => EphemeralKind::Typing,
            ClientFrame::Read { .. } => EphemeralKind::Read,
        }
    }

    pub fn message_id(self) -> Option<Uuid> {
        match self {
            ClientFrame::Typing => None,
            ClientFrame::Read { message_id } => Some(message_id),
        }
    }
}

/// The server's reply to a client frame it rejects: `{"type": "error", "code", "message",
/// "timestamp"}`. The socket stays open.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorFrame {
    #[serde(rename = "type")]
    pub frame_type: &'static str,
    /// `INVALID_FRAME`, `UNSUPPORTED_FRAME_TYPE` or `SERVICE_UNAVAILABLE`.
    pub code: &'static str,
    pub message: String,
    pub timestamp: String,
}

impl ErrorFrame {
    fn new(code: &'static str, message: impl Into<String>) -> ErrorFrame {
        ErrorFrame {
            frame_type: "error",
            code,
            message: message.into(),
            timestamp: format_time(Utc::now()),
        }
    }

    /// Builds the reply to a malformed frame: not JSON, not an object, or missing a field.
    pub fn invalid(message: impl Into<String>) -> ErrorFrame {
        ErrorFrame::new("INVALID_FRAME", message)
    }

    /// Builds the reply to a well-formed frame of a type clients may not send.
    pub fn unsupported(message: impl Into<String>) -> ErrorFrame {
        ErrorFrame::new("UNSUPPORTED_FRAME_TYPE", message)
    }

    /// Builds the reply to a frame the server could not pass on because a backend failed.
    pub fn unavailable(message: impl Into<String>) -> ErrorFrame {
        ErrorFrame::new("SERVICE_UNAVAILABLE", message)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("error frames serialize to JSON")
    }
}

pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_and_read_frames_parse() {
        let message_id = Uuid::new_v4();
        assert_eq!(
            ClientFrame::parse(r#"{"type":"typing"}"#),
            Ok(ClientFrame::Typing)
        );
        assert_eq!(
            ClientFrame::parse(&format!(r#"{{"type":"read","message_id":"{message_id}"}}"#)),
            Ok(ClientFrame::Read { message_id })
        );
    }

    #[test]
    fn forged_fields_are_ignored() {
        let frame = ClientFrame::parse(
            r#"{"type":"typing","sender_id":"00000000-0000-0000-0000-000000000001","timestamp":"x"}"#,
        );
        assert_eq!(frame, Ok(ClientFrame::Typing));
    }

    #[test]
    fn rejected_frames_name_their_fault() {
        let cases = [
            ("not json", "INVALID_FRAME", "not valid JSON"),
            ("[1, 2]", "INVALID_FRAME", "JSON object"),
            ("{}", "INVALID_FRAME", "missing the field \"type\""),
            (r#"{"type": 7}"#, "INVALID_FRAME", "must be a string"),
            (r#"{"type":"read"}"#, "INVALID_FRAME", "message_id"),
            (
                r#"{"type":"read","message_id":"nope"}"#,
                "INVALID_FRAME",
                "message_id",
            ),
            (
                r#"{"type":"chat","content":"hi"}"#,
                "UNSUPPORTED_FRAME_TYPE",
                "POST /v1/messages",
            ),
            (
                r#"{"type":"user_joined"}"#,
                "UNSUPPORTED_FRAME_TYPE",
                "\"user_joined\"",
            ),
        ];
        for (text, code, fragment) in cases {
            let error = ClientFrame::parse(text).unwrap_err();
            assert_eq!(error.code, code, "{text}");
            assert!(
                error.message.contains(fragment),
                "{text}: {}",
                error.message
            );
        }
    }

    #[test]
    fn ephemeral_frame_omits_message_fields() {
        let conversation_id = Uuid::new_v4();
        let sender_id = Uuid::new_v4();
        let frame = ChatFrame::ephemeral(
            EphemeralKind::Typing,
            conversation_id,
            sender_id,
            None,
            Utc::now(),
        );
        let json: serde_json::Value = serde_json::from_str(&frame.to_json()).unwrap();
        assert_eq!(json["type"], "typing");
        assert_eq!(json["conversation_id"], conversation_id.to_string());
        assert_eq!(json["sender_id"], sender_id.to_string());
        assert!(json.get("message_id").is_none());
        assert!(json.get("content").is_none());
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
