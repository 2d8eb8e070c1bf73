//! The layout of one row of the `commits` table and its conversion from a [`Commit`] and to
//! [`EventEnvelope`]s. The JSON documents have their own types here, so renaming a field of
//! the envelope cannot change the file format.

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::{CommitMetadata, EventEnvelope};
use crate::log::{AppendError, Commit, LogError};
use crate::stream::{AggregateId, AggregateType};

/// The columns every read selects, in the order of [`CommitRow`].
pub(crate) const COMMIT_COLUMNS: &str = "position, aggregate_type, aggregate_id, \
     first_sequence, last_sequence, recorded_at, metadata, events";

/// One element of the `events` JSON array.
#[derive(Serialize, Deserialize)]
struct StoredEvent {
    event_id: Uuid,
    event_type: String,
    schema_version: u32,
    payload: serde_json::Value,
}

/// The `metadata` JSON document.
#[derive(Serialize, Deserialize)]
struct StoredMetadata {
    actor: Option<Uuid>,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
}

/// A commit encoded for the writer, so the JSON work happens on the caller's task and the
/// single writer only runs SQL.
#[derive(Debug)]
pub(crate) struct EncodedCommit {
    pub commit: Commit,
    pub commit_id: String,
    pub recorded_at: i64,
    pub metadata: String,
    pub events: String,
}

impl EncodedCommit {
    pub fn new(commit: Commit) -> Result<EncodedCommit, AppendError> {
        if commit.events.is_empty() {
            return Err(AppendError::Invalid(format!(
                "commit {} to {} has no events; a commit needs at least one",
                commit.commit_id, commit.stream
            )));
        }
        let metadata = StoredMetadata {
            actor: commit.metadata.actor,
            correlation_id: commit.metadata.correlation_id,
            causation_id: commit.metadata.causation_id,
        };
        let events: Vec<StoredEvent> = commit
            .events
            .iter()
            .map(|event| StoredEvent {
                event_id: event.event_id,
                event_type: event.event_type.clone(),
                schema_version: event.schema_version,
                payload: event.payload.clone(),
            })
            .collect();
        let encode_failed = |error: serde_json::Error| {
            AppendError::Invalid(format!(
                "commit {} cannot be encoded: {error}",
                commit.commit_id
            ))
        };
        Ok(EncodedCommit {
            commit_id: commit.commit_id.hyphenated().to_string(),
            recorded_at: commit.recorded_at.timestamp_micros(),
            metadata: serde_json::to_string(&metadata).map_err(encode_failed)?,
            events: serde_json::to_string(&events).map_err(encode_failed)?,
            commit,
        })
    }

    pub fn event_count(&self) -> i64 {
        // A commit with more than i64::MAX events cannot exist in memory.
        self.commit.events.len() as i64
    }
}

/// One row of `commits` as read.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CommitRow {
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub first_sequence: i64,
    pub last_sequence: i64,
    pub recorded_at: i64,
    pub metadata: String,
    pub events: String,
}

impl CommitRow {
    /// Decodes the row into envelopes, keeping only the events with a sequence above
    /// `after_sequence`.
    pub fn into_envelopes(
        self,
        after_sequence: u64,
        envelopes: &mut Vec<EventEnvelope>,
    ) -> Result<(), LogError> {
        let position = to_unsigned(self.position, self.position, "position")?;
        let corrupt = |reason: String| LogError::Corrupt { position, reason };
        let aggregate_type = AggregateType::parse(&self.aggregate_type)
            .ok_or_else(|| corrupt(format!("unknown aggregate type {:?}", self.aggregate_type)))?;
        let aggregate_id =
            AggregateId::new(self.aggregate_id).map_err(|error| corrupt(error.to_string()))?;
        let first_sequence = to_unsigned(self.first_sequence, self.position, "first_sequence")?;
        let last_sequence = to_unsigned(self.last_sequence, self.position, "last_sequence")?;
        let recorded_at = DateTime::from_timestamp_micros(self.recorded_at)
            .ok_or_else(|| corrupt(format!("recorded_at {} is out of range", self.recorded_at)))?;
        let metadata: StoredMetadata = serde_json::from_str(&self.metadata)
            .map_err(|error| corrupt(format!("invalid metadata: {error}")))?;
        let events: Vec<StoredEvent> = serde_json::from_str(&self.events)
            .map_err(|error| corrupt(format!("invalid events: {error}")))?;
        if first_sequence + events.len() as u64 != last_sequence + 1 {
            return Err(corrupt(format!(
                "the commit has {} events but sequences {first_sequence} to {last_sequence}",
                events.len()
            )));
        }

        let metadata = CommitMetadata {
            actor: metadata.actor,
            correlation_id: metadata.correlation_id,
            causation_id: metadata.causation_id,
        };
        for (event, sequence) in events.into_iter().zip(first_sequence..) {
            if sequence <= after_sequence {
                continue;
            }
            envelopes.push(EventEnvelope {
                event_id: event.event_id,
                event_type: event.event_type,
                schema_version: event.schema_version,
                aggregate_type,
                aggregate_id: aggregate_id.clone(),
                aggregate_sequence: sequence,
                position,
                recorded_at,
                metadata: metadata.clone(),
                payload: event.payload,
            });
        }
        Ok(())
    }
}

/// Converts a stored integer that must not be negative.
pub(crate) fn to_unsigned(value: i64, position: i64, column: &str) -> Result<u64, LogError> {
    u64::try_from(value).map_err(|_| LogError::Corrupt {
        position: position.max(0) as u64,
        reason: format!("{column} is negative: {value}"),
    })
}

/// Converts a position or sequence from the API to SQLite's signed integer. Values above
/// `i64::MAX` never occur in the file, so they are clamped, which compares the same way.
pub(crate) fn to_signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
