//! Events of the uniqueness claims: one stream per normalized email address and one per
//! normalized username, so that the log itself decides who holds a value.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DecodeError, RecordedEvent, from_payload, to_payload, unknown_type};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClaimEvent {
    KeyClaimed(KeyClaimed),
    KeyReleased(KeyReleased),
}

/// The value was reserved for a user. While claimed, nobody else can register with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyClaimed {
    pub owner_id: Uuid,
    pub claimed_at: DateTime<Utc>,
    /// The previous owner whose registration was abandoned, when this claim took one over.
    pub taken_over_from: Option<Uuid>,
}

/// The value became free again, because the registration that claimed it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyReleased {
    pub owner_id: Uuid,
    pub released_at: DateTime<Utc>,
}

impl cqrs_es::DomainEvent for ClaimEvent {
    fn event_type(&self) -> String {
        RecordedEvent::event_type(self).to_owned()
    }

    fn event_version(&self) -> String {
        self.schema_version().to_string()
    }
}

impl RecordedEvent for ClaimEvent {
    fn event_type(&self) -> &'static str {
        match self {
            ClaimEvent::KeyClaimed(_) => "KeyClaimed",
            ClaimEvent::KeyReleased(_) => "KeyReleased",
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn payload(&self) -> serde_json::Value {
        match self {
            ClaimEvent::KeyClaimed(payload) => to_payload(payload),
            ClaimEvent::KeyReleased(payload) => to_payload(payload),
        }
    }

    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<Self, DecodeError> {
        match (event_type, schema_version) {
            ("KeyClaimed", 1) => Ok(ClaimEvent::KeyClaimed(from_payload(
                event_type,
                schema_version,
                payload,
            )?)),
            ("KeyReleased", 1) => Ok(ClaimEvent::KeyReleased(from_payload(
                event_type,
                schema_version,
                payload,
            )?)),
            _ => Err(unknown_type(event_type, schema_version)),
        }
    }
}
