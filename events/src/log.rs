//! The event log trait that both the embedded store and JetStream implement, and the values
//! that cross it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use uuid::Uuid;

use crate::envelope::{CommitMetadata, EventEnvelope, NewEvent};
use crate::stream::{AggregateType, StreamId, StreamVersion};

/// The events of one command, appended to one stream as a whole or not at all.
#[derive(Debug, Clone)]
pub struct Commit {
    pub stream: StreamId,
    /// The version the command was decided against. The append fails with
    /// [`AppendError::Conflict`] unless the stream is still exactly at this version;
    /// [`StreamVersion::EMPTY`] requires a stream with no events.
    pub expected: StreamVersion,
    /// A unique id for this commit. Appending a commit whose id the log has already stored
    /// returns the stored result with `duplicate: true` instead of writing it twice, so a
    /// retried append after a lost acknowledgement is harmless. JetStream remembers ids for
    /// its duplicate window only (two minutes by default).
    pub commit_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub metadata: CommitMetadata,
    /// One or more events; an empty commit is rejected with [`AppendError::Invalid`].
    pub events: Vec<NewEvent>,
}

/// The result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The global position of the commit.
    pub position: u64,
    /// The stream's version after the commit, to pass as `expected` to the next append.
    pub version: StreamVersion,
    /// True when the log already held a commit with this `commit_id` and wrote nothing.
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another commit reached the stream first: reload the aggregate and decide again.
    #[error("stream {stream} is no longer at version {expected:?}")]
    Conflict {
        stream: StreamId,
        expected: StreamVersion,
    },
    #[error("invalid commit: {0}")]
    Invalid(String),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// A failure of the log itself: the backend is unreachable, timed out or returned data this
/// version cannot read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt event at position {position}: {reason}")]
    Corrupt { position: u64, reason: String },
}

/// Where a feed starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedStart {
    /// Every commit with a position greater than this one; `AfterPosition(0)` is the whole log.
    AfterPosition(u64),
    /// Every commit recorded at or after this time, then everything new.
    AtTime(DateTime<Utc>),
    /// Only commits appended after the feed was opened.
    New,
}

/// Which streams a feed carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedFilter {
    All,
    AggregateTypes(Vec<AggregateType>),
}

impl FeedFilter {
    pub fn matches(&self, aggregate_type: AggregateType) -> bool {
        match self {
            FeedFilter::All => true,
            FeedFilter::AggregateTypes(types) => types.contains(&aggregate_type),
        }
    }
}

/// An endless stream of events in position order. The events of one commit arrive together
/// and in sequence order. The feed ends only with an error or when it is dropped.
pub type EventFeed = BoxStream<'static, Result<EventEnvelope, LogError>>;

#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends one commit with optimistic concurrency on its stream.
    async fn append(&self, commit: Commit) -> Result<Appended, AppendError>;

    /// Reads one stream's events after `after`, in sequence order, and the stream's current
    /// version. Pass [`StreamVersion::EMPTY`] to read the whole stream, or the version of a
    /// snapshot to read only what came after it.
    async fn read_stream(
        &self,
        stream: &StreamId,
        after: StreamVersion,
    ) -> Result<(Vec<EventEnvelope>, StreamVersion), LogError>;

    /// Reads at most `max_events` events of whole commits with positions greater than
    /// `after_position`, in position order. Returns fewer, or none, at the end of the log.
    /// A commit is never split: the last commit may take the result past `max_events`.
    async fn read_all(
        &self,
        after_position: u64,
        max_events: usize,
    ) -> Result<Vec<EventEnvelope>, LogError>;

    /// Opens a live feed.
    async fn feed(&self, start: FeedStart, filter: FeedFilter) -> Result<EventFeed, LogError>;

    /// The position of the last commit in the log, or 0 for an empty log.
    async fn head_position(&self) -> Result<u64, LogError>;

    /// A short name for logs and metrics, such as `jetstream` or `embedded`.
    fn backend_name(&self) -> &'static str;
}

/// A stored aggregate state, so that loading an aggregate reads only the events after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub version: StreamVersion,
    pub state: serde_json::Value,
    /// Which version of the aggregate's state layout wrote `state`. A snapshot of another
    /// layout is ignored and the aggregate is replayed from its events.
    pub state_version: u32,
}

/// Storage for aggregate snapshots. Snapshots are a cache: losing one costs a replay, never
/// correctness, so the store may drop them at any time.
#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, LogError>;
    async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<(), LogError>;
}
