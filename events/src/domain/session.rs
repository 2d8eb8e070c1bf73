//! Events of the session aggregate: one stream per login, carrying its refresh-token rotation
//! and its revocation. API nodes follow these events to reject revoked access tokens.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DecodeError, RecordedEvent, from_payload, to_payload, unknown_type};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SessionEvent {
    SessionStarted(SessionStarted),
    SessionRefreshed(SessionRefreshed),
    SessionRevoked(SessionRevoked),
}

/// A user logged in (or registered) and received refresh token generation 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStarted {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub started_at: DateTime<Utc>,
    /// When the session's refresh tokens stop working, whatever their generation.
    pub expires_at: DateTime<Utc>,
}

/// The refresh token of generation `generation - 1` was spent and generation `generation`
/// was issued in its place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRefreshed {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub generation: u64,
    pub refreshed_at: DateTime<Utc>,
}

/// The session ended: its refresh tokens and the access tokens issued for it stop working.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRevoked {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub reason: SessionRevocationReason,
    pub revoked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionRevocationReason {
    Logout,
    /// A refresh token that had already been exchanged was presented again, which means a
    /// copy of it leaked, so the whole token family is revoked.
    RefreshTokenReuse,
}

impl cqrs_es::DomainEvent for SessionEvent {
    fn event_type(&self) -> String {
        RecordedEvent::event_type(self).to_owned()
    }

    fn event_version(&self) -> String {
        self.schema_version().to_string()
    }
}

impl RecordedEvent for SessionEvent {
    fn event_type(&self) -> &'static str {
        match self {
            SessionEvent::SessionStarted(_) => "SessionStarted",
            SessionEvent::SessionRefreshed(_) => "SessionRefreshed",
            SessionEvent::SessionRevoked(_) => "SessionRevoked",
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn payload(&self) -> serde_json::Value {
        match self {
            SessionEvent::SessionStarted(payload) => to_payload(payload),
            SessionEvent::SessionRefreshed(payload) => to_payload(payload),
            SessionEvent::SessionRevoked(payload) => to_payload(payload),
        }
    }

    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<Self, DecodeError> {
        match (event_type, schema_version) {
            ("SessionStarted", 1) => Ok(SessionEvent::SessionStarted(from_payload(
                event_type,
                schema_version,
                payload,
            )?)),
            ("SessionRefreshed", 1) => Ok(SessionEvent::SessionRefreshed(from_payload(
                event_type,
                schema_version,
                payload,
            )?)),
            ("SessionRevoked", 1) => Ok(SessionEvent::SessionRevoked(from_payload(
                event_type,
                schema_version,
                payload,
            )?)),
            _ => Err(unknown_type(event_type, schema_version)),
        }
    }
}
