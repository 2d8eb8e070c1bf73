//! The conversation aggregate's state and its decisions.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use secureconnect_events::AggregateType;
use secureconnect_events::domain::{
    ConversationCreated, ConversationEvent, ConversationType, MessageSent, Participant,
    ParticipantRole,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::{ConversationCommand, ConversationError};
use crate::bus::ManagedAggregate;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// `None` until the conversation is created.
    state: Option<ConversationState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ConversationState {
    conversation_id: Uuid,
    conversation_type: ConversationType,
    title: String,
    created_by: Uuid,
    /// At most `MAX_GROUP_PARTICIPANTS`, so a linear search is cheap.
    participants: Vec<Participant>,
    is_e2ee_enabled: bool,
    created_at: DateTime<Utc>,
    message_count: u64,
    last_message_at: Option<DateTime<Utc>>,
}

impl Conversation {
    /// The largest group, creator included.
    pub const MAX_GROUP_PARTICIPANTS: usize = 256;

    /// Lists the participants a `Create` command would record, or the rule the list breaks.
    /// The creator comes first as admin, then the other ids in order as members.
    pub fn plan_participants(
        creator_id: Uuid,
        conversation_type: ConversationType,
        participant_ids: &[Uuid],
    ) -> Result<Vec<Participant>, ConversationError> {
        let participants = participants_with_creator(creator_id, participant_ids)?;
        check_participant_count(conversation_type, participants.len())?;
        Ok(participants)
    }

    pub fn exists(&self) -> bool {
        self.state.is_some()
    }

    pub fn conversation_id(&self) -> Option<Uuid> {
        self.state.as_ref().map(|state| state.conversation_id)
    }

    pub fn conversation_type(&self) -> Option<ConversationType> {
        self.state.as_ref().map(|state| state.conversation_type)
    }

    pub fn title(&self) -> Option<&str> {
        self.state.as_ref().map(|state| state.title.as_str())
    }

    pub fn created_by(&self) -> Option<Uuid> {
        self.state.as_ref().map(|state| state.created_by)
    }

    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        self.state.as_ref().map(|state| state.created_at)
    }

    /// Returns the participants in the order they were added, or none before creation.
    pub fn participants(&self) -> &[Participant] {
        self.state
            .as_ref()
            .map_or(&[], |state| state.participants.as_slice())
    }

    pub fn is_participant(&self, user_id: Uuid) -> bool {
        self.role_of(user_id).is_some()
    }

    pub fn role_of(&self, user_id: Uuid) -> Option<ParticipantRole> {
        self.participants()
            .iter()
            .find(|participant| participant.user_id == user_id)
            .map(|participant| participant.role)
    }

    pub fn is_e2ee_enabled(&self) -> bool {
        self.state
            .as_ref()
            .is_some_and(|state| state.is_e2ee_enabled)
    }

    pub fn message_count(&self) -> u64 {
        self.state.as_ref().map_or(0, |state| state.message_count)
    }

    pub fn last_message_at(&self) -> Option<DateTime<Utc>> {
        self.state.as_ref().and_then(|state| state.last_message_at)
    }
}

impl Aggregate for Conversation {
    const TYPE: &'static str = "conversation";
    type Command = ConversationCommand;
    type Event = ConversationEvent;
    type Error = ConversationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ConversationCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ConversationError> {
        match command {
            ConversationCommand::Create {
                conversation_id,
                creator_id,
                conversation_type,
                title,
                participant_ids,
                is_e2ee_enabled,
                now,
            } => {
                if self.state.is_some() {
                    return Err(ConversationError::AlreadyExists);
                }
                let participants = Conversation::plan_participants(
                    creator_id,
                    conversation_type,
                    &participant_ids,
                )?;
                let event = ConversationCreated {
                    conversation_id,
                    conversation_type,
                    title: title.as_str().to_owned(),
                    created_by: creator_id,
                    participants,
                    is_e2ee_enabled,
                    created_at: now,
                };
                sink.write(ConversationEvent::ConversationCreated(event), self)
                    .await;
            }
            ConversationCommand::SendMessage {
                message_id,
                sender_id,
                content,
                is_encrypted,
                message_type,
                metadata,
                now,
            } => {
                let state = self.state.as_ref().ok_or(ConversationError::NotFound)?;
                if !self.is_participant(sender_id) {
                    return Err(ConversationError::NotAMember);
                }
                let event = MessageSent {
                    message_id,
                    conversation_id: state.conversation_id,
                    sender_id,
                    content: content.into_string(),
                    is_encrypted,
                    message_type,
                    metadata: metadata.into_map(),
                    sent_at: now,
                };
                sink.write(ConversationEvent::MessageSent(event), self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: ConversationEvent) {
        match event {
            ConversationEvent::ConversationCreated(event) => {
                self.state = Some(ConversationState {
                    conversation_id: event.conversation_id,
                    conversation_type: event.conversation_type,
                    title: event.title,
                    created_by: event.created_by,
                    participants: event.participants,
                    is_e2ee_enabled: event.is_e2ee_enabled,
                    created_at: event.created_at,
                    message_count: 0,
                    last_message_at: None,
                });
            }
            ConversationEvent::MessageSent(event) => {
                if let Some(state) = &mut self.state {
                    state.message_count += 1;
                    state.last_message_at = Some(event.sent_at);
                }
            }
        }
    }
}

/// Lists the creator as admin followed by the other ids as members, rejecting repeats. The
/// creator may appear in `participant_ids` once.
fn participants_with_creator(
    creator_id: Uuid,
    participant_ids: &[Uuid],
) -> Result<Vec<Participant>, ConversationError> {
    let mut participants = vec![Participant {
        user_id: creator_id,
        role: ParticipantRole::Admin,
    }];
    let mut listed = HashSet::with_capacity(participant_ids.len());
    for &user_id in participant_ids {
        if !listed.insert(user_id) {
            return Err(ConversationError::DuplicateParticipant { user_id });
        }
        if user_id != creator_id {
            participants.push(Participant {
                user_id,
                role: ParticipantRole::Member,
            });
        }
    }
    Ok(participants)
}

fn check_participant_count(
    conversation_type: ConversationType,
    count: usize,
) -> Result<(), ConversationError> {
    match conversation_type {
        ConversationType::Direct if count != 2 => {
            Err(ConversationError::DirectNeedsTwoParticipants { count })
        }
        ConversationType::Group if !(2..=Conversation::MAX_GROUP_PARTICIPANTS).contains(&count) => {
            Err(ConversationError::GroupSizeOutOfRange { count })
        }
        ConversationType::Direct | ConversationType::Group => Ok(()),
    }
}

impl ManagedAggregate for Conversation {
    const AGGREGATE_TYPE: AggregateType = AggregateType::Conversation;
    /// Conversations are the only aggregates whose streams grow without bound.
    const SNAPSHOT_EVERY: Option<u64> = Some(500);
    const STATE_VERSION: u32 = 1;
}
