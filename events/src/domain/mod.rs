//! The domain events: past-tense facts with hand-written type names and schema versions.
//!
//! Each aggregate has one event enum whose variants wrap a payload struct. The envelope stores
//! the type name, the schema version and the payload struct as JSON, never the Rust enum, so
//! renaming a Rust type cannot change the log. Decoding matches on the name and version, which
//! is where an upcaster goes when a payload's schema changes.

pub mod claim;
pub mod conversation;
pub mod session;
pub mod user;

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::envelope::{EventEnvelope, NewEvent};
use crate::stream::AggregateType;

pub use claim::{ClaimEvent, KeyClaimed, KeyReleased};
pub use conversation::{
    ConversationCreated, ConversationEvent, ConversationType, MessageSent, MessageType,
    Participant, ParticipantRole,
};
pub use session::{
    SessionEvent, SessionRefreshed, SessionRevocationReason, SessionRevoked, SessionStarted,
};
pub use user::{RegistrationAbandoned, UserEvent, UserRegistered};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {event_type} version {schema_version}")]
    UnknownType {
        event_type: String,
        schema_version: u32,
    },
    #[error("invalid payload for {event_type} version {schema_version}: {source}")]
    InvalidPayload {
        event_type: String,
        schema_version: u32,
        source: serde_json::Error,
    },
}

/// An aggregate's event enum as the log sees it.
pub trait RecordedEvent: Sized {
    fn event_type(&self) -> &'static str;
    fn schema_version(&self) -> u32;
    fn payload(&self) -> serde_json::Value;
    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<Self, DecodeError>;

    fn to_new_event(&self) -> NewEvent {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: self.event_type().to_owned(),
            schema_version: self.schema_version(),
            payload: self.payload(),
        }
    }

    fn from_envelope(envelope: &EventEnvelope) -> Result<Self, DecodeError> {
        Self::decode(
            &envelope.event_type,
            envelope.schema_version,
            &envelope.payload,
        )
    }
}

/// Any domain event, for consumers such as projections that read every stream.
#[derive(Debug, Clone, PartialEq)]
pub enum DomainEvent {
    User(UserEvent),
    EmailClaim(ClaimEvent),
    UsernameClaim(ClaimEvent),
    Session(SessionEvent),
    Conversation(ConversationEvent),
}

impl DomainEvent {
    pub fn decode(envelope: &EventEnvelope) -> Result<DomainEvent, DecodeError> {
        Ok(match envelope.aggregate_type {
            AggregateType::User => DomainEvent::User(UserEvent::from_envelope(envelope)?),
            AggregateType::EmailClaim => {
                DomainEvent::EmailClaim(ClaimEvent::from_envelope(envelope)?)
            }
            AggregateType::UsernameClaim => {
                DomainEvent::UsernameClaim(ClaimEvent::from_envelope(envelope)?)
            }
            AggregateType::Session => DomainEvent::Session(SessionEvent::from_envelope(envelope)?),
            AggregateType::Conversation => {
                DomainEvent::Conversation(ConversationEvent::from_envelope(envelope)?)
            }
        })
    }
}

pub(crate) fn to_payload<T: Serialize>(payload: &T) -> serde_json::Value {
    // Payload structs hold only strings, numbers, booleans, ids, times and JSON values, whose
    // serialization cannot fail.
    serde_json::to_value(payload).expect("event payloads serialize to JSON")
}

pub(crate) fn from_payload<T: DeserializeOwned>(
    event_type: &str,
    schema_version: u32,
    payload: &serde_json::Value,
) -> Result<T, DecodeError> {
    T::deserialize(payload).map_err(|source| DecodeError::InvalidPayload {
        event_type: event_type.to_owned(),
        schema_version,
        source,
    })
}

pub(crate) fn unknown_type(event_type: &str, schema_version: u32) -> DecodeError {
    DecodeError::UnknownType {
        event_type: event_type.to_owned(),
        schema_version,
    }
}
