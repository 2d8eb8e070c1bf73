//! Opening a conversation, which reads the user aggregates of the participants before the
//! conversation aggregate decides. The check reads the log, not a projection, so a user
//! registered a moment ago can be added at once.

use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use secureconnect_events::domain::ConversationType;
use secureconnect_events::{AggregateId, CommitMetadata};
use uuid::Uuid;

use crate::bus::{BusError, CommandBus, Executed};
use crate::conversation::{Conversation, ConversationCommand, ConversationError};
use crate::input::ConversationTitle;
use crate::user::User;

/// How many user aggregates are loaded at the same time while checking participants.
const CONCURRENT_USER_LOADS: usize = 8;

#[derive(Debug, Clone)]
pub struct OpenConversation {
    pub conversation_id: Uuid,
    pub creator_id: Uuid,
    pub conversation_type: ConversationType,
    pub title: ConversationTitle,
    /// The other participants; the creator may be listed too.
    pub participant_ids: Vec<Uuid>,
    pub is_e2ee_enabled: bool,
    pub now: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenConversationError {
    #[error("participant {0} is not a registered user")]
    UnknownParticipant(Uuid),
    /// A rule of the conversation aggregate: repeated participants, a wrong participant
    /// count, or an id that is already used.
    #[error(transparent)]
    Rejected(ConversationError),
    #[error(transparent)]
    Command(BusError),
}

/// Checks that every participant, the creator included, is a registered user, then creates
/// the conversation.
pub async fn open_conversation(
    bus: &CommandBus,
    request: OpenConversation,
    metadata: CommitMetadata,
) -> Result<Executed<Conversation>, OpenConversationError> {
    // The aggregate's own participant rules run first, so that an oversized or repeated list
    // is rejected before any user is loaded.
    let participants = Conversation::plan_participants(
        request.creator_id,
        request.conversation_type,
        &request.participant_ids,
    )
    .map_err(OpenConversationError::Rejected)?;

    let mut loads = stream::iter(participants)
        .map(|participant| async move {
            let user_id = participant.user_id;
            let loaded = bus.load::<User>(AggregateId::from_uuid(user_id)).await;
            (user_id, loaded)
        })
        .buffered(CONCURRENT_USER_LOADS);
    while let Some((user_id, loaded)) = loads.next().await {
        let (user, _) = loaded.map_err(OpenConversationError::Command)?;
        if user.registered().is_none() {
            return Err(OpenConversationError::UnknownParticipant(user_id));
        }
    }

    let command = ConversationCommand::Create {
        conversation_id: request.conversation_id,
        creator_id: request.creator_id,
        conversation_type: request.conversation_type,
        title: request.title,
        participant_ids: request.participant_ids,
        is_e2ee_enabled: request.is_e2ee_enabled,
        now: request.now,
    };
    bus.execute::<Conversation>(
        AggregateId::from_uuid(request.conversation_id),
        command,
        metadata,
    )
    .await
    .map_err(|error| match error.into_domain() {
        Ok(rejection) => OpenConversationError::Rejected(rejection),
        Err(error) => OpenConversationError::Command(error),
    })
}
