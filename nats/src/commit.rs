//! The wire format of a commit: the subject a commit is published on and the JSON body that
//! carries its events. One JetStream message contains one commit, and its stream sequence
//! is the commit's position.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use secureconnect_events::{
    AggregateId, AggregateType, Commit, CommitMetadata, EventEnvelope, LogError, StreamId,
    StreamVersion,
};

/// Returns `<prefix>.<aggregate_type>.<aggregate_id>`. Both parts are valid subject tokens by
/// construction, so nothing needs escaping.
pub(crate) fn stream_subject(prefix: &str, stream: &StreamId) -> String {
    format!(
        "{prefix}.{}.{}",
        stream.aggregate_type.as_str(),
        stream.aggregate_id.as_str()
    )
}

/// Reads the aggregate type token of a commit subject without decoding the rest, so a feed
/// can skip other types cheaply. Returns `None` for a subject outside `<prefix>.`.
pub(crate) fn subject_aggregate_type(prefix: &str, subject: &str) -> Option<AggregateType> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let (aggregate_type, _) = rest.split_once('.')?;
    AggregateType::parse(aggregate_type)
}

fn parse_stream_subject(prefix: &str, subject: &str) -> Option<StreamId> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let (aggregate_type, aggregate_id) = rest.split_once('.')?;
    let aggregate_type = AggregateType::parse(aggregate_type)?;
    let aggregate_id = AggregateId::new(aggregate_id).ok()?;
    Some(StreamId::new(aggregate_type, aggregate_id))
}

/// The body written for a commit. Field names are part of the stored format.
#[derive(Serialize)]
struct CommitBodyRef<'a> {
    metadata: &'a CommitMetadata,
    recorded_at: DateTime<Utc>,
    /// The aggregate sequence of the first event; the others follow without gaps.
    first_sequence: u64,
    events: Vec<EventBodyRef<'a>>,
}

#[derive(Serialize)]
struct EventBodyRef<'a> {
    event_id: Uuid,
    event_type: &'a str,
    schema_version: u32,
    payload: &'a serde_json::Value,
}

/// The body as read back, with the same fields as [`CommitBodyRef`] but owned.
#[derive(Deserialize)]
struct CommitBody {
    metadata: CommitMetadata,
    recorded_at: DateTime<Utc>,
    first_sequence: u64,
    events: Vec<EventBody>,
}

#[derive(Deserialize)]
struct EventBody {
    event_id: Uuid,
    event_type: String,
    schema_version: u32,
    payload: serde_json::Value,
}

/// Serializes a commit's body. The first event takes the sequence after `commit.expected`.
pub(crate) fn encode_commit(commit: &Commit) -> Result<Vec<u8>, serde_json::Error> {
    let body = CommitBodyRef {
        metadata: &commit.metadata,
        recorded_at: commit.recorded_at,
        first_sequence: commit.expected.sequence + 1,
        events: commit
            .events
            .iter()
            .map(|event| EventBodyRef {
                event_id: event.event_id,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                payload: &event.payload,
            })
            .collect(),
    };
    serde_json::to_vec(&body)
}

/// One commit read back from the stream.
pub(crate) struct StoredCommit {
    pub(crate) stream: StreamId,
    pub(crate) position: u64,
    body: CommitBody,
}

impl StoredCommit {
    /// Decodes the message stored at `position`. Every message in the stream was written by
    /// [`encode_commit`], so a failure here is [`LogError::Corrupt`].
    pub(crate) fn decode(
        prefix: &str,
        subject: &str,
        position: u64,
        payload: &[u8],
    ) -> Result<StoredCommit, LogError> {
        let corrupt = |reason: String| LogError::Corrupt { position, reason };
        let stream = parse_stream_subject(prefix, subject)
            .ok_or_else(|| corrupt(format!("subject {subject:?} names no known stream")))?;
        let body: CommitBody = serde_json::from_slice(payload)
            .map_err(|error| corrupt(format!("invalid commit body: {error}")))?;
        if body.events.is_empty() {
            return Err(corrupt("commit contains no events".to_owned()));
        }
        if body.first_sequence == 0 {
            return Err(corrupt("commit starts at aggregate sequence 0".to_owned()));
        }
        Ok(StoredCommit {
            stream,
            position,
            body,
        })
    }

    pub(crate) fn first_sequence(&self) -> u64 {
        self.body.first_sequence
    }

    /// The stream's version right after this commit.
    pub(crate) fn version_after(&self) -> StreamVersion {
        StreamVersion {
            sequence: self.body.first_sequence + self.body.events.len() as u64 - 1,
            position: self.position,
        }
    }

    pub(crate) fn into_envelopes(self) -> impl Iterator<Item = EventEnvelope> {
        let StoredCommit {
            stream,
            position,
            body,
        } = self;
        let CommitBody {
            metadata,
            recorded_at,
            first_sequence,
            events,
        } = body;
        events
            .into_iter()
            .zip(first_sequence..)
            .map(move |(event, aggregate_sequence)| EventEnvelope {
                event_id: event.event_id,
                event_type: event.event_type,
                schema_version: event.schema_version,
                aggregate_type: stream.aggregate_type,
                aggregate_id: stream.aggregate_id.clone(),
                aggregate_sequence,
                position,
                recorded_at,
                metadata: metadata.clone(),
                payload: event.payload,
            })
    }
}

#[cfg(test)]
mod tests {
    use secureconnect_events::NewEvent;
    use serde_json::json;

    use super::*;

    fn sample_commit(expected: StreamVersion) -> Commit {
        Commit {
            stream: StreamId::for_uuid(AggregateType::Conversation, Uuid::new_v4()),
            expected,
            commit_id: Uuid::new_v4(),
            recorded_at: Utc::now(),
            metadata: CommitMetadata {
                actor: Some(Uuid::new_v4()),
                correlation_id: Uuid::new_v4(),
                causation_id: None,
            },
            events: ["a", "b"]
                .iter()
                .map(|label| NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: "MessageSent".to_owned(),
                    schema_version: 2,
                    payload: json!({ "label": label }),
                })
                .collect(),
        }
    }

    #[test]
    fn commit_round_trips_through_body() {
        let expected = StreamVersion {
            sequence: 4,
            position: 17,
        };
        let commit = sample_commit(expected);
        let subject = stream_subject("sc.events", &commit.stream);
        let body = encode_commit(&commit).expect("a commit serializes");

        let stored =
            StoredCommit::decode("sc.events", &subject, 23, &body).expect("a body decodes");

        assert_eq!(stored.stream, commit.stream);
        assert_eq!(
            stored.version_after(),
            StreamVersion {
                sequence: 6,
                position: 23
            }
        );
        let envelopes: Vec<EventEnvelope> = stored.into_envelopes().collect();
        assert_eq!(envelopes.len(), 2);
        assert_eq!(envelopes[0].aggregate_sequence, 5);
        assert_eq!(envelopes[1].aggregate_sequence, 6);
        assert_eq!(envelopes[1].event_id, commit.events[1].event_id);
        assert_eq!(envelopes[0].metadata, commit.metadata);
        assert_eq!(envelopes[0].recorded_at, commit.recorded_at);
        assert_eq!(envelopes[0].position, 23);
    }

    #[test]
    fn subject_of_other_prefix_is_corrupt() {
        let commit = sample_commit(StreamVersion::EMPTY);
        let body = encode_commit(&commit).expect("a commit serializes");

        let result = StoredCommit::decode("sc.events", "other.user.abc", 5, &body);

        assert!(matches!(result, Err(LogError::Corrupt { position: 5, .. })));
    }

    #[test]
    fn invalid_body_is_corrupt() {
        let result = StoredCommit::decode("sc.events", "sc.events.user.abc", 9, b"{\"x\":1}");

        assert!(matches!(result, Err(LogError::Corrupt { position: 9, .. })));
    }

    #[test]
    fn aggregate_type_is_read_from_subject() {
        assert_eq!(
            subject_aggregate_type("sc.events", "sc.events.email_claim.x-1"),
            Some(AggregateType::EmailClaim)
        );
        assert_eq!(
            subject_aggregate_type("sc.events", "sc.eventsx.user.a"),
            None
        );
        assert_eq!(
            subject_aggregate_type("sc.events", "sc.events.unknown.a"),
            None
        );
    }
}
