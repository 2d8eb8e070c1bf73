//! Tests of the bus's pure helpers; the bus itself is tested against the embedded log in
//! `tests/bus.rs`.

use chrono::Utc;
use secureconnect_events::{AggregateType, CommitMetadata, EventEnvelope, StreamId, StreamVersion};
use uuid::Uuid;

use super::*;
use crate::conversation::Conversation;
use crate::user::User;

fn version(sequence: u64) -> StreamVersion {
    StreamVersion {
        sequence,
        position: sequence * 10,
    }
}

#[test]
fn snapshot_interval_crossing() {
    assert!(!crosses_snapshot_interval::<Conversation>(
        version(0),
        version(499)
    ));
    assert!(crosses_snapshot_interval::<Conversation>(
        version(499),
        version(500)
    ));
    assert!(crosses_snapshot_interval::<Conversation>(
        version(498),
        version(502)
    ));
    assert!(!crosses_snapshot_interval::<Conversation>(
        version(500),
        version(999)
    ));
    assert!(!crosses_snapshot_interval::<User>(
        version(0),
        version(1_000)
    ));
}

#[test]
fn conflict_delay_doubles_with_jitter() {
    let backoff = Duration::from_millis(4);
    for _ in 0..100 {
        let first = conflict_delay(backoff, 1);
        assert!((Duration::from_millis(2)..=Duration::from_millis(4)).contains(&first));
        let third = conflict_delay(backoff, 3);
        assert!((Duration::from_millis(8)..=Duration::from_millis(16)).contains(&third));
    }
}

fn envelope(sequence: u64, event_type: &str, payload: serde_json::Value) -> EventEnvelope {
    EventEnvelope {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        aggregate_type: AggregateType::Conversation,
        aggregate_id: AggregateId::from_uuid(Uuid::nil()),
        aggregate_sequence: sequence,
        position: sequence * 10,
        recorded_at: Utc::now(),
        metadata: CommitMetadata::default(),
        payload,
    }
}

#[test]
fn apply_rejects_sequence_gap() {
    let stream = StreamId::for_uuid(AggregateType::Conversation, Uuid::nil());
    let mut loaded = Loaded {
        state: Conversation::default(),
        version: StreamVersion::EMPTY,
    };
    let error = apply_envelopes(
        &stream,
        &mut loaded,
        &[envelope(2, "ConversationCreated", serde_json::json!({}))],
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("expected sequence 1, read sequence 2"),
        "{error}"
    );
}

#[test]
fn apply_rejects_unknown_event_type() {
    let stream = StreamId::for_uuid(AggregateType::Conversation, Uuid::nil());
    let mut loaded = Loaded {
        state: Conversation::default(),
        version: StreamVersion::EMPTY,
    };
    let error = apply_envelopes(
        &stream,
        &mut loaded,
        &[envelope(1, "ConversationRenamed", serde_json::json!({}))],
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unknown event type ConversationRenamed"),
        "{error}"
    );
}
