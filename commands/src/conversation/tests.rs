//! Rules of the conversation aggregate, as given events, a command and the expected outcome.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use secureconnect_events::domain::{
    ConversationCreated, ConversationEvent, ConversationType, MessageSent, MessageType,
    Participant, ParticipantRole,
};
use serde_json::json;
use uuid::Uuid;

use super::{Conversation, ConversationCommand, ConversationError};
use crate::input::{ConversationTitle, MessageContent, MessageMetadata};

type ConversationTest = TestFramework<Conversation>;

const CONVERSATION_ID: Uuid = Uuid::from_u128(0xC0);
const CREATOR: Uuid = Uuid::from_u128(0x1);
const MEMBER: Uuid = Uuid::from_u128(0x2);
const OUTSIDER: Uuid = Uuid::from_u128(0x3);
const MESSAGE_ID: Uuid = Uuid::from_u128(0x100);

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

fn create(conversation_type: ConversationType, participant_ids: Vec<Uuid>) -> ConversationCommand {
    ConversationCommand::Create {
        conversation_id: CONVERSATION_ID,
        creator_id: CREATOR,
        conversation_type,
        title: ConversationTitle::parse("Planning").unwrap(),
        participant_ids,
        is_e2ee_enabled: true,
        now: now(),
    }
}

fn created(conversation_type: ConversationType, members: &[Uuid]) -> ConversationEvent {
    let mut participants = vec![Participant {
        user_id: CREATOR,
        role: ParticipantRole::Admin,
    }];
    participants.extend(members.iter().map(|&user_id| Participant {
        user_id,
        role: ParticipantRole::Member,
    }));
    ConversationEvent::ConversationCreated(ConversationCreated {
        conversation_id: CONVERSATION_ID,
        conversation_type,
        title: "Planning".to_owned(),
        created_by: CREATOR,
        participants,
        is_e2ee_enabled: true,
        created_at: now(),
    })
}

fn send_from(sender_id: Uuid) -> ConversationCommand {
    ConversationCommand::SendMessage {
        message_id: MESSAGE_ID,
        sender_id,
        content: MessageContent::parse("b64:q83vEjRW".to_owned()).unwrap(),
        is_encrypted: true,
        message_type: MessageType::Text,
        metadata: MessageMetadata::parse(json!({"key_id": "k1"})).unwrap(),
        now: now(),
    }
}

fn sent_from(sender_id: Uuid) -> ConversationEvent {
    ConversationEvent::MessageSent(MessageSent {
        message_id: MESSAGE_ID,
        conversation_id: CONVERSATION_ID,
        sender_id,
        content: "b64:q83vEjRW".to_owned(),
        is_encrypted: true,
        message_type: MessageType::Text,
        metadata: json!({"key_id": "k1"}).as_object().unwrap().clone(),
        sent_at: now(),
    })
}

fn user_ids(count: u128) -> Vec<Uuid> {
    (0..count)
        .map(|index| Uuid::from_u128(0x1000 + index))
        .collect()
}

#[test]
fn create_direct_adds_creator_as_admin() {
    ConversationTest::with(())
        .given_no_previous_events()
        .when(create(ConversationType::Direct, vec![MEMBER]))
        .then_expect_events(vec![created(ConversationType::Direct, &[MEMBER])]);
}

#[test]
fn create_accepts_creator_listed_once() {
    ConversationTest::with(())
        .given_no_previous_events()
        .when(create(ConversationType::Direct, vec![CREATOR, MEMBER]))
        .then_expect_events(vec![created(ConversationType::Direct, &[MEMBER])]);
}

#[test]
fn create_rejects_repeated_participant() {
    ConversationTest::with(())
        .given_no_previous_events()
        .when(create(
            ConversationType::Group,
            vec![MEMBER, OUTSIDER, MEMBER],
        ))
        .then_expect_error(ConversationError::DuplicateParticipant { user_id: MEMBER });
}

#[test]
fn create_rejects_creator_listed_twice() {
    ConversationTest::with(())
        .given_no_previous_events()
        .when(create(
            ConversationType::Group,
            vec![CREATOR, MEMBER, CREATOR],
        ))
        .then_expect_error(ConversationError::DuplicateParticipant { user_id: CREATOR });
}

#[test]
fn direct_needs_exactly_two_participants() {
    ConversationTest::with(())
        .given_no_previous_events()
        .when(create(ConversationType::Direct, vec![MEMBER, OUTSIDER]))
        .then_expect_error(ConversationError::DirectNeedsTwoParticipants { count: 3 });
    ConversationTest::with(())
        .given_no_previous_events()
        .when(create(ConversationType::Direct, vec![CREATOR]))
        .then_expect_error(ConversationError::DirectNeedsTwoParticipants { count: 1 });
}

#[test]
fn group_needs_at_least_two_participants() {
    ConversationTest::with(())
        .given_no_previous_events()
        .when(create(ConversationType::Group, vec![]))
        .then_expect_error(ConversationError::GroupSizeOutOfRange { count: 1 });
}

#[test]
fn group_allows_at_most_256_participants() {
    let members = user_ids(255);
    ConversationTest::with(())
        .given_no_previous_events()
        .when(create(ConversationType::Group, members.clone()))
        .then_expect_events(vec![created(ConversationType::Group, &members)]);
    ConversationTest::with(())
        .given_no_previous_events()
        .when(create(ConversationType::Group, user_ids(256)))
        .then_expect_error(ConversationError::GroupSizeOutOfRange { count: 257 });
}

#[test]
fn create_twice_is_rejected() {
    ConversationTest::with(())
        .given(vec![created(ConversationType::Direct, &[MEMBER])])
        .when(create(ConversationType::Direct, vec![MEMBER]))
        .then_expect_error(ConversationError::AlreadyExists);
}

#[test]
fn member_can_send_message() {
    ConversationTest::with(())
        .given(vec![created(ConversationType::Direct, &[MEMBER])])
        .when(send_from(MEMBER))
        .then_expect_events(vec![sent_from(MEMBER)]);
}

#[test]
fn non_member_cannot_send_message() {
    ConversationTest::with(())
        .given(vec![created(ConversationType::Direct, &[MEMBER])])
        .when(send_from(OUTSIDER))
        .then_expect_error(ConversationError::NotAMember);
}

#[test]
fn send_to_missing_conversation_is_not_found() {
    ConversationTest::with(())
        .given_no_previous_events()
        .when(send_from(CREATOR))
        .then_expect_error(ConversationError::NotFound);
}

#[test]
fn state_size_does_not_grow_with_messages() {
    let mut conversation = Conversation::default();
    cqrs_es::Aggregate::apply(
        &mut conversation,
        created(ConversationType::Direct, &[MEMBER]),
    );
    let after_creation = serde_json::to_vec(&conversation).unwrap().len();
    for _ in 0..1_000 {
        cqrs_es::Aggregate::apply(&mut conversation, sent_from(MEMBER));
    }
    let after_messages = serde_json::to_vec(&conversation).unwrap().len();

    assert_eq!(conversation.message_count(), 1_000);
    assert_eq!(conversation.last_message_at(), Some(now()));
    // Only the counter's digits and the last message time may add bytes.
    assert!(
        after_messages <= after_creation + 64,
        "state grew from {after_creation} to {after_messages} bytes"
    );
}

#[test]
fn state_reports_roles() {
    let mut conversation = Conversation::default();
    cqrs_es::Aggregate::apply(
        &mut conversation,
        created(ConversationType::Group, &[MEMBER]),
    );
    assert_eq!(conversation.role_of(CREATOR), Some(ParticipantRole::Admin));
    assert_eq!(conversation.role_of(MEMBER), Some(ParticipantRole::Member));
    assert!(!conversation.is_participant(OUTSIDER));
    assert_eq!(conversation.participants().len(), 2);
}
