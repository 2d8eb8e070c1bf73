//! The vocabulary every other crate shares: the domain events with their hand-written names
//! and schema versions, the envelope the log wraps them in, the [`EventLog`] trait with its
//! contract, and the embedded single-file implementation used when no NATS server is
//! configured.

#[cfg(feature = "contract-tests")]
pub mod contract;
pub mod domain;
pub mod embedded;
pub mod envelope;
pub mod log;
pub mod realtime;
pub mod stream;

pub use envelope::{CommitMetadata, EventEnvelope, NewEvent};
pub use log::{
    AppendError, Appended, Commit, EventFeed, EventLog, FeedFilter, FeedStart, LogError, Snapshot,
    SnapshotStore,
};
pub use realtime::{EphemeralBus, TicketStore};
pub use stream::{AggregateId, AggregateType, InvalidAggregateId, StreamId, StreamVersion};
