//! Names of event streams: which aggregate an event belongs to and how far a stream has grown.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kind of aggregate that owns a stream. The string form is part of the log's format:
/// it appears in subjects, in the embedded store and in every envelope, so it never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateType {
    /// A registered account and its profile.
    User,
    /// The reservation of one normalized email address by one user.
    EmailClaim,
    /// The reservation of one normalized username by one user.
    UsernameClaim,
    /// One login session and its rotating refresh tokens.
    Session,
    /// A conversation: its participants, settings and messages.
    Conversation,
}

impl AggregateType {
    pub const ALL: [AggregateType; 5] = [
        AggregateType::User,
        AggregateType::EmailClaim,
        AggregateType::UsernameClaim,
        AggregateType::Session,
        AggregateType::Conversation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AggregateType::User => "user",
            AggregateType::EmailClaim => "email_claim",
            AggregateType::UsernameClaim => "username_claim",
            AggregateType::Session => "session",
            AggregateType::Conversation => "conversation",
        }
    }

    pub fn parse(value: &str) -> Option<AggregateType> {
        AggregateType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == value)
    }
}

impl fmt::Display for AggregateType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The id of one aggregate instance: 1 to 64 ASCII letters, digits, `-` or `_`, so that it is
/// a valid single token of a NATS subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AggregateId(String);

#[derive(Debug, thiserror::Error)]
#[error("invalid aggregate id {0:?}: expected 1 to 64 ASCII letters, digits, '-' or '_'")]
pub struct InvalidAggregateId(pub String);

impl AggregateId {
    pub fn new(value: impl Into<String>) -> Result<AggregateId, InvalidAggregateId> {
        let value = value.into();
        let valid = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if valid {
            Ok(AggregateId(value))
        } else {
            Err(InvalidAggregateId(value))
        }
    }

    pub fn from_uuid(id: uuid::Uuid) -> AggregateId {
        AggregateId(id.hyphenated().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AggregateId {
    type Error = InvalidAggregateId;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        AggregateId::new(value)
    }
}

impl From<AggregateId> for String {
    fn from(id: AggregateId) -> String {
        id.0
    }
}

impl fmt::Display for AggregateId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// One aggregate instance's stream of events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamId {
    pub aggregate_type: AggregateType,
    pub aggregate_id: AggregateId,
}

impl StreamId {
    pub fn new(aggregate_type: AggregateType, aggregate_id: AggregateId) -> StreamId {
        StreamId {
            aggregate_type,
            aggregate_id,
        }
    }

    pub fn for_uuid(aggregate_type: AggregateType, id: uuid::Uuid) -> StreamId {
        StreamId::new(aggregate_type, AggregateId::from_uuid(id))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.aggregate_type, self.aggregate_id)
    }
}

/// How far one stream has grown: the sequence of its last event (1-based, counted per stream)
/// and the global log position of the commit that wrote it. A stream with no events has
/// [`StreamVersion::EMPTY`].
///
/// Both numbers are carried because the two logs check concurrency differently: the embedded
/// store compares sequences, while JetStream compares the stream sequence of the subject's
/// last message, which is the position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct StreamVersion {
    pub sequence: u64,
    pub position: u64,
}

impl StreamVersion {
    pub const EMPTY: StreamVersion = StreamVersion {
        sequence: 0,
        position: 0,
    };

    pub fn is_empty(self) -> bool {
        self.sequence == 0
    }
}
