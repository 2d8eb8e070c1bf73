//! The event envelope: one recorded fact with everything an auditor or a projection needs to
//! place it, and the shape in which a command hands new events to the log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::stream::{AggregateId, AggregateType, StreamId};

/// One event as the log stores and returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub event_id: Uuid,
    /// The hand-written name of the fact, such as `MessageSent`.
    pub event_type: String,
    /// The version of the payload's schema for this `event_type`, starting at 1.
    pub schema_version: u32,
    pub aggregate_type: AggregateType,
    pub aggregate_id: AggregateId,
    /// The event's place in its own stream, starting at 1 with no gaps.
    pub aggregate_sequence: u64,
    /// The global log position of the commit that wrote the event. All events of one commit
    /// share it, and positions grow strictly from one commit to the next.
    pub position: u64,
    pub recorded_at: DateTime<Utc>,
    pub metadata: CommitMetadata,
    pub payload: serde_json::Value,
}

impl EventEnvelope {
    pub fn stream_id(&self) -> StreamId {
        StreamId::new(self.aggregate_type, self.aggregate_id.clone())
    }
}

/// Who caused a commit and why, shared by all events of that commit.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommitMetadata {
    /// The authenticated user who issued the command; `None` for anonymous requests such as
    /// registration and for system work.
    pub actor: Option<Uuid>,
    /// The id shared by everything one request caused; the API uses the request id.
    pub correlation_id: Uuid,
    /// The id of the event or request that directly caused this commit.
    pub causation_id: Option<Uuid>,
}

/// An event that a command decided on and that is not yet in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: serde_json::Value,
}
