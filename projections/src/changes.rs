//! The translation of a batch of events into the rows one projection writes. Both backends
//! write these rows, so what a projection keeps from each event is decided here once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use secureconnect_events::domain::{ConversationEvent, DecodeError, RecordedEvent, UserEvent};
use secureconnect_events::{AggregateType, EventEnvelope};
use uuid::Uuid;

use crate::name::ProjectionName;

/// An event in the log that this version cannot decode. The projection stops on it, because
/// skipping it would leave the read model silently wrong.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode event {event_id} at position {position}: {source}")]
pub struct UndecodableEvent {
    pub event_id: Uuid,
    pub position: u64,
    #[source]
    pub source: DecodeError,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UserRow {
    pub user_id: Uuid,
    pub email: String,
    pub username: String,
    pub display_name: String,
    pub registered_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParticipantRow {
    pub user_id: Uuid,
    pub role: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConversationRow {
    pub conversation_id: Uuid,
    pub conversation_type: &'static str,
    pub title: String,
    pub created_by: Uuid,
    pub is_e2ee_enabled: bool,
    pub created_at: DateTime<Utc>,
    pub participants: Vec<ParticipantRow>,
}

/// The newest message time of one conversation within a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ConversationActivity {
    pub conversation_id: Uuid,
    pub last_message_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MessageRow {
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    pub sender_id: Uuid,
    pub content: String,
    pub is_encrypted: bool,
    pub message_type: &'static str,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub sent_at: DateTime<Utc>,
    pub sequence: u64,
    pub position: u64,
}

/// The rows one batch writes to one projection's tables.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Changes {
    Users(Vec<UserRow>),
    Conversations {
        created: Vec<ConversationRow>,
        /// Applied after `created`, so a message in the batch that created its conversation
        /// still moves `updated_at`.
        activity: Vec<ConversationActivity>,
    },
    Messages(Vec<MessageRow>),
}

impl Changes {
    /// Decodes the events `name` reads and collects its rows. Events of aggregates the
    /// projection does not read are passed over without decoding.
    pub(crate) fn collect(
        name: ProjectionName,
        events: &[EventEnvelope],
    ) -> Result<Changes, UndecodableEvent> {
        match name {
            ProjectionName::Users => collect_users(events).map(Changes::Users),
            ProjectionName::Conversations => collect_conversations(events),
            ProjectionName::Messages => collect_messages(events).map(Changes::Messages),
        }
    }

    /// Counts the rows inserted or updated.
    pub(crate) fn row_count(&self) -> usize {
        match self {
            Changes::Users(users) => users.len(),
            Changes::Conversations { created, activity } => created.len() + activity.len(),
            Changes::Messages(messages) => messages.len(),
        }
    }
}

fn decode<E: RecordedEvent>(envelope: &EventEnvelope) -> Result<E, UndecodableEvent> {
    tracing::trace!(
        position = envelope.position,
        event_id = %envelope.event_id,
        event_type = %envelope.event_type,
        stream = %envelope.stream_id(),
        sequence = envelope.aggregate_sequence,
        "applying event"
    );
    E::from_envelope(envelope).map_err(|source| UndecodableEvent {
        event_id: envelope.event_id,
        position: envelope.position,
        source,
    })
}

fn events_of(
    events: &[EventEnvelope],
    aggregate_type: AggregateType,
) -> impl Iterator<Item = &EventEnvelope> {
    events
        .iter()
        .filter(move |envelope| envelope.aggregate_type == aggregate_type)
}

fn collect_users(events: &[EventEnvelope]) -> Result<Vec<UserRow>, UndecodableEvent> {
    let mut users = Vec::new();
    for envelope in events_of(events, AggregateType::User) {
        match decode::<UserEvent>(envelope)? {
            UserEvent::UserRegistered(registered) => users.push(UserRow {
                user_id: registered.user_id,
                email: registered.email,
                username: registered.username,
                display_name: registered.display_name,
                registered_at: registered.registered_at,
            }),
            UserEvent::RegistrationAbandoned(_) => {}
        }
    }
    Ok(users)
}

fn collect_conversations(events: &[EventEnvelope]) -> Result<Changes, UndecodableEvent> {
    let mut created = Vec::new();
    let mut last_message_at: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    for envelope in events_of(events, AggregateType::Conversation) {
        match decode::<ConversationEvent>(envelope)? {
            ConversationEvent::ConversationCreated(conversation) => created.push(ConversationRow {
                conversation_id: conversation.conversation_id,
                conversation_type: conversation.conversation_type.as_str(),
                title: conversation.title,
                created_by: conversation.created_by,
                is_e2ee_enabled: conversation.is_e2ee_enabled,
                created_at: conversation.created_at,
                participants: conversation
                    .participants
                    .iter()
                    .map(|participant| ParticipantRow {
                        user_id: participant.user_id,
                        role: participant.role.as_str(),
                    })
                    .collect(),
            }),
            ConversationEvent::MessageSent(message) => {
                let newest = last_message_at
                    .entry(message.conversation_id)
                    .or_insert(message.sent_at);
                *newest = (*newest).max(message.sent_at);
            }
        }
    }
    let mut activity: Vec<ConversationActivity> = last_message_at
        .into_iter()
        .map(|(conversation_id, last_message_at)| ConversationActivity {
            conversation_id,
            last_message_at,
        })
        .collect();
    // A fixed order makes concurrent batches lock rows in the same order.
    activity.sort_by_key(|activity| activity.conversation_id);
    Ok(Changes::Conversations { created, activity })
}

fn collect_messages(events: &[EventEnvelope]) -> Result<Vec<MessageRow>, UndecodableEvent> {
    let mut messages = Vec::new();
    for envelope in events_of(events, AggregateType::Conversation) {
        match decode::<ConversationEvent>(envelope)? {
            ConversationEvent::MessageSent(message) => messages.push(MessageRow {
                message_id: message.message_id,
                conversation_id: message.conversation_id,
                sender_id: message.sender_id,
                content: message.content,
                is_encrypted: message.is_encrypted,
                message_type: message.message_type.as_str(),
                metadata: message.metadata,
                sent_at: message.sent_at,
                sequence: envelope.aggregate_sequence,
                position: envelope.position,
            }),
            ConversationEvent::ConversationCreated(_) => {}
        }
    }
    Ok(messages)
}
