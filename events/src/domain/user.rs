//! Events of the user aggregate, one stream per account.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DecodeError, RecordedEvent, from_payload, to_payload, unknown_type};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    UserRegistered(UserRegistered),
    RegistrationAbandoned(RegistrationAbandoned),
}

/// An account was created after its email address and username were claimed for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: Uuid,
    /// Lower-cased and trimmed.
    pub email: String,
    /// As the user typed it; uniqueness is case-insensitive.
    pub username: String,
    pub display_name: String,
    /// An argon2id PHC string.
    pub password_hash: String,
    pub registered_at: DateTime<Utc>,
}

/// A registration that stopped after claiming an email address or username was declared dead
/// by another registration, so that its claims can be taken over. Once this is recorded the
/// user id can never be registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrationAbandoned {
    pub user_id: Uuid,
    pub abandoned_at: DateTime<Utc>,
}

impl cqrs_es::DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        RecordedEvent::event_type(self).to_owned()
    }

    fn event_version(&self) -> String {
        self.schema_version().to_string()
    }
}

impl RecordedEvent for UserEvent {
    fn event_type(&self) -> &'static str {
        match self {
            UserEvent::UserRegistered(_) => "UserRegistered",
            UserEvent::RegistrationAbandoned(_) => "RegistrationAbandoned",
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn payload(&self) -> serde_json::Value {
        match self {
            UserEvent::UserRegistered(payload) => to_payload(payload),
            UserEvent::RegistrationAbandoned(payload) => to_payload(payload),
        }
    }

    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<Self, DecodeError> {
        match (event_type, schema_version) {
            ("UserRegistered", 1) => Ok(UserEvent::UserRegistered(from_payload(
                event_type,
                schema_version,
                payload,
            )?)),
            ("RegistrationAbandoned", 1) => Ok(UserEvent::RegistrationAbandoned(from_payload(
                event_type,
                schema_version,
                payload,
            )?)),
            _ => Err(unknown_type(event_type, schema_version)),
        }
    }
}
