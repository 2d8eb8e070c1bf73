//! The command bus on both logs: stale caches across nodes, concurrent commands, snapshots,
//! lost acknowledgements and the bounded cache.

mod common;

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::*;
use secureconnect_commands::conversation::{Conversation, ConversationError};
use secureconnect_commands::session::{Session, SessionCommand};
use secureconnect_commands::{BusOptions, CommandBus, CommandError};
use secureconnect_events::domain::{ConversationEvent, RecordedEvent, SessionRevocationReason};
use secureconnect_events::{AggregateId, AggregateType, LogError, Snapshot, StreamId};
use uuid::Uuid;

fn conversation_stream(conversation_id: Uuid) -> StreamId {
    StreamId::for_uuid(AggregateType::Conversation, conversation_id)
}

async fn send(
    bus: &CommandBus,
    conversation_id: Uuid,
    sender_id: Uuid,
) -> Result<secureconnect_commands::Executed<Conversation>, CommandError<ConversationError>> {
    within(bus.execute::<Conversation>(
        AggregateId::from_uuid(conversation_id),
        send_message(Uuid::now_v7(), sender_id, "hello"),
        metadata(),
    ))
    .await
}

async fn stale_cache_conflicts_then_succeeds(store: &TestStore) {
    let first_node = store.bus();
    let second_node = store.bus();
    let (conversation_id, creator_id, member_id) = new_conversation(&first_node).await;

    // The second node caches the conversation at sequence 1.
    let (cached, version) =
        within(second_node.load::<Conversation>(AggregateId::from_uuid(conversation_id)))
            .await
            .unwrap();
    assert_eq!(version.sequence, 1);
    assert_eq!(cached.message_count(), 0);

    // The first node appends behind its back.
    send(&first_node, conversation_id, creator_id)
        .await
        .unwrap();

    // The second node appends at its stale version, conflicts, reads the tail and retries.
    let executed = send(&second_node, conversation_id, member_id)
        .await
        .unwrap();
    assert_eq!(executed.version.sequence, 3);
    assert_eq!(executed.state.message_count(), 2);
    assert!(executed.position.is_some());

    let sequences: Vec<u64> = store
        .read_stream(&conversation_stream(conversation_id))
        .await
        .iter()
        .map(|event| event.aggregate_sequence)
        .collect();
    assert_eq!(sequences, vec![1, 2, 3]);
}

on_both_backends!(stale_cache_conflicts_then_succeeds);

async fn conflict_returned_after_max_attempts(store: &TestStore) {
    let first_node = store.bus();
    let second_node = store.bus_with(BusOptions {
        max_attempts: 1,
        ..BusOptions::default()
    });
    let (conversation_id, creator_id, _) = new_conversation(&first_node).await;
    within(second_node.load::<Conversation>(AggregateId::from_uuid(conversation_id)))
        .await
        .unwrap();
    send(&first_node, conversation_id, creator_id)
        .await
        .unwrap();

    let error = send(&second_node, conversation_id, creator_id)
        .await
        .unwrap_err();

    assert!(
        matches!(&error, CommandError::Conflict { stream } if *stream == conversation_stream(conversation_id)),
        "{error:?}"
    );
    let events = store
        .read_stream(&conversation_stream(conversation_id))
        .await;
    assert_eq!(events.len(), 2, "the losing command must append nothing");
}

on_both_backends!(conflict_returned_after_max_attempts);

async fn concurrent_sends_from_two_nodes_all_land(store: &TestStore) {
    const SENDS_PER_NODE: usize = 25;
    let nodes = [store.bus(), store.bus()];
    let (conversation_id, creator_id, member_id) = new_conversation(&nodes[0]).await;
    within(nodes[1].load::<Conversation>(AggregateId::from_uuid(conversation_id)))
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for index in 0..SENDS_PER_NODE * 2 {
        let bus = Arc::clone(&nodes[index % 2]);
        let sender_id = if index % 3 == 0 {
            creator_id
        } else {
            member_id
        };
        let message_id = Uuid::now_v7();
        tasks.push((
            message_id,
            tokio::spawn(async move {
                bus.execute::<Conversation>(
                    AggregateId::from_uuid(conversation_id),
                    send_message(message_id, sender_id, "concurrent"),
                    metadata(),
                )
                .await
            }),
        ));
    }
    let mut sent_ids = HashSet::new();
    for (message_id, task) in tasks {
        let result = within(task).await.expect("a send task panicked");
        if let Err(error) = result {
            panic!("send of message {message_id} failed: {error:?}");
        }
        sent_ids.insert(message_id);
    }

    let events = store
        .read_stream(&conversation_stream(conversation_id))
        .await;
    let sequences: Vec<u64> = events
        .iter()
        .map(|event| event.aggregate_sequence)
        .collect();
    let expected: Vec<u64> = (1..=(SENDS_PER_NODE * 2 + 1) as u64).collect();
    assert_eq!(sequences, expected, "sequences must be contiguous");
    let stored_ids: HashSet<Uuid> = events
        .iter()
        .filter_map(
            |envelope| match ConversationEvent::from_envelope(envelope).unwrap() {
                ConversationEvent::MessageSent(sent) => Some(sent.message_id),
                ConversationEvent::ConversationCreated(_) => None,
            },
        )
        .collect();
    assert_eq!(stored_ids, sent_ids, "every message is stored exactly once");
}

on_both_backends!(concurrent_sends_from_two_nodes_all_land, multi_thread);

async fn snapshot_saved_and_fresh_node_reads_tail(store: &TestStore) {
    const MESSAGES: u64 = 505;
    let writer = store.bus();
    let (conversation_id, creator_id, _) = new_conversation(&writer).await;
    for _ in 0..MESSAGES {
        send(&writer, conversation_id, creator_id).await.unwrap();
    }
    let stream = conversation_stream(conversation_id);

    // The snapshot is saved in the background after the append that reached sequence 500.
    let snapshot = within(async {
        loop {
            if let Some(snapshot) = store.snapshots.load_snapshot(&stream).await.unwrap() {
                break snapshot;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(snapshot.version.sequence, 500);
    assert_eq!(snapshot.state_version, 1);

    let (recording, fresh_node) = store.recording_bus(AppendFault::None);
    let (conversation, version) =
        within(fresh_node.load::<Conversation>(AggregateId::from_uuid(conversation_id)))
            .await
            .unwrap();

    assert_eq!(version.sequence, MESSAGES + 1);
    assert_eq!(conversation.message_count(), MESSAGES);
    let reads = recording.reads();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0].after.sequence, 500);
    assert_eq!(reads[0].returned_events, (MESSAGES + 1 - 500) as usize);
}

on_both_backends!(snapshot_saved_and_fresh_node_reads_tail);

async fn snapshot_of_other_layout_is_ignored(store: &TestStore) {
    let writer = store.bus();
    let (conversation_id, creator_id, _) = new_conversation(&writer).await;
    send(&writer, conversation_id, creator_id).await.unwrap();
    let stream = conversation_stream(conversation_id);
    let (_, version) = within(writer.load::<Conversation>(AggregateId::from_uuid(conversation_id)))
        .await
        .unwrap();
    within(store.snapshots.save_snapshot(
        &stream,
        Snapshot {
            version,
            state: serde_json::json!({"layout": "from a future version"}),
            state_version: 99,
        },
    ))
    .await
    .unwrap();

    let (recording, fresh_node) = store.recording_bus(AppendFault::None);
    let (conversation, _) =
        within(fresh_node.load::<Conversation>(AggregateId::from_uuid(conversation_id)))
            .await
            .unwrap();

    assert_eq!(conversation.message_count(), 1);
    assert_eq!(
        recording.reads()[0].after.sequence,
        0,
        "replayed from the start"
    );
}

on_both_backends!(snapshot_of_other_layout_is_ignored);

async fn lost_acknowledgement_is_retried_once(store: &TestStore) {
    let setup = store.bus();
    let (conversation_id, creator_id, _) = new_conversation(&setup).await;

    let (recording, node) = store.recording_bus(AppendFault::LoseFirstAcknowledgement);
    let executed = send(&node, conversation_id, creator_id).await.unwrap();

    let commit_ids = recording.append_commit_ids();
    assert_eq!(
        commit_ids.len(),
        2,
        "one retry after the lost acknowledgement"
    );
    assert_eq!(
        commit_ids[0], commit_ids[1],
        "the retry reuses the commit id"
    );
    assert_eq!(executed.version.sequence, 2);
    let events = store
        .read_stream(&conversation_stream(conversation_id))
        .await;
    assert_eq!(events.len(), 2, "the message is stored once");
}

on_both_backends!(lost_acknowledgement_is_retried_once);

async fn unavailable_log_fails_after_one_retry(store: &TestStore) {
    let setup = store.bus();
    let (conversation_id, creator_id, _) = new_conversation(&setup).await;

    let (recording, node) = store.recording_bus(AppendFault::AlwaysUnavailable);
    let error = send(&node, conversation_id, creator_id).await.unwrap_err();

    assert!(
        matches!(error, CommandError::Log(LogError::Unavailable(_))),
        "{error:?}"
    );
    assert_eq!(recording.append_commit_ids().len(), 2);

    // The cached state was left as it was, so the next command still decides correctly.
    let healthy_node = store.bus();
    let executed = send(&healthy_node, conversation_id, creator_id)
        .await
        .unwrap();
    assert_eq!(executed.version.sequence, 2);
}

on_both_backends!(unavailable_log_fails_after_one_retry);

async fn load_reflects_appends_from_other_node(store: &TestStore) {
    let first_node = store.bus();
    let second_node = store.bus();
    let session_id = Uuid::new_v4();
    let session = AggregateId::from_uuid(session_id);
    let now = Utc::now();
    within(first_node.execute::<Session>(
        session.clone(),
        SessionCommand::Start {
            session_id,
            user_id: Uuid::new_v4(),
            now,
            expires_at: now + chrono::Duration::days(1),
        },
        metadata(),
    ))
    .await
    .unwrap();
    let (cached, _) = within(first_node.load::<Session>(session.clone()))
        .await
        .unwrap();
    assert_eq!(cached.generation(), 1);

    within(second_node.execute::<Session>(
        session.clone(),
        SessionCommand::Refresh {
            presented_generation: 1,
            now,
        },
        metadata(),
    ))
    .await
    .unwrap();
    within(second_node.execute::<Session>(
        session.clone(),
        SessionCommand::Revoke {
            reason: SessionRevocationReason::Logout,
            now,
        },
        metadata(),
    ))
    .await
    .unwrap();

    let (current, version) = within(first_node.load::<Session>(session)).await.unwrap();
    assert_eq!(version.sequence, 3);
    assert_eq!(current.generation(), 2);
    assert_eq!(current.revocation(), Some(SessionRevocationReason::Logout));
}

on_both_backends!(load_reflects_appends_from_other_node);

async fn command_without_events_appends_nothing(store: &TestStore) {
    let bus = store.bus();
    let session_id = Uuid::new_v4();
    let session = AggregateId::from_uuid(session_id);
    let now = Utc::now();
    within(bus.execute::<Session>(
        session.clone(),
        SessionCommand::Start {
            session_id,
            user_id: Uuid::new_v4(),
            now,
            expires_at: now + chrono::Duration::days(1),
        },
        metadata(),
    ))
    .await
    .unwrap();
    let revoke = SessionCommand::Revoke {
        reason: SessionRevocationReason::Logout,
        now,
    };
    within(bus.execute::<Session>(session.clone(), revoke.clone(), metadata()))
        .await
        .unwrap();

    let repeated = within(bus.execute::<Session>(session, revoke, metadata()))
        .await
        .unwrap();

    assert!(repeated.events.is_empty());
    assert_eq!(repeated.position, None);
    assert_eq!(repeated.version.sequence, 2);
}

on_both_backends!(command_without_events_appends_nothing);

async fn domain_error_appends_nothing(store: &TestStore) {
    let bus = store.bus();
    let (conversation_id, _, _) = new_conversation(&bus).await;
    let head_before = within(store.log.head_position()).await.unwrap();

    let error = send(&bus, conversation_id, Uuid::new_v4())
        .await
        .unwrap_err();

    assert!(
        matches!(error, CommandError::Domain(ConversationError::NotAMember)),
        "{error:?}"
    );
    assert_eq!(
        within(store.log.head_position()).await.unwrap(),
        head_before
    );
}

on_both_backends!(domain_error_appends_nothing);

async fn cache_stays_within_capacity(store: &TestStore) {
    let bus = store.bus_with(BusOptions {
        cache_capacity: NonZeroUsize::new(2).unwrap(),
        ..BusOptions::default()
    });
    let mut conversations = Vec::new();
    for _ in 0..3 {
        conversations.push(new_conversation(&bus).await);
    }
    assert_eq!(bus.cached_aggregates(), 2);

    // An evicted aggregate is loaded again from the log.
    let (conversation_id, creator_id, _) = conversations[0];
    let executed = send(&bus, conversation_id, creator_id).await.unwrap();
    assert_eq!(executed.version.sequence, 2);
    assert_eq!(bus.cached_aggregates(), 2);
}

on_both_backends!(cache_stays_within_capacity);

async fn missing_aggregates_are_not_cached(store: &TestStore) {
    let bus = store.bus();

    let (conversation, version) =
        within(bus.load::<Conversation>(AggregateId::from_uuid(Uuid::new_v4())))
            .await
            .unwrap();
    assert!(!conversation.exists());
    assert!(version.is_empty());

    let error = send(&bus, Uuid::new_v4(), Uuid::new_v4())
        .await
        .unwrap_err();
    assert!(
        matches!(error, CommandError::Domain(ConversationError::NotFound)),
        "{error:?}"
    );
    assert_eq!(bus.cached_aggregates(), 0);
}

on_both_backends!(missing_aggregates_are_not_cached);
