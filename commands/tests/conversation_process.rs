//! Opening a conversation on both logs: participants must be registered users.

mod common;

use chrono::Utc;
use common::*;
use secureconnect_commands::conversation::{Conversation, ConversationError};
use secureconnect_commands::conversation_process::{
    OpenConversation, OpenConversationError, open_conversation,
};
use secureconnect_commands::input::ConversationTitle;
use secureconnect_events::domain::{ConversationEvent, ConversationType, ParticipantRole};
use secureconnect_events::{AggregateId, AggregateType, StreamId};
use uuid::Uuid;

fn open(creator_id: Uuid, participant_ids: Vec<Uuid>) -> OpenConversation {
    OpenConversation {
        conversation_id: Uuid::new_v4(),
        creator_id,
        conversation_type: ConversationType::Group,
        title: ConversationTitle::parse("Book club").unwrap(),
        participant_ids,
        is_e2ee_enabled: false,
        now: Utc::now(),
    }
}

async fn registered_participants_open_conversation(store: &TestStore) {
    let bus = store.bus();
    let creator_id = registered_user(&bus).await;
    let member_id = registered_user(&bus).await;
    let request = open(creator_id, vec![creator_id, member_id]);
    let conversation_id = request.conversation_id;

    let executed = within(open_conversation(&bus, request, metadata()))
        .await
        .unwrap();

    assert!(executed.position.is_some());
    assert!(matches!(
        &executed.events[..],
        [ConversationEvent::ConversationCreated(_)]
    ));
    assert_eq!(
        executed.state.role_of(creator_id),
        Some(ParticipantRole::Admin)
    );
    assert_eq!(
        executed.state.role_of(member_id),
        Some(ParticipantRole::Member)
    );
    let (loaded, _) = within(bus.load::<Conversation>(AggregateId::from_uuid(conversation_id)))
        .await
        .unwrap();
    assert_eq!(loaded.participants().len(), 2);
}

on_both_backends!(registered_participants_open_conversation);

async fn unknown_participant_is_named(store: &TestStore) {
    let bus = store.bus();
    let creator_id = registered_user(&bus).await;
    let member_id = registered_user(&bus).await;
    let stranger_id = Uuid::new_v4();
    let request = open(creator_id, vec![member_id, stranger_id]);
    let conversation_id = request.conversation_id;

    let error = within(open_conversation(&bus, request, metadata()))
        .await
        .unwrap_err();

    assert!(
        matches!(error, OpenConversationError::UnknownParticipant(id) if id == stranger_id),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("participant {stranger_id} is not a registered user")
    );
    let stream = StreamId::for_uuid(AggregateType::Conversation, conversation_id);
    assert!(store.read_stream(&stream).await.is_empty());
}

on_both_backends!(unknown_participant_is_named);

async fn repeated_participant_rejected_before_lookup(store: &TestStore) {
    let bus = store.bus();
    let creator_id = registered_user(&bus).await;
    // The stranger would be reported as unknown if users were looked up first.
    let stranger_id = Uuid::new_v4();

    let error = within(open_conversation(
        &bus,
        open(creator_id, vec![stranger_id, stranger_id]),
        metadata(),
    ))
    .await
    .unwrap_err();

    assert!(
        matches!(
            error,
            OpenConversationError::Rejected(ConversationError::DuplicateParticipant { user_id })
                if user_id == stranger_id
        ),
        "{error:?}"
    );
}

on_both_backends!(repeated_participant_rejected_before_lookup);

async fn existing_conversation_id_is_rejected(store: &TestStore) {
    let bus = store.bus();
    let creator_id = registered_user(&bus).await;
    let member_id = registered_user(&bus).await;
    let request = open(creator_id, vec![member_id]);
    within(open_conversation(&bus, request.clone(), metadata()))
        .await
        .unwrap();

    let error = within(open_conversation(&bus, request, metadata()))
        .await
        .unwrap_err();

    assert!(
        matches!(
            error,
            OpenConversationError::Rejected(ConversationError::AlreadyExists)
        ),
        "{error:?}"
    );
}

on_both_backends!(existing_conversation_id_is_rejected);
